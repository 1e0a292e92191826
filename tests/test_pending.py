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
        entry = self.table.add(("enc", "1"), "req", object(), self.a)
        self.assertIn(("enc", "1"), self.table)
        self.assertIs(self.a.pending[("enc", "1")], entry)
        results = []
        entry.deferred.addCallback(results.append)
        self.table.complete(entry, "reply")
        self.assertEqual(results, ["reply"])
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.a.pending, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self):
        entry = self.table.add(("enc", "1"), "req", object(), self.a)
        self.clock.advance(4.99)
        self.assertFalse(entry.deferred.called)
        self.clock.advance(0.01)
        failure = self.failureResultOf(entry.deferred, StanzaError)
        self.assertEqual(failure.value.condition, "remote-server-timeout")
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.a.pending, {})

    def test_reassign(self):
        entry = self.table.add(("enc", "1"), "req", object(), self.a)
        self.table.reassign(entry, self.b)
        self.assertTrue(entry.retried)
        self.assertIs(entry.resource, self.b)
        self.assertEqual(self.a.pending, {})
        self.assertIs(self.b.pending[("enc", "1")], entry)

    def test_failAll(self):
        entries = [self.table.add(("e", str(i)), "r", object(), self.a) for i in range(3)]
        self.table.failAll("recipient-unavailable")
        for entry in entries:
            f = self.failureResultOf(entry.deferred, StanzaError)
            self.assertEqual(f.value.condition, "recipient-unavailable")
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
