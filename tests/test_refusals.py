"""
Tests for L{clientproxy.routing.refusals}: what is learnt from refusals is narrow
(per resource, namespace and type, from two requesters at least), bounded,
and expires in order.
"""

from twisted.internet import task
from twisted.logger import capturedLogs
from twisted.trial import unittest

from clientproxy.routing.bounded import compact
from clientproxy.routing.refusals import Refusals, topicFromText, topicOf, topicText
from clientproxy.routing.resources import Resource
from tests.helpers import inStream

NS = "urn:example:service"


def topic(namespace, kind, name="q"):
    """
    The topic of a request of type C{kind} for a C{name} element in
    C{namespace}.
    """
    return (compact(namespace), name, kind)


class RefusalsTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.refusals = Refusals(self.clock, ttl=300, size=100)
        self.a = Resource("svc@x/a", "a")
        self.b = Resource("svc@x/b", "b")

    def test_twoWitnesses(self):
        """
        A resource is a refuser only once two distinct bare JIDs were
        refused; full JIDs of one account count once.
        """
        self.refusals.refused(self.a, topic(NS, "get"), "m@x/1")
        self.refusals.refused(self.a, topic(NS, "get"), "m@x/2")
        self.assertIsNone(self.refusals.refusersOf(topic(NS, "get")))
        self.refusals.refused(self.a, topic(NS, "get"), "n@x/1")
        self.assertEqual(self.refusals.refusersOf(topic(NS, "get")), {"svc@x/a"})
        self.assertIsNone(self.refusals.refusersOf(topic(NS, "set")))

    def test_boundedInEntries(self):
        """
        Past its size, the oldest record goes, with its place in the index.
        """
        self.refusals.refused(self.a, topic(NS, "get"), "m@x/1")
        self.refusals.refused(self.a, topic(NS, "get"), "n@x/1")
        for i in range(200):
            self.refusals.refused(self.b, topic("urn:fresh:%d" % i, "get"), "m@x/1")
            self.assertLessEqual(len(self.refusals), 100)
        self.assertIsNone(self.refusals.refusersOf(topic(NS, "get")))
        self.assertEqual(self.refusals.refusedBy(self.a), [])

    def test_longNamespacesKeptShort(self):
        """
        A namespace of any length is kept as at most a 64-character key, and
        still matches itself.
        """
        long = "urn:" + "x" * 100000
        self.refusals.refused(self.a, topic(long, "get"), "m@x/1")
        self.refusals.refused(self.a, topic(long, "get"), "n@x/1")
        self.assertEqual(self.refusals.refusersOf(topic(long, "get")), {"svc@x/a"})
        [(kept, name, kind)] = self.refusals.refusedBy(self.a)
        self.assertLessEqual(len(kept), 64)

    def test_expiresInOrder(self):
        """
        Records expire their TTL after their last refusal, taken off the
        front: a record refreshed later outlives one written earlier.
        """
        self.refusals.refused(self.a, topic(NS, "get"), "m@x/1")
        self.refusals.refused(self.a, topic(NS, "get"), "n@x/1")
        self.clock.advance(100)
        self.refusals.refused(self.b, topic(NS, "get"), "m@x/1")
        self.refusals.refused(self.b, topic(NS, "get"), "n@x/1")
        self.clock.advance(200)
        self.assertEqual(self.refusals.refusersOf(topic(NS, "get")), {"svc@x/b"})
        self.clock.advance(100)
        self.assertIsNone(self.refusals.refusersOf(topic(NS, "get")))
        self.assertEqual(len(self.refusals), 0)

    def test_forget(self):
        """
        A resource gone takes its records with it, and nothing else.
        """
        for resource in (self.a, self.b):
            self.refusals.refused(resource, topic(NS, "get"), "m@x/1")
            self.refusals.refused(resource, topic(NS, "get"), "n@x/1")
        self.refusals.forget(self.a)
        self.assertFalse(self.refusals.concerns(self.a))
        self.assertEqual(self.refusals.refusersOf(topic(NS, "get")), {"svc@x/b"})

    def test_servedForgets(self):
        """
        A result for the namespace and type forgets the record, learnt or
        not.
        """
        self.refusals.refused(self.a, topic(NS, "get"), "m@x/1")
        self.refusals.served(self.a, topic(NS, "get"))
        self.assertFalse(self.refusals.concerns(self.a))
        self.refusals.refused(self.a, topic(NS, "get"), "n@x/1")
        self.assertIsNone(self.refusals.refusersOf(topic(NS, "get")))

    def test_configureForgets(self):
        """
        A new TTL (a reload) starts from nothing.
        """
        self.refusals.refused(self.a, topic(NS, "get"), "m@x/1")
        self.refusals.configure(10)
        self.assertEqual(len(self.refusals), 0)

    def test_logThrottled(self):
        """
        Learning a refuser is logged at most once an interval however many
        are learnt, with the namespace quoted on one line.
        """
        with capturedLogs() as events:
            for i in range(50):
                feature = "urn:x&#10;\n%d" % i
                self.refusals.refused(self.a, topic(feature, "get"), "m@x/1")
                self.refusals.refused(self.a, topic(feature, "get"), "n@x/1")
        self.assertEqual(len(events), 1)
        self.assertNotIn("\n", events[0]["feature"])

    def test_topicByElementName(self):
        """
        A resource that refuses an element it has no handler for is no
        refuser of another element of the same namespace.
        """
        for requester in ("m@x/1", "n@x/1"):
            self.refusals.refused(self.a, topic(NS, "set", name="bogus"), requester)
        self.assertEqual(self.refusals.refusersOf(topic(NS, "set", name="bogus")), {"svc@x/a"})
        self.assertIsNone(self.refusals.refusersOf(topic(NS, "set", name="do")))


class TopicTests(unittest.TestCase):
    def test_topicOf(self):
        """
        A topic is the child's namespace and name and the request type,
        each bounded.
        """
        child = inStream("<iq><do xmlns='urn:x'/></iq>").firstChildElement()
        self.assertEqual(topicOf(child, "set"), ("urn:x", "do", "set"))
        child = inStream("<iq><do xmlns='urn:%s'/></iq>" % ("x" * 500,)).firstChildElement()
        self.assertEqual(len(topicOf(child, "set")[0]), 16)

    def test_text(self):
        """
        What L{topicText} writes, L{topicFromText} reads back: the empty
        namespace and digests included.
        """
        for value in (("", "q", "get"), (compact("u" * 100), "do", "set"), ("urn:x", "a", "get")):
            self.assertEqual(topicFromText(topicText(value)), value)

    def test_shared(self):
        """
        L{Refusals.topicOf} gives requests of one topic one tuple, so a
        request in flight keeps a reference, not a copy; fresh topics
        beyond the bound push out the oldest.
        """
        from clientproxy.routing import refusals

        table = Refusals(task.Clock())
        first = table.topicOf(inStream("<iq><do xmlns='urn:x'/></iq>").firstChildElement(), "set")
        again = table.topicOf(inStream("<iq><do xmlns='urn:x'/></iq>").firstChildElement(), "set")
        self.assertIs(first, again)
        for i in range(refusals.MAX_TOPICS + 10):
            child = inStream("<iq><do xmlns='urn:%d'/></iq>" % (i,)).firstChildElement()
            table.topicOf(child, "get")
        self.assertEqual(len(table._topics), refusals.MAX_TOPICS)
