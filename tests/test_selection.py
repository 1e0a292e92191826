"""
Tests for L{clientproxy.selection}: the dispatch pipeline on its own, with a
L{task.Clock}: feature match modes, refusals and their expiry, affinity by
rendezvous hashing.
"""

from twisted.internet import task
from twisted.trial import unittest

from clientproxy.caps import Caps
from clientproxy.resources import ResourceSet
from clientproxy.selection import AUTO, OFF, STRICT, Affinity, Selector
from clientproxy.strategies import RoundRobinStrategy
from tests.helpers import inStream

NS = "urn:example:service"


def names(resources):
    return sorted(r.name for r in resources)


class PipelineTests(unittest.TestCase):
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

    def chosen(self, selector, feature=NS, n=12, key=None, exclude=()):
        return {selector.choose(feature, key, "r@x/1", exclude).name for _ in range(n)}

    def test_autoPrefersAdvertisers(self):
        selector = self.selector()
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})
        self.advertise("b", NS)
        self.assertEqual(self.chosen(selector), {"b"})
        self.assertEqual(self.chosen(selector, feature="urn:other"), {"a", "b", "c"})

    def test_strictOnlyAdvertisers(self):
        selector = self.selector(STRICT)
        self.assertIsNone(selector.choose(NS, None, "r@x/1"))
        self.advertise("c", NS)
        self.assertEqual(self.chosen(selector), {"c"})

    def test_offIgnoresFeatures(self):
        selector = self.selector(OFF)
        self.advertise("b", NS)
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_refusersLeftOutUntilTheTTL(self):
        selector = self.selector(ttl=300)
        self.assertTrue(selector.refused(self.resource("a"), NS))
        self.assertEqual(self.chosen(selector), {"b", "c"})
        self.assertEqual(self.chosen(selector, feature="urn:other"), {"a", "b", "c"})
        self.assertEqual(selector.refusedBy(self.resource("a")), [NS])
        self.clock.advance(299)
        self.assertEqual(self.chosen(selector), {"b", "c"})
        self.clock.advance(1)
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})
        self.assertEqual(selector.refusedBy(self.resource("a")), [])

    def test_refusalForgottenOnCapsChange(self):
        selector = self.selector()
        selector.refused(self.resource("a"), NS)
        self.resources.update("svc@x/a", "a", 0, Caps("n", "v2", "sha-1"))
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_refusalForgottenOnReconnect(self):
        selector = self.selector()
        selector.refused(self.resource("a"), NS)
        self.resources.remove("svc@x/a")
        self.resources.update("svc@x/a", "a", 0)
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_refusalLearningOff(self):
        selector = self.selector(ttl=0)
        self.assertFalse(selector.refused(self.resource("a"), NS))
        self.assertEqual(self.chosen(selector), {"a", "b", "c"})

    def test_excluded(self):
        selector = self.selector()
        tried = (self.resource("a"), self.resource("b"))
        self.assertEqual(self.chosen(selector, exclude=tried), {"c"})
        self.assertIsNone(selector.choose(NS, None, "r", tried + (self.resource("c"),)))

    def test_noResource(self):
        selector = Selector(ResourceSet(), RoundRobinStrategy(), self.clock)
        self.assertIsNone(selector.choose(NS, None, "r@x/1"))
        self.assertIsNone(selector.choose(NS, "key", "r@x/1"))


class AffinityTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.resources = ResourceSet()
        for i in range(10):
            self.resources.update("svc@x/r%d" % i, "r%d" % i, 0)
        self.selector = Selector(
            self.resources, RoundRobinStrategy(), self.clock, AUTO, Affinity("attribute:room")
        )

    def placement(self, keys):
        return {key: self.selector.choose(NS, key, "r@x/1").jid for key in keys}

    def test_sameKeySameResource(self):
        keys = ["room%d" % i for i in range(200)]
        first = self.placement(keys)
        self.assertEqual(self.placement(keys), first)
        # Spread over the resources, not all on one.
        self.assertGreater(len(set(first.values())), 5)

    def test_onlyTheKeysOfALeavingResourceMove(self):
        keys = ["room%d" % i for i in range(1000)]
        before = self.placement(keys)
        self.resources.remove("svc@x/r3")
        after = self.placement(keys)
        moved = {k for k in keys if before[k] != after[k]}
        self.assertEqual(moved, {k for k in keys if before[k] == "svc@x/r3"})
        # About a tenth of the keys were on it.
        self.assertTrue(50 < len(moved) < 150, len(moved))

    def test_aJoiningResourceTakesOnlyItsShare(self):
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
            "from clientproxy.resources import Resource\n"
            "from clientproxy.selection import _weight, stableHash\n"
            "print(_weight(stableHash('room1'), Resource('svc@x/a', 'a')))\n"
        )
        outputs = set()
        for seed in ("1", "2"):
            env = dict(os.environ, PYTHONHASHSEED=seed)
            outputs.add(subprocess.check_output([sys.executable, "-c", script], env=env))
        self.assertEqual(len(outputs), 1)

    def test_keys(self):
        child = inStream("<iq><conference xmlns='urn:x' room='r1'/></iq>").firstChildElement()
        self.assertEqual(Affinity("attribute:room").keyOf(child, "a@x/1"), "r1")
        self.assertIsNone(Affinity("attribute:other").keyOf(child, "a@x/1"))
        self.assertEqual(Affinity("requester").keyOf(child, "a@x/1"), "a@x/1")
        self.assertEqual(Affinity("bare-requester").keyOf(child, "a@x/1"), "a@x")
        self.assertIsNone(Affinity("none").keyOf(child, "a@x/1"))
        self.assertRaises(ValueError, Affinity, "attribute:")
        self.assertRaises(ValueError, Affinity, "sticky")
