"""
Tests for L{clientproxy.routing.strategies}, and for finding a third party's
strategy as a Twisted plugin.
"""

import random
import sys
import textwrap
from collections import Counter

from twisted.python.filepath import FilePath
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clientproxy.routing.istrategy import IDispatchStrategy, IStrategyPlugin
from clientproxy.routing.resources import Resource
from clientproxy.routing.strategies import (
    BUILTIN,
    LeastPendingStrategy,
    PriorityStrategy,
    RandomStrategy,
    RoundRobinStrategy,
    availableStrategies,
    makeStrategy,
)


def resources(*priorities):
    return [Resource("svc@x/r%d" % i, "r%d" % i, p) for i, p in enumerate(priorities)]


class BuiltinTests(unittest.TestCase):
    """
    The built-in strategies: their plugin interfaces, and how each one picks a
    resource.
    """

    def test_interfaces(self):
        """
        Every built-in is an L{IStrategyPlugin} under its own name, whose
        strategy provides L{IDispatchStrategy}, as a third party's must.
        """
        for name, plugin in BUILTIN.items():
            self.assertTrue(verifyObject(IStrategyPlugin, plugin))
            self.assertEqual(plugin.name, name)
            self.assertTrue(verifyObject(IDispatchStrategy, plugin.makeStrategy()))

    def test_randomCoversAll(self):
        """
        The random strategy picks every resource in time, not only some.
        """
        rs = resources(0, 0, 0)
        strategy = RandomStrategy(random.Random(1))
        counts = Counter(strategy.choose(rs, "req").name for _ in range(300))
        self.assertEqual(set(counts), {"r0", "r1", "r2"})

    def test_roundRobin(self):
        """
        Round robin takes each resource in turn, and goes on round when the set
        shrinks.
        """
        rs = resources(0, 0, 0)
        strategy = RoundRobinStrategy()
        self.assertEqual(
            [strategy.choose(rs, "req").name for _ in range(6)],
            ["r0", "r1", "r2", "r0", "r1", "r2"],
        )
        self.assertEqual({strategy.choose(rs[:2], "req").name for _ in range(2)}, {"r0", "r1"})

    def test_leastPending(self):
        """
        Least-pending takes the resource that holds the fewest requests.
        """
        rs = resources(0, 0, 0)
        rs[0].pending = 2
        rs[1].pending = 1
        rs[2].pending = 3
        strategy = LeastPendingStrategy()
        for _ in range(4):
            self.assertEqual(strategy.choose(rs, "req").name, "r1")

    def test_leastPendingSharesIdleResources(self):
        """
        Among idle resources (a tie) least-pending goes round in turn, so the
        work is shared rather than all given to the first.
        """
        rs = resources(0, 0, 0)
        strategy = LeastPendingStrategy()
        self.assertEqual({strategy.choose(rs, "req").name for _ in range(3)}, {"r0", "r1", "r2"})

    def test_priority(self):
        """
        The priority strategy picks among the resources of the highest priority
        only, and each of them in time.
        """
        rs = resources(1, 5, 5, -1)
        strategy = PriorityStrategy(random.Random(2))
        picked = {strategy.choose(rs, "req").name for _ in range(50)}
        self.assertEqual(picked, {"r1", "r2"})

    def test_unknown(self):
        """
        An unknown strategy name is a C{KeyError} from L{makeStrategy}.
        """
        self.assertRaises(KeyError, makeStrategy, "no-such-strategy")


PLUGIN_MODULE = textwrap.dedent(
    """
    from zope.interface import implementer
    from clientproxy.routing.istrategy import IDispatchStrategy
    from clientproxy.routing.strategies import StrategyPlugin

    @implementer(IDispatchStrategy)
    class First:
        def choose(self, resources, requester):
            return resources[0]

    first = StrategyPlugin("always-first", "The first resource.", First)
    shadow = StrategyPlugin("random", "Tries to replace a built-in.", First)
    """
)


class PluginTests(unittest.TestCase):
    """
    A strategy dropped into a plugin package is found by name.
    """

    def setUp(self):
        root = FilePath(self.mktemp())
        package = root.child("cpstrategyplugins")
        package.makedirs()
        package.child("__init__.py").setContent(b"")
        package.child("mystrategy.py").setContent(PLUGIN_MODULE.encode())
        sys.path.insert(0, root.path)
        self.addCleanup(sys.path.remove, root.path)
        self.addCleanup(sys.modules.pop, "cpstrategyplugins", None)
        self.addCleanup(sys.modules.pop, "cpstrategyplugins.mystrategy", None)
        import cpstrategyplugins

        self.package = cpstrategyplugins

    def test_found(self):
        """
        A strategy in a plugin package is listed by its name, and
        L{makeStrategy} makes one that works.
        """
        found = availableStrategies(self.package)
        self.assertIn("always-first", found)
        strategy = makeStrategy("always-first", self.package)
        self.assertEqual(strategy.choose(resources(0, 0), "req").name, "r0")

    def test_builtinNotReplaced(self):
        """
        A plugin named like a built-in does not replace it: C{random} stays the
        built-in one.
        """
        self.assertIs(availableStrategies(self.package)["random"], BUILTIN["random"])
