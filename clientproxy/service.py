# -*- test-case-name: tests.test_service -*-
"""
Assembly of one proxy: the component connection and its handlers.
"""

from clientproxy.connection import ProxyComponent
from clientproxy.dispatch import IQDispatcher
from clientproxy.pending import PendingTable
from clientproxy.presence import TargetPresence
from clientproxy.resources import ResourceSet
from clientproxy.stats import Stats
from clientproxy.strategies import DEFAULT, makeStrategy

#: Seconds a request waits for its reply by default.
DEFAULT_TIMEOUT = 30.0


def makeProxy(
    jid,
    target,
    secret,
    host="127.0.0.1",
    port=5347,
    timeout=DEFAULT_TIMEOUT,
    strategy=DEFAULT,
    resources=None,
    reactor=None,
):
    """
    Build the service of one proxy from component C{jid} to C{target}.

    @param jid: the component's JID (a string, already normalised).
    @param target: the target's bare JID (a string, already normalised).
    @param strategy: a strategy name, or an L{IDispatchStrategy} provider.
    @param resources: a regular expression the names of usable resources
        must match (searched, not anchored), or C{None} for all.
    @param reactor: an L{IReactorTCP} and L{IReactorTime}; the global
        reactor by default.
    @return: the L{ProxyComponent}, an L{IService}. Its handlers are
        reachable as C{dispatcher} and C{presence}.
    """
    if reactor is None:
        from twisted.internet import reactor
    if isinstance(strategy, str):
        strategy = makeStrategy(strategy)
    stats = Stats()
    available = ResourceSet(resources)
    component = ProxyComponent(host, port, jid, secret, stats, reactor)
    component.presence = TargetPresence(jid, target, available, stats, reactor)
    component.presence.setHandlerParent(component)
    component.dispatcher = IQDispatcher(
        jid, target, available, strategy, PendingTable(reactor, timeout), stats
    )
    component.dispatcher.setHandlerParent(component)
    return component
