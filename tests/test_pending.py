"""
Tests for L{clientproxy.pending}.
"""

from twisted.internet import task
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import StanzaError

from clientproxy.pending import PendingTable
from clientproxy.resources import Resource


class PendingTableTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.table = PendingTable(self.clock, 5)
        self.a = Resource("svc@x/a", "a")
        self.b = Resource("svc@x/b", "b")

    def test_completeFiresAndForgets(self):
        entry = self.table.add(("enc", "1"), "req", None, self.a)
        self.assertIn(("enc", "1"), self.table)
        self.assertEqual(self.a.pending, 1)
        self.assertEqual(self.table.entriesOf(self.a), [entry])
        results = []
        entry.addCallback(results.append)
        self.table.complete(entry, "reply")
        self.assertEqual(results, ["reply"])
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.a.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self):
        entry = self.table.add(("enc", "1"), "req", None, self.a)
        self.clock.advance(4.99)
        self.assertFalse(entry.called)
        self.clock.advance(0.01)
        failure = self.failureResultOf(entry, StanzaError)
        self.assertEqual(failure.value.condition, "remote-server-timeout")
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.a.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeoutsInOrderWithOneTimer(self):
        """
        Requests added at different times each time out after their own
        timeout, with one timer at a time.
        """
        first = self.table.add(("e", "1"), "r", None, self.a)
        self.clock.advance(2)
        second = self.table.add(("e", "2"), "r", None, self.a)
        third = self.table.add(("e", "3"), "r", None, self.b)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(3)
        self.failureResultOf(first, StanzaError)
        self.assertNoResult(second)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.table.complete(third, "reply")
        self.clock.advance(1.99)
        self.assertNoResult(second)
        self.clock.advance(0.01)
        self.failureResultOf(second, StanzaError)
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timerFollowsTheOldest(self):
        """
        When the oldest request is answered, the timer still fires for the
        next one in time.
        """
        first = self.table.add(("e", "1"), "r", None, self.a)
        self.clock.advance(1)
        second = self.table.add(("e", "2"), "r", None, self.a)
        self.table.complete(first, "reply")
        self.clock.advance(4)
        self.assertNoResult(second)
        self.clock.advance(1)
        f = self.failureResultOf(second, StanzaError)
        self.assertEqual(f.value.condition, "remote-server-timeout")

    def test_reassign(self):
        entry = self.table.add(("enc", "1"), "req", "<iq/>", self.a)
        self.table.reassign(entry, self.b)
        self.assertIsNone(entry.retry)
        self.assertIs(entry.resource, self.b)
        self.assertEqual((self.a.pending, self.b.pending), (0, 1))
        self.assertEqual(self.table.entriesOf(self.b), [entry])

    def test_failAll(self):
        entries = [self.table.add(("e", str(i)), "r", None, self.a) for i in range(3)]
        self.table.failAll("recipient-unavailable")
        for entry in entries:
            f = self.failureResultOf(entry, StanzaError)
            self.assertEqual(f.value.condition, "recipient-unavailable")
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
