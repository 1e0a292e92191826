"""
Tests for L{clientproxy.routing.pending}: timeouts on one timer, exactly one answer
per entry, and the in-flight counts the table owns.
"""

from hypothesis import given, settings, strategies as st
from twisted.internet import task
from twisted.trial import unittest
from twisted.words.protocols.jabber.error import StanzaError

from clientproxy.handlers.dispatch import retarget
from clientproxy.routing.pending import REVERSE, PendingRequest, PendingTable, weigh
from clientproxy.routing.resources import Resource


def setUpTable(case, **bounds):
    """
    Give test C{case} a table with a timeout of 5 s and C{bounds} on a
    L{task.Clock}, whose answers go to C{case.answers}.
    """
    case.clock = task.Clock()
    case.answers = []
    case.table = PendingTable(
        case.clock, 5, lambda entry, outcome: case.answers.append((entry, outcome)), **bounds
    )


class PendingTableTests(unittest.TestCase):
    """
    The pending table: exactly one answer per entry (a reply, a timeout or a
    failure), the in-flight counts it keeps, and its timeouts on one timer.
    """

    def setUp(self):
        setUpTable(self, maxPending=3, maxPendingPerRequester=2, maxPendingFromTarget=1)
        self.a = Resource("svc@x/a", "a")
        self.b = Resource("svc@x/b", "b")

    def conditions(self):
        return [
            (entry.key, getattr(outcome, "condition", outcome)) for entry, outcome in self.answers
        ]

    def test_completeAnswersAndForgets(self):
        """
        A reply completes its entry: answered once with it, gone from the
        table, the resource's in-flight count back to 0, and no timer left.
        """
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

    def test_adoptedOverAnExistingKey(self):
        """
        An entry adopted under the key of one the table holds (answered
        elsewhere, the notice not yet here) replaces it: the counts hold
        the new one only, and nothing is left counted once it leaves.
        """
        old = self.table.add(("enc", "1"), "req", self.a)
        entry = PendingRequest(("enc", "1"), "req", "1", None, None, False, self.b, 20.0)
        self.table.adopt(entry)
        self.assertEqual(
            (len(self.table), self.table.fromOutside, self.a.pending, self.b.pending),
            (1, 1, 0, 1),
        )
        self.assertEqual(self.table.heldBy("req"), 1)
        self.table.discard(old.key)
        self.assertEqual(
            (self.table.fromOutside, self.table.bytes, self.table.heldBy("req"), self.b.pending),
            (0, 0, 0, 0),
        )

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
        """
        A request with no reply within the timeout is answered
        remote-server-timeout, and leaves the table and its resource's
        in-flight count; no timer is left.
        """
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
        """
        A request moved to another resource keeps the request it is resent as,
        and counts in flight on its new resource only, so a retry does not skew
        the load strategies weigh.
        """
        entry = self.table.add(("enc", "1"), "req", self.a, b"<iq/>", resendable=True)
        self.table.reassign(entry, self.b)
        self.assertEqual(entry.request, b"<iq/>")
        self.assertIs(entry.resource, self.b)
        self.assertEqual((self.a.pending, self.b.pending), (0, 1))
        self.assertEqual(self.table.entriesOf(self.b), [entry])

    def test_failAll(self):
        """
        Failing all (the connection is gone, or a shutdown's grace is over)
        answers every entry with the condition given and leaves the table
        empty, with no timer.
        """
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


def request(to, size):
    """
    A serialised request to C{to} of C{size} bytes of payload, as the
    dispatcher keeps it (so that L{retarget} can readdress it).
    """
    return ("<iq to='%s' id='x'><q>%s</q></iq>" % (to, "p" * size)).encode("utf-8")


