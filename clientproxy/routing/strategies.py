# -*- test-case-name: tests.test_strategies -*-
"""
The built-in dispatch strategies, and the lookup of strategies by name
(built-ins first, then L{IStrategyPlugin} plugins).
"""

import random

from twisted.plugin import IPlugin, getPlugins
from zope.interface import implementer

from clientproxy.routing.istrategy import IDispatchStrategy, IStrategyPlugin


@implementer(IPlugin, IStrategyPlugin)
class StrategyPlugin:
    """
    A named strategy: C{factory()} makes the L{IDispatchStrategy}. It is
    an L{IPlugin}, so a module in a plugin package can simply hold one.

    Third parties can use it for their plugins too::

        sticky = StrategyPlugin("sticky", "Same requester, same resource.",
                                StickyStrategy)
    """

    def __init__(self, name, description, factory):
        self.name = name
        self.description = description
        self._factory = factory

    def makeStrategy(self):
        return self._factory()


@implementer(IDispatchStrategy)
class RandomStrategy:
    """
    A resource chosen uniformly at random: mod_client_proxy's behaviour.
    """

    def __init__(self, rng=None):
        self._choice = (rng or random).choice

    def choose(self, resources, requester):
        return self._choice(resources)


@implementer(IDispatchStrategy)
class RoundRobinStrategy:
    """
    Each resource in turn.
    """

    def __init__(self):
        self._next = 0

    def choose(self, resources, requester):
        index = self._next % len(resources)
        self._next = index + 1
        return resources[index]


@implementer(IDispatchStrategy)
class LeastPendingStrategy:
    """
    The resource holding the fewest requests now; ties go round in turn, so
    an idle set of resources still shares the work.
    """

    def __init__(self):
        self._start = 0

    def choose(self, resources, requester):
        count = len(resources)
        start = self._start % count
        self._start = start + 1
        best = resources[start]
        fewest = best.pending
        if fewest:
            for offset in range(1, count):
                resource = resources[(start + offset) % count]
                load = resource.pending
                if load < fewest:
                    best, fewest = resource, load
                    if not load:
                        break
        return best


@implementer(IDispatchStrategy)
class PriorityStrategy:
    """
    A resource of the highest presence priority; random among equals. The
    others serve only while no resource of a higher priority is available.
    """

    def __init__(self, rng=None):
        self._choice = (rng or random).choice

    def choose(self, resources, requester):
        top = max(resource.priority for resource in resources)
        return self._choice([resource for resource in resources if resource.priority == top])


BUILTIN = {
    plugin.name: plugin
    for plugin in [
        StrategyPlugin(
            "random",
            "A random available resource (mod_client_proxy's behaviour).",
            RandomStrategy,
        ),
        StrategyPlugin("round-robin", "Each available resource in turn.", RoundRobinStrategy),
        StrategyPlugin(
            "least-pending",
            "The resource holding the fewest requests.",
            LeastPendingStrategy,
        ),
        StrategyPlugin(
            "priority",
            "A resource of the highest presence priority.",
            PriorityStrategy,
        ),
    ]
}

DEFAULT = "random"


def availableStrategies(package=None):
    """
    Return every known strategy by name: the built-ins and the
    L{IStrategyPlugin} plugins found in C{package} (C{twisted.plugins} by
    default). A plugin cannot replace a built-in of the same name.
    """
    if package is None:
        from twisted import plugins as package

    found = {}
    for plugin in getPlugins(IStrategyPlugin, package):
        found.setdefault(plugin.name, plugin)
    found.update(BUILTIN)
    return found


def makeStrategy(name, package=None):
    """
    Return a new strategy called C{name}.

    @raise KeyError: no strategy has that name.
    """
    plugin = BUILTIN.get(name) or availableStrategies(package)[name]
    return plugin.makeStrategy()
