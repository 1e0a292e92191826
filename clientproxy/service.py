# -*- test-case-name: tests.test_service -*-
"""
Assembly of one proxy: the component connection and its handlers.
"""

from clientproxy.connection import ProxyComponent
from clientproxy.dispatch import MAX_PENDING, MAX_PENDING_PER_REQUESTER, IQDispatcher
from clientproxy.messages import QUEUE_PER_SENDER, QUEUE_SIZE, MessageRouter
from clientproxy.pending import PendingTable
from clientproxy.policy import MAX_STANZA_SIZE, Policy
from clientproxy.presence import TargetPresence
from clientproxy.resources import ResourceSet
from clientproxy.servicepresence import ServicePresence
from clientproxy.stats import Stats
from clientproxy.store import Store, storePath
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
    dataDir=None,
    queuePerSender=QUEUE_PER_SENDER,
    queueSize=QUEUE_SIZE,
    grace=5.0,
    maxPending=MAX_PENDING,
    maxPendingPerRequester=MAX_PENDING_PER_REQUESTER,
    rate=0.0,
    burst=None,
    maxStanzaSize=MAX_STANZA_SIZE,
    allow=(),
    deny=(),
    reactor=None,
):
    """
    Build the service of one proxy from component C{jid} to C{target}.

    @param jid: the component's JID (a string, already normalised).
    @param target: the target's bare JID (a string, already normalised).
    @param strategy: a strategy name, or an L{IDispatchStrategy} provider.
    @param resources: a regular expression the names of usable resources
        must match (searched, not anchored), or C{None} for all.
    @param dataDir: the directory of the store (queued messages, service
        subscribers); C{None} keeps them in memory only (tests).
    @param queuePerSender: the most messages queued from one sender (bare
        JID) while no resource is available.
    @param queueSize: the most messages queued in all.
    @param grace: seconds requests in flight get when the service stops.
    @param maxPending: most requests from outside in flight (0: no bound).
    @param maxPendingPerRequester: most in flight from one bare JID.
    @param rate: stanzas a second one bare JID may send (0: no limit), with
        bursts of C{burst}.
    @param maxStanzaSize: the largest stanza forwarded, in bytes.
    @param allow: bare JIDs or domains that alone may use the service.
    @param deny: bare JIDs or domains that may not.
    @param reactor: an L{IReactorTCP} and L{IReactorTime}; the global
        reactor by default.
    @return: the L{ProxyComponent}, an L{IService}. Its handlers are
        reachable as C{presence}, C{dispatcher}, C{messages} and
        C{servicePresence}, its store as C{store}.
    """
    if reactor is None:
        from twisted.internet import reactor
    if isinstance(strategy, str):
        strategy = makeStrategy(strategy)
    stats = Stats()
    available = ResourceSet(resources)
    policy = Policy(reactor, allow, deny, rate, burst, maxStanzaSize)
    component = ProxyComponent(host, port, jid, secret, stats, reactor)
    component.grace = grace
    component.presence = TargetPresence(jid, target, available, stats, reactor)
    component.presence.setHandlerParent(component)
    component.dispatcher = IQDispatcher(
        jid,
        target,
        available,
        strategy,
        PendingTable(reactor, timeout),
        stats,
        policy,
        maxPending,
        maxPendingPerRequester,
    )
    component.dispatcher.setHandlerParent(component)
    component.store = Store(":memory:" if dataDir is None else storePath(dataDir, jid))
    component.messages = MessageRouter(
        jid,
        target,
        available,
        component.store,
        stats,
        reactor,
        policy,
        queuePerSender,
        queueSize,
    )
    component.messages.setHandlerParent(component)
    component.servicePresence = ServicePresence(
        jid, target, available, component.store, stats, policy
    )
    component.servicePresence.setHandlerParent(component)
    return component