class PendingBytesTests(unittest.TestCase):
    """
    The table counts the bytes its entries keep, beside the entries, and
    refuses what would take that count over C{maxPendingBytes}: entries
    alone do not bound memory when each may keep a large request.
    """

    def setUp(self):
        setUpTable(self, maxPendingBytes=1000, maxPendingPerRequester=0)
        self.a = Resource("svc@x/a", "a")
        self.longer = Resource("svc@x/" + "l" * 100, "l" * 100)

    def add(self, stanzaID, size=100, resource=None, requester="alice@x/r"):
        """
        Add a request from outside of C{size} bytes of payload, to
        C{resource} (C{self.a} by default).
        """
        resource = resource or self.a
        return self.table.add(
            ("enc-" + requester, stanzaID),
            requester,
            resource,
            request(resource.jid, size),
            resendable=True,
        )

    def assertCountsLive(self):
        """
        The byte count is the sum over the entries in the table, each
        weighed as it is now.
        """
        entries = list(self.table._entries.values())
        self.assertEqual(self.table.bytes, sum(weigh(entry) for entry in entries))

    def test_weigh(self):
        """
        An entry weighs its request and the strings it keeps; an id its key
        holds too is counted once, and a different one (a request of the
        target's, keyed by the component's own id) apart.
        """
        entry = self.table.add(("enc", "id"), "req", self.a, b"12345", via="proxy/x")
        self.assertEqual(weigh(entry), 5 + len("enc") + len("id") + len("req") + len("proxy/x"))
        self.assertEqual((entry.weight, self.table.bytes), (weigh(entry), weigh(entry)))
        mine = self.table.add(("peer", "cp1", REVERSE), "svc@x/a", self.a, stanzaID="theirs")
        self.assertEqual(weigh(mine), len("peer") + len("cp1") + len("svc@x/a") + len("theirs"))
        self.assertEqual(self.table.bytes, weigh(entry) + weigh(mine))

    def test_backToZeroOnEveryWayOut(self):
        """
        Complete, fail, timeout, failAll, discard, discardAll, and a reassign
        before any of them: the count goes back to 0 each time (a leak would
        close the service for good once it reached the bound).
        """
        ways = [
            lambda e: self.table.complete(e, "reply"),
            lambda e: self.table.fail(e, "item-not-found"),
            lambda e: self.clock.advance(5),
            lambda e: self.table.failAll("recipient-unavailable"),
            lambda e: self.table.discard(e.key),
            lambda e: self.table.discardAll(),
        ]
        for number, way in enumerate(ways):
            for moved in (False, True):
                entry = self.add("%d-%s" % (number, moved))
                self.assertGreater(self.table.bytes, 0)
                if moved:
                    entry.request = retarget(entry.request, self.a.jid, self.longer.jid)
                    self.assertTrue(self.table.reassign(entry, self.longer))
                    self.assertEqual(self.table.bytes, weigh(entry))
                way(entry)
                self.assertEqual((len(self.table), self.table.bytes), (0, 0))

    def test_adoptedCounted(self):
        """
        An entry adopted from another process is counted in, and out when
        it goes, even over the bound (it must be answered).
        """
        self.add("1", size=800)
        entry = PendingRequest(
            ("enc", "2"), "req", "2", None, request(self.a.jid, 500), True, self.a, 5.0
        )
        self.table.adopt(entry)
        self.assertCountsLive()
        self.assertGreater(self.table.bytes, 1000)
        self.clock.advance(5)
        self.assertEqual(self.table.bytes, 0)

    def test_overTheBoundRefused(self):
        """
        A request from outside that would take the count over the bound is
        not added (C{None}: the caller refuses it); one that fits exactly
        is; the target's requests are counted but not refused.
        """
        first = self.add("1", size=500)
        self.assertIsNone(self.add("2", size=1000 - self.table.bytes))
        self.assertEqual((len(self.table), self.table.bytes), (1, weigh(first)))
        overhead = weigh(first) - 500
        fits = self.add("3", size=1000 - self.table.bytes - overhead)
        self.assertIsNotNone(fits)
        self.assertEqual(self.table.bytes, 1000)
        mine = self.table.add(("peer", "cp1", REVERSE), "svc@x/a", self.a, stanzaID="t")
        self.assertIsNotNone(mine)
        self.assertEqual(self.table.bytes, 1000 + weigh(mine))
        self.table.complete(first, "reply")
        self.assertIsNotNone(self.add("4"))
        self.assertCountsLive()

    def test_shareOfOneRequester(self):
        """
        One bare JID may keep the share of the bytes it may keep of the
        entries (here 2 of 10 entries: 200 of 1000 bytes), so one account
        cannot take the whole budget; others still fit, and an answer
        frees the share.
        """
        setUpTable(self, maxPendingBytes=1000, maxPending=10, maxPendingPerRequester=2)
        self.assertEqual(self.table.bytesPerRequester, 200)
        first = self.add("1", size=100)
        self.assertIsNotNone(first)
        self.assertIsNone(self.add("2", size=100, requester="alice@x/other"))
        self.assertIsNotNone(self.add("3", size=100, requester="bob@x/r"))
        self.table.complete(first, "reply")
        self.assertIsNotNone(self.add("4", size=100, requester="alice@x/other"))
        held = {
            "alice@x": weigh(self.table.get(("enc-alice@x/other", "4"))),
            "bob@x": weigh(self.table.get(("enc-bob@x/r", "3"))),
        }
        self.assertEqual(self.table._heldBytes, held)

    def test_noBound(self):
        """
        0 means no bound on bytes, as for the other bounds.
        """
        self.table.maxPendingBytes = 0
        self.assertIsNotNone(self.add("1", size=5000))

    def test_reassignOverTheBoundRefused(self):
        """
        A request to be sent again to a resource with a longer address,
        which would then not fit, is not moved: the table stays as it was
        and the caller fails it.
        """
        entry = self.add("1", size=1000 - 30 - len(self.a.jid) - 40)
        weight, count = entry.weight, self.table.bytes
        entry.request = retarget(entry.request, self.a.jid, self.longer.jid)
        self.assertFalse(self.table.reassign(entry, self.longer))
        self.assertIs(entry.resource, self.a)
        self.assertEqual((entry.weight, self.table.bytes, self.a.pending), (weight, count, 1))
        self.table.fail(entry, "resource-constraint")
        self.assertEqual(self.table.bytes, 0)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["add", "complete", "timeout", "reassign", "fail"]),
                st.integers(0, 400),
                st.integers(0, 20),
            ),
            max_size=60,
        )
    )
    def test_countIsTheSumAndWithinTheBound(self, steps):
        """
        Whatever the sequence of adds, answers, timeouts and moves, the
        byte count is the sum over the live entries and never exceeds the
        bound, and it is 0 once the table is empty.
        """
        self.setUp()
        resources = [self.a, self.longer, Resource("svc@x/b", "b")]
        for number, (step, size, pick) in enumerate(steps):
            entries = list(self.table._entries.values())
            entry = entries[pick % len(entries)] if entries else None
            if step == "add":
                self.add(str(number), size, resources[pick % 3], "u%d@x/r" % (pick % 4))
            elif step == "timeout":
                self.clock.advance(pick / 4.0)
            elif entry is None:
                continue
            elif step == "complete":
                self.table.complete(entry, "reply")
            elif step == "fail":
                self.table.fail(entry, "item-not-found")
            else:
                other = resources[(resources.index(entry.resource) + 1) % 3]
                old = entry.request
                entry.request = retarget(old, entry.resource.jid, other.jid)
                if not self.table.reassign(entry, other):
                    entry.request = old
            self.assertCountsLive()
            self.assertLessEqual(self.table.bytes, 1000)
        self.table.failAll("recipient-unavailable")
        self.assertEqual(self.table.bytes, 0)


