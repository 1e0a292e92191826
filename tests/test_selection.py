"""
Tests for L{clientproxy.routing.selection}: the dispatch pipeline on its own, with a
L{task.Clock}: feature match modes, refusals and their expiry, affinity by
rendezvous hashing.
"""

from twisted.internet import task
from twisted.trial import unittest

from clientproxy.xmpp.caps import Caps
from clientproxy.routing.resources import ResourceSet
from clientproxy.routing.bounded import compact
from clientproxy.routing.selection import AUTO, OFF, STRICT, Affinity, Selector
from clientproxy.routing.strategies import RoundRobinStrategy
from tests.helpers import inStream

NS = "urn:example:service"


def topic(namespace, kind="get", name="q"):
    """
    The topic of a request of type C{kind} for a C{name} element in
    C{namespace}.
    """
    return (compact(namespace), name, kind)


def names(resources):
    return sorted(r.name for r in resources)


class PipelineTests(unittest.TestCase):
    """
    The pipeline's steps one by one, with three resources and round-robin
    dispatch.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.resources = ResourceSet()
        for name in ("a", "b", "c"):
            self.resources.update("svc@x/" + name, name, 0)

    def selector(self, match=AUTO, affinity="none", ttl=300):
        return Selector(
            self.resources, RoundRobinStrategy(), self.clock, match, Affinity(affinity), ttl
        )

    def resource(self, name):
        return self.resources.get("svc@x/" + name)

    def advertise(self, name, *features):
        self.resources.learnt(self.resource(name), frozenset(features))

    def chosen(self, selector, feature=NS, n=12, key=None, exclude=(), kind="get"):
        return {
            selector.choose(feature, topic(feature, kind), key, "r@x/1", exclude).name
            for _ in range(n)
        }

    def refuse(self, selector, name, *requesters, feature=NS, kind="get"):
        for requester in requesters:
            selector.refusals.refused(self.resource(name), topic(feature, kind), requester)

    def test_autoPrefersAdvertisers(self):
        """
        C{auto}: advertisers only once one resource advertises the feature.
        """
        selector = self.selector()
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})
        self.advertise("b", NS)
        self.assertEqual(self.chosen(selector), {"b"})
        self.assertEqual(self.chosen(selector, feature="urn:other"), {"a", "b", "c"})

    def test_autoAsksTheOthersAfterTheAdvertisers(self):
        """
        C{auto}: once every advertiser refused a request, it goes to the
        resources that do not advertise the feature (what a resource
        advertises may be wrong; Jitsi's focus advertises nothing). Learnt
        refusals order each group, never the groups: an advertiser learnt
        to refuse (two accounts can make it so) is still asked before any
        resource that does not advertise.
        """
        selector = self.selector()
        self.advertise("b", NS)
        tried = (self.resource("b"),)
        self.assertEqual(self.chosen(selector, exclude=tried), {"a", "c"})
        for name in ("a", "b"):
            self.refuse(selector, name, "m@x/1", "n@y/1")
        self.assertEqual(self.chosen(selector), {"b"})
        self.assertEqual(self.chosen(selector, exclude=tried), {"c"})
        tried = (self.resource("b"), self.resource("c"))
        self.assertEqual(self.chosen(selector, exclude=tried), {"a"})

    def test_strictOnlyAdvertisers(self):
        """
        C{strict}: no advertiser, no candidate.
        """
        selector = self.selector(STRICT)
        self.assertIsNone(selector.choose(NS, topic(NS), None, "r@x/1"))
        self.advertise("c", NS)
        self.assertEqual(self.chosen(selector), {"c"})

    def test_offIgnoresFeatures(self):
        """
        C{off}: every usable resource, whatever it advertises.
        """
        selector = self.selector(OFF)
        self.advertise("b", NS)
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_refusersAskedLastUntilTheTTL(self):
        """
        A resource that refused two requesters' requests of one namespace
        and type is asked after the others, for that namespace and type
        only, until the TTL passes.
        """
        selector = self.selector(ttl=300)
        self.refuse(selector, "a", "m@x/1", "n@y/1")
        self.assertEqual(self.chosen(selector), {"b", "c"})
        self.assertEqual(self.chosen(selector, kind="set"), {"a", "b", "c"})
        self.assertEqual(self.chosen(selector, feature="urn:other"), {"a", "b", "c"})
        self.assertEqual(selector.refusals.refusedBy(self.resource("a")), [topic(NS)])
        self.clock.advance(299)
        self.assertEqual(self.chosen(selector), {"b", "c"})
        self.clock.advance(1)
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})
        self.assertEqual(selector.refusals.refusedBy(self.resource("a")), [])

    def test_oneRequesterChangesNothing(self):
        """
        Refusals of one bare JID's requests (from any of its resources),
        however many, do not reorder anyone's requests.
        """
        selector = self.selector()
        self.refuse(selector, "a", "m@x/1", "m@x/2", "m@x/1")
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_refusersNeverEmptyTheCandidates(self):
        """
        When every candidate is a learnt refuser, they are all asked
        anyway: learnt refusals order, they never refuse.
        """
        selector = self.selector()
        for name in ("a", "b", "c"):
            self.refuse(selector, name, "m@x/1", "n@y/1")
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})
        self.refuse(selector, "a", "m@x/1", "n@y/1", feature="urn:other")
        self.refuse(selector, "b", "m@x/1", "n@y/1", feature="urn:other")
        self.assertEqual(self.chosen(selector, feature="urn:other"), {"c"})
        tried = (self.resource("c"),)
        self.assertEqual(self.chosen(selector, feature="urn:other", exclude=tried), {"a", "b"})

    def test_servedForgetsTheRefuser(self):
        """
        A result from a learnt refuser for that namespace and type puts it
        back among the first asked at once.
        """
        selector = self.selector()
        self.refuse(selector, "a", "m@x/1", "n@y/1")
        selector.refusals.served(self.resource("a"), topic(NS))
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_refusalForgottenOnCapsChange(self):
        """
        A resource that changes its caps is no learnt refuser any more.
        """
        selector = self.selector()
        self.refuse(selector, "a", "m@x/1", "n@y/1")
        self.resources.update("svc@x/a", "a", 0, Caps("n", "v2", "sha-1"))
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_refusalForgottenOnReconnect(self):
        """
        Nor is one that reconnects.
        """
        selector = self.selector()
        self.refuse(selector, "a", "m@x/1", "n@y/1")
        self.resources.remove("svc@x/a")
        self.resources.update("svc@x/a", "a", 0)
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_refusalLearningOff(self):
        """
        A TTL of 0 learns nothing.
        """
        selector = self.selector(ttl=0)
        self.assertFalse(selector.refusals.refused(self.resource("a"), topic(NS), "m@x/1"))
        self.refuse(selector, "a", "m@x/1", "n@y/1")
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_excluded(self):
        """
        The resources a request was refused by are no candidates for it.
        """
        selector = self.selector()
        tried = (self.resource("a"), self.resource("b"))
        self.assertEqual(self.chosen(selector, exclude=tried), {"c"})
        self.assertIsNone(selector.choose(NS, topic(NS), None, "r", tried + (self.resource("c"),)))

    def test_noResource(self):
        """
        No resource, no choice, with or without a key.
        """
        selector = Selector(ResourceSet(), RoundRobinStrategy(), self.clock)
        self.assertIsNone(selector.choose(NS, topic(NS), None, "r@x/1"))
        self.assertIsNone(selector.choose(NS, topic(NS), "key", "r@x/1"))

    def test_cachesBounded(self):
        """
        Fresh namespaces and affinity keys, however many, keep the caches
        within their entry bounds, and every key kept is short.
        """
        from clientproxy.routing import selection

        selector = self.selector(affinity="attribute:room")
        for i in range(selection.CANDIDATE_CACHE_SIZE + 50):
            feature = "urn:fresh:%d:" % (i,) + "x" * 500
            selector.choose(feature, topic(feature), "room%d" % (i,) + "y" * 500, "r@x/1")
        self.assertEqual(len(selector._candidates), selection.CANDIDATE_CACHE_SIZE)
        self.assertTrue(all(len(key) <= 64 for key in selector._candidates))
        self.assertTrue(all(len(a) <= 64 and len(b) <= 64 for a, b in selector._affine))


class AffinityTests(unittest.TestCase):
    """
    Rendezvous hashing: a key stays on one resource, and only the keys of a
    resource that joins or leaves move.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.resources = ResourceSet()
        for i in range(10):
            self.resources.update("svc@x/r%d" % i, "r%d" % i, 0)
        self.selector = Selector(
            self.resources, RoundRobinStrategy(), self.clock, AUTO, Affinity("attribute:room")
        )

    def placement(self, keys):
        return {key: self.selector.choose(NS, topic(NS, "set"), key, "r@x/1").jid for key in keys}

    def test_sameKeySameResource(self):
        """
        A key goes to the same resource every time, while different keys spread
        over the resources instead of all going to one.
        """
        keys = ["room%d" % i for i in range(200)]
        first = self.placement(keys)
        self.assertEqual(self.placement(keys), first)
        # Spread over the resources, not all on one.
        self.assertGreater(len(set(first.values())), 5)

    def test_onlyTheKeysOfALeavingResourceMove(self):
        """
        When a resource leaves, only the keys it had move (about a tenth, of
        ten resources); every other key stays where it was.
        """
        keys = ["room%d" % i for i in range(1000)]
        before = self.placement(keys)
        self.resources.remove("svc@x/r3")
        after = self.placement(keys)
        moved = {k for k in keys if before[k] != after[k]}
        self.assertEqual(moved, {k for k in keys if before[k] == "svc@x/r3"})
        # About a tenth of the keys were on it.
        self.assertTrue(50 < len(moved) < 150, len(moved))

    def test_aJoiningResourceTakesOnlyItsShare(self):
        """
        A resource that joins takes about its share of the keys, and every key
        that moves moves to it, none between the resources already there.
        """
        keys = ["room%d" % i for i in range(1000)]
        before = self.placement(keys)
        self.resources.update("svc@x/new", "new", 0)
        after = self.placement(keys)
        moved = {k for k in keys if before[k] != after[k]}
        self.assertTrue(all(after[k] == "svc@x/new" for k in moved))
        self.assertTrue(40 < len(moved) < 140, len(moved))

    def test_stableAcrossProcesses(self):
        """
        The weights do not depend on Python's salted string hash: processes
        (several instances) agree on where a key goes.
        """
        import os
        import subprocess
        import sys

        script = (
            "from clientproxy.routing.resources import Resource\n"
            "from clientproxy.routing.selection import _weight, stableHash\n"
            "print(_weight(stableHash('room1'), Resource('svc@x/a', 'a')))\n"
        )
        outputs = set()
        for seed in ("1", "2"):
            env = dict(os.environ, PYTHONHASHSEED=seed)
            outputs.add(subprocess.check_output([sys.executable, "-c", script], env=env))
        self.assertEqual(len(outputs), 1)

    def test_keys(self):
        """
        The affinity key is the named attribute of the request's child (none
        when absent), the full or bare requester, or none at all; an empty
        attribute name or an unknown kind is a C{ValueError}.
        """
        child = inStream("<iq><conference xmlns='urn:x' room='r1'/></iq>").firstChildElement()
        self.assertEqual(Affinity("attribute:room").keyOf(child, "a@x/1"), "r1")
        self.assertIsNone(Affinity("attribute:other").keyOf(child, "a@x/1"))
        self.assertEqual(Affinity("requester").keyOf(child, "a@x/1"), "a@x/1")
        self.assertEqual(Affinity("bare-requester").keyOf(child, "a@x/1"), "a@x")
        self.assertIsNone(Affinity("none").keyOf(child, "a@x/1"))
        self.assertRaises(ValueError, Affinity, "attribute:")
        self.assertRaises(ValueError, Affinity, "sticky")
