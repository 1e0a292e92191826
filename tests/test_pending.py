"""
Tests for L{clientproxy.pending}: timeouts on one timer, exactly one answer
per entry, and the in-flight counts the table owns.
"""

from twisted.internet import task
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import StanzaError

from clientproxy.pending import REVERSE, PendingRequest, PendingTable
from clientproxy.resources import Resource


class PendingTableTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.answers = []
        self.table = PendingTable(
            self.clock,
            5,
            lambda entry, outcome: self.answers.append((entry, outcome)),
            maxPending=3,
            maxPendingPerRequester=2,
            maxPendingFromTarget=1,
        )
        self.a = Resource("svc@x/a", "a")
        self.b = Resource("svc@x/b", "b")

    def conditions(self):
        return [
            (entry.key, getattr(outcome, "condition", outcome)) for entry, outcome in self.answers
        ]

    def test_completeAnswersAndForgets(self):
        entry = self.table.add(("enc", "1"), "req", self.a)
        self.assertIn(("enc", "1"), self.table)
        self.assertEqual(self.a.pending, 1)
        self.assertEqual(self.table.entriesOf(self.a), [entry])
        self.table.complete(entry, "reply")
        self.assertEqual(self.answers, [(entry, "reply")])
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.a.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_adoptedKeepTheirDeadlines(self):
        """
        Entries another process added keep their deadlines, earlier or later
        than those of entries added here, and each times out at its own.
        """
        self.clock.advance(10)
        ours = self.table.add(("enc", "1"), "req", self.a)  # due at 15
        early = PendingRequest(("enc", "2"), "req", "2", None, None, False, self.b, 12.0)
        late = PendingRequest(("enc", "3"), "other", "3", None, None, False, self.b, 17.0)
        self.table.adopt(early)
        self.table.adopt(late)
        self.assertEqual((self.table.fromOutside, self.b.pending), (3, 2))
        self.clock.advance(3)
        self.clock.advance(1)  # 14: the request added here later
        newer = self.table.add(("enc", "4"), "other", self.a)  # due at 19
        for when, expected in ((15, [early, ours]), (17, [early, ours, late])):
            self.clock.advance(when - self.clock.seconds())
            self.assertEqual([entry for entry, _ in self.answers], expected)
        self.clock.advance(2)
        self.assertEqual([entry for entry, _ in self.answers], [early, ours, late, newer])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_adoptedIntoEmptyTable(self):
        """
        An entry adopted into an empty table times out at its deadline.
        """
        entry = PendingRequest(("enc", "1"), "req", "1", None, None, False, self.a, 2.0)
        self.table.adopt(entry)
        self.clock.advance(1.99)
        self.assertEqual(self.answers, [])
        self.clock.advance(0.01)
        self.assertEqual(self.conditions(), [(("enc", "1"), "remote-server-timeout")])

    def test_timeout(self):
        entry = self.table.add(("enc", "1"), "req", self.a)
        self.clock.advance(4.99)
        self.assertEqual(self.answers, [])
        self.clock.advance(0.01)
        [(answered, error)] = self.answers
        self.assertIs(answered, entry)
        self.assertIsInstance(error, StanzaError)
        self.assertEqual(error.condition, "remote-server-timeout")
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.a.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeoutsInOrderWithOneTimer(self):
        """
        Requests added at different times each time out after their own
        timeout, with one timer at a time.
        """
        self.table.add(("e", "1"), "r", self.a)
        self.clock.advance(2)
        self.table.add(("e", "2"), "s", self.a)
        third = self.table.add(("e", "3"), "t", self.b)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(3)
        self.assertEqual(self.conditions(), [(("e", "1"), "remote-server-timeout")])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.table.complete(third, "reply")
        self.clock.advance(1.99)
        self.assertEqual(len(self.answers), 2)
        self.clock.advance(0.01)
        self.assertEqual(self.conditions()[2], (("e", "2"), "remote-server-timeout"))
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reassign(self):
        entry = self.table.add(("enc", "1"), "req", self.a, b"<iq/>", resendable=True)
        self.table.reassign(entry, self.b)
        self.assertEqual(entry.request, b"<iq/>")
        self.assertIs(entry.resource, self.b)
        self.assertEqual((self.a.pending, self.b.pending), (0, 1))
        self.assertEqual(self.table.entriesOf(self.b), [entry])

    def test_failAll(self):
        for i in range(3):
            self.table.add(("e", str(i)), "r%d" % i, self.a)
        self.table.failAll("recipient-unavailable")
        self.assertEqual([c for _, c in self.conditions()], ["recipient-unavailable"] * 3)
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_boundsFromOutside(self):
        """
        The table owns the in-flight counts: per bare JID and in all, for
        requests from outside.
        """
        self.table.add(("alice@x/1", "1"), "alice@x/1", self.a)
        self.table.add(("alice@x/2", "1"), "alice@x/2", self.a)
        self.assertFalse(self.table.admits("alice@x/3"))
        self.assertTrue(self.table.admits("bob@x/1"))
        self.assertEqual(self.table.heldBy("alice@x"), 2)
        bob = self.table.add(("bob@x/1", "1"), "bob@x/1", self.b)
        self.assertFalse(self.table.admits("carol@x/1"))
        self.table.complete(bob, "reply")
        self.assertTrue(self.table.admits("carol@x/1"))
        self.assertEqual(self.table.heldBy("bob@x"), 0)

    def test_fromTargetCountedApart(self):
        """
        Requests started by the target have their own bound, and count
        neither against outsiders' bounds nor in the resource's load.
        """
        entry = self.table.add(("peer@x/p", "cp1", REVERSE), "svc@x/a", self.a, stanzaID="7")
        self.assertTrue(entry.fromTarget)
        self.assertEqual(entry.stanzaID, "7")
        self.assertEqual(self.a.pending, 0)
        self.assertEqual((self.table.fromTarget, self.table.fromOutside), (1, 0))
        self.assertFalse(self.table.admitsFromTarget())
        for i in range(3):
            self.table.add(("o%d@x/1" % i, "1"), "o%d@x/1" % i, self.b)
        self.assertFalse(self.table.admits("p@x/1"))
        self.table.complete(entry, "reply")
        self.assertTrue(self.table.admitsFromTarget())
        self.assertEqual(self.a.pending, 0)

    def test_emptyWaitersAfterTheLastAnswer(self):
        """
        Waiters for an empty table fire after the last answer is written,
        not before (a shutdown closes the connection when they fire).
        """
        entry = self.table.add(("enc", "1"), "req", self.a)
        order = []
        self.table._answer = lambda e, outcome: order.append("answer")
        self.table.whenEmpty().addCallback(lambda _: order.append("empty"))
        self.table.complete(entry, "reply")
        self.assertEqual(order, ["answer", "empty"])

    def test_emptyWaitersEvenIfTheAnswerFails(self):
        """
        A failing answer still leaves the table consistent and tells the
        waiters.
        """
        entry = self.table.add(("enc", "1"), "req", self.a)

        def broken(entry, outcome):
            raise RuntimeError("boom")

        self.table._answer = broken
        d = self.table.whenEmpty()
        self.assertRaises(RuntimeError, self.table.complete, entry, "reply")
        self.successResultOf(d)
        self.assertEqual((len(self.table), self.a.pending), (0, 0))

    def test_timeoutChanged(self):
        """
        A new timeout applies to requests added from then on; those in
        flight keep their deadlines, and each times out on time.
        """
        self.table.maxPending = self.table.maxPendingPerRequester = 0
        self.table.add(("e", "old"), "r", self.a)
        self.table.setTimeout(2)
        self.table.add(("e", "new"), "r", self.a)
        self.clock.advance(2)
        self.assertEqual(self.conditions(), [(("e", "new"), "remote-server-timeout")])
        self.clock.advance(2.9)
        self.assertEqual(len(self.answers), 1)
        self.clock.advance(0.1)
        self.assertEqual(self.conditions()[1], (("e", "old"), "remote-server-timeout"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.table.setTimeout(10)
        self.table.add(("e", "later"), "r", self.a)
        self.clock.advance(10)
        self.assertEqual(len(self.answers), 3)