class LineTests(unittest.TestCase):
    """
    The line (C{--hold}): entries assigned to the table's line resource
    wait, counted like any entry, and leave it by being moved to a
    resource, or answered once the hold or their deadline passes, on the
    table's one timer.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.answers = []
        self.line = Resource("", "")
        self.table = PendingTable(
            self.clock,
            5,
            lambda entry, outcome: self.answers.append((entry, outcome)),
            line=self.line,
        )
        self.table.setHold(2)
        self.a = Resource("svc@x/a", "a")

    def test_waitingCountedOnce(self):
        """
        An entry added to the line is in flight and in line: one entry,
        one count per bound.
        """
        entry = self.table.add(("enc", "1"), "alice@x/r", self.line, b"<iq/>", True)
        self.assertEqual((len(self.table), self.table.lineLength), (1, 1))
        self.assertEqual((self.table.fromOutside, self.table.heldBy("alice@x")), (1, 1))
        self.assertEqual(self.table.waiting(), [entry])
        self.assertEqual(self.line.pending, 1)

    def test_holdPassesOnTheOneTimer(self):
        """
        The head of the line is due after the hold, before the deadline,
        on the table's single timer; its answer says the hold passed.
        """
        entry = self.table.add(("enc", "1"), "alice@x/r", self.line, b"<iq/>", True)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(2)
        [(answered, outcome)] = self.answers
        self.assertIs(answered, entry)
        self.assertEqual(
            (outcome.condition, outcome.text),
            ("service-unavailable", "No resource of the service came in time"),
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_movedOutAndBack(self):
        """
        Moved to a resource, an entry leaves the line (and its hold); moved
        back, it joins the end and waits a full hold, with the answer of one
        whose resource left.
        """
        entry = self.table.add(("enc", "1"), "alice@x/r", self.line, b"<iq/>", True)
        self.clock.advance(1.5)
        self.assertTrue(self.table.reassign(entry, self.a))
        self.assertEqual((self.table.lineLength, self.line.pending, self.a.pending), (0, 0, 1))
        self.clock.advance(1)
        self.assertTrue(self.table.reassign(entry, self.line))
        self.clock.advance(1.9)
        self.assertEqual(self.answers, [])
        self.clock.advance(0.1)
        [(_, outcome)] = self.answers
        self.assertEqual(outcome.condition, "recipient-unavailable")

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["add", "wait", "move", "complete", "hold"]),
                st.integers(0, 20),
            ),
            max_size=60,
        )
    )
    def test_everyEntryAnsweredOnce(self, steps):
        """
        Whatever the adds, moves in and out of the line, answers, hold
        changes and time: the line holds exactly the entries assigned to
        it, a waiting entry is never answered with a timeout, and once
        every deadline has passed each entry was answered once.
        """
        self.setUp()
        added = []
        for number, (step, pick) in enumerate(steps):
            entries = list(self.table._entries.values())
            entry = entries[pick % len(entries)] if entries else None
            if step == "add":
                resource = self.line if pick % 2 else self.a
                added.append(
                    self.table.add(("enc", str(number)), "u@x/r", resource, b"<iq/>", True)
                )
            elif step == "wait":
                self.clock.advance(pick / 4.0)
            elif step == "hold":
                self.table.setHold(pick / 5.0)
            elif entry is None:
                continue
            elif step == "complete":
                self.table.complete(entry, "reply")
            else:
                self.table.reassign(entry, self.a if entry.resource is self.line else self.line)
            inLine = [e for e in self.table._entries.values() if e.resource is self.line]
            self.assertEqual({id(e) for e in self.table.waiting()}, {id(e) for e in inLine})
            self.assertEqual(self.table.lineLength, len(inLine))
            self.assertEqual(self.line.pending, len(inLine))
        self.clock.advance(10)
        self.assertEqual(len(self.table), 0)
        self.assertEqual(sorted(id(e) for e, _ in self.answers), sorted(id(e) for e in added))
        for entry, outcome in self.answers:
            if entry.resource is self.line:
                self.assertNotEqual(getattr(outcome, "condition", None), "remote-server-timeout")
