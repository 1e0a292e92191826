# -*- test-case-name: tests.test_config -*-
"""
Assembly of one proxy: its handlers, what they share, and the component
connection that carries them.

L{makeHandlers} is the one place the handlers are built and handed what
they share (the target's resources, the counters, the admission policy,
the store, the clock); L{makeProxy} puts them on a connection to a server,
and the tests' in-memory harness uses the same L{makeHandlers}.
"""

from clientproxy.handlers.capabilities import CapabilityLearner
from clientproxy.state.local import LocalFacts, LocalRequests
from clientproxy.state.redis.cluster import Cluster
from clientproxy.state.redis.facts import SharedFacts
from clientproxy.state.redis.lease import Lease
from clientproxy.state.redis.requests import SharedRequests
from clientproxy.xmpp.connection import ProxyComponent
from clientproxy.handlers.dispatch import IQDispatcher
from clientproxy.handlers.instances import InstanceProbe
from clientproxy.handlers.keepalive import DEFAULT_INTERVAL, KeepAlive
from clientproxy.handlers.messages import QUEUE_PER_SENDER, QUEUE_SIZE, MessageRouter
from clientproxy.routing.pending import (
    MAX_PENDING,
    MAX_PENDING_BYTES,
    MAX_PENDING_FROM_TARGET,
    MAX_PENDING_PER_REQUESTER,
)
from clientproxy.routing.policy import MAX_STANZA_SIZE, Policy
from clientproxy.handlers.targetpresence import TargetPresence
from clientproxy.routing.resources import ResourceSet
from clientproxy.routing.selection import AUTO, OFF, REFUSAL_TTL, Affinity, Selector
from clientproxy.handlers.servicepresence import (
    MAX_SUBSCRIBERS,
    MAX_SUBSCRIBERS_PER_DOMAIN,
    ServicePresence,
)
from clientproxy.xmpp.stanzas import StanzaIDs
from clientproxy.ops.stats import Stats
from clientproxy.state.redis.store import Listener, RedisStore, checkURL, connect as connectRedis
from clientproxy.ops.standby import lockFor
from clientproxy.state.sqlite import Store, storePath
from clientproxy.routing.strategies import DEFAULT, makeStrategy

#: Seconds a request waits for its reply by default.
DEFAULT_TIMEOUT = 30.0

#: The settings of the admission policy (L{Policy.configure}).
POLICY_SETTINGS = frozenset(
    ("allow", "deny", "rate", "burst", "domain-rate", "domain-burst", "max-stanza-size")
)


class Handlers:
    """
    The handlers of one proxy and what they share, in the order they are
    attached to the stream (L{all}): the target's presence is seen before
    the service's own presence handler.

    @ivar cluster: the L{Cluster} through which several processes share
        their state, or C{None} for a process alone.
    """

    def __init__(self, stats, policy, resources, store, cluster=None, **handlers):
        self.stats = stats
        self.policy = policy
        self.resources = resources
        self.store = store
        self.cluster = cluster
        self.keepalive = handlers["keepalive"]
        self.instances = handlers["instances"]
        self.presence = handlers["presence"]
        self.capabilities = handlers["capabilities"]
        self.dispatcher = handlers["dispatcher"]
        self.messages = handlers["messages"]
        self.servicePresence = handlers["servicePresence"]

    def reconfigure(self, settings, changed):
        """
        Apply the live settings to the handlers and what they share (a
        reload): C{settings} by option name, C{changed} the names of those
        that changed.
        """
        if any(key in POLICY_SETTINGS for key in changed):
            self.policy.configure(
                settings["allow"],
                settings["deny"],
                settings["rate"],
                settings["burst"],
                settings["max-stanza-size"],
                settings["domain-rate"],
                settings["domain-burst"],
            )
        self.dispatcher.pending.configure(
            settings["timeout"],
            settings["max-pending"],
            settings["max-pending-per-requester"],
            settings["max-pending-from-target"],
            settings["max-pending-bytes"],
            settings["hold"],
        )
        self.dispatcher.configure(settings["idempotent"])
        self.servicePresence.configure(
            settings["max-subscribers"], settings["max-subscribers-per-domain"]
        )
        self.messages.configure(settings["queue-per-sender"], settings["queue-size"])
        self.keepalive.setInterval(settings["keepalive"])
        selector = self.dispatcher.selector
        if "strategy" in changed:
            selector.configure(strategy=makeStrategy(settings["strategy"]))
        if any(key in changed for key in ("match-features", "affinity", "refusal-ttl")):
            selector.configure(
                match=settings["match-features"],
                affinity=settings["affinity"],
                refusalTTL=settings["refusal-ttl"],
            )
            self.capabilities.setEnabled(settings["match-features"] != "off")
            self.dispatcher.serveLine()
        if "resources" in changed:
            self.presence.refilter(settings["resources"])

    def all(self):
        handlers = [
            self.keepalive,
            self.instances,
            self.presence,
            self.capabilities,
            self.dispatcher,
            self.messages,
            self.servicePresence,
        ]
        if self.cluster is not None:
            handlers.append(self.cluster)
        return handlers


def makeHandlers(
    jid,
    target,
    clock,
    store,
    timeout=DEFAULT_TIMEOUT,
    strategy=DEFAULT,
    resources=None,
    matchFeatures=AUTO,
    refusalTTL=REFUSAL_TTL,
    affinity="none",
    hold=0.0,
    idempotent=(),
    queuePerSender=QUEUE_PER_SENDER,
    queueSize=QUEUE_SIZE,
    maxPending=MAX_PENDING,
    maxPendingPerRequester=MAX_PENDING_PER_REQUESTER,
    maxPendingFromTarget=MAX_PENDING_FROM_TARGET,
    maxPendingBytes=MAX_PENDING_BYTES,
    maxSubscribers=MAX_SUBSCRIBERS,
    maxSubscribersPerDomain=MAX_SUBSCRIBERS_PER_DOMAIN,
    rate=0.0,
    burst=None,
    domainRate=None,
    domainBurst=None,
    maxStanzaSize=MAX_STANZA_SIZE,
    allow=(),
    deny=(),
    keepalive=DEFAULT_INTERVAL,
    probeInstances=True,
    redis=None,
    listen=None,
):
    """
    Build the handlers of the proxy from component C{jid} to C{target}.

    @param clock: the L{IReactorTime} for timeouts, rates, stamps and the
        keepalive.
    @param store: the L{Store} of queued messages and subscribers.
    @param strategy: a strategy name, or an L{IDispatchStrategy} provider.
    @param resources: a regular expression the names of usable resources
        must match (searched, not anchored), or C{None} for all.
    @param matchFeatures: C{auto}, C{strict} or C{off}: see
        L{clientproxy.routing.selection}.
    @param refusalTTL: seconds a refusal keeps a namespace from a resource
        (0: refusals are not learnt).
    @param affinity: C{none}, C{requester}, C{bare-requester} or
        C{attribute:NAME}.
    @param hold: seconds a request may wait in line for a resource
        (C{--hold}; 0: none waits).
    @param idempotent: namespaces whose C{set}s are safe to repeat.
    @param queuePerSender: the most messages queued from one sender (bare
        JID) while no resource is available.
    @param queueSize: the most messages queued in all.
    @param maxPending: most requests from outside in flight (0: no bound).
    @param maxPendingPerRequester: most in flight from one bare JID.
    @param maxPendingFromTarget: most requests started by the target in
        flight.
    @param maxPendingBytes: most bytes the requests in flight keep, in all
        (0: no bound; see L{clientproxy.routing.pending.weigh}).
    @param maxSubscribers: most subscribers to the service's presence.
    @param maxSubscribersPerDomain: most of them from one domain.
    @param rate: stanzas a second one bare JID may send (0: no limit), with
        bursts of C{burst}; C{domainRate} and C{domainBurst} for one
        domain (by default ten times those).
    @param maxStanzaSize: the largest stanza forwarded, in bytes.
    @param allow: bare JIDs or domains that alone may use the service.
    @param deny: bare JIDs or domains that may not.
    @param keepalive: seconds of silence from the server before it is
        pinged (0: off).
    @param probeInstances: whether to look for other processes connected
        as the same component (L{clientproxy.handlers.instances}); not with
        C{redis}, where several are expected.
    @param redis: a L{clientproxy.state.redis.client.Redis} client: the state is shared with the
        other processes serving the component (L{clientproxy.state.redis.cluster}).
    @param listen: with C{redis}, called as C{listen(onMessage)} for the
        L{clientproxy.state.redis.store.Listener} of the component's channels.
    @rtype: L{Handlers}
    """
    if isinstance(strategy, str):
        strategy = makeStrategy(strategy)
    stats = Stats()
    available = ResourceSet(resources)
    policy = Policy(clock, allow, deny, rate, burst, maxStanzaSize, domainRate, domainBurst)
    selector = Selector(available, strategy, clock, matchFeatures, Affinity(affinity), refusalTTL)
    # The state: a process's own, or shared with the other processes
    # serving the component; chosen here alone.
    if redis is None:
        cluster = None
        facts, requests = LocalFacts(), LocalRequests
        # One source of ids for every request the component starts: one
        # random prefix a connection.
        ids = StanzaIDs()
    else:
        shared = store if isinstance(store, RedisStore) else None
        cluster = Cluster(jid, target, redis, listen, available, stats, clock, shared, policy)
        facts = SharedFacts(cluster)

        def requests(table):
            return SharedRequests(cluster, table)

        # Their prefix is the process's id: a reply that reaches another
        # process is passed on to this one.
        ids = cluster.ids
        probeInstances = False
    handlers = Handlers(
        stats,
        policy,
        available,
        store,
        cluster,
        keepalive=KeepAlive(jid, stats, clock, keepalive, ids),
        instances=InstanceProbe(jid, stats, clock, probeInstances),
        presence=TargetPresence(jid, target, available, stats, clock, facts),
        capabilities=CapabilityLearner(
            jid, available, stats, clock, enabled=matchFeatures != OFF, ids=ids
        ),
        dispatcher=IQDispatcher(
            jid,
            target,
            available,
            selector,
            stats,
            policy,
            clock,
            timeout,
            maxPending,
            maxPendingPerRequester,
            maxPendingFromTarget,
            ids,
            requests,
            maxPendingBytes,
            facts,
            hold,
            idempotent,
        ),
        messages=MessageRouter(
            jid, target, available, store, stats, clock, policy, queuePerSender, queueSize
        ),
        servicePresence=ServicePresence(
            jid,
            target,
            available,
            store,
            stats,
            policy,
            maxSubscribers,
            maxSubscribersPerDomain,
        ),
    )
    # What the other processes learn reaches this one's handlers through
    # these observers, registered here and nowhere else.
    facts.observe(handlers.presence.apply)
    facts.observe(selector.apply)
    if cluster is not None:
        handlers.dispatcher.requests.whenAdopted(handlers.dispatcher.adopted)
        # Resources that came while the channels were down are learnt again.
        cluster.whenResyncing(handlers.presence.probe)
    return handlers


def makeProxy(
    jid,
    target,
    secret,
    host="127.0.0.1",
    port=5347,
    dataDir=None,
    grace=5.0,
    reactor=None,
    tls=None,
    redis=None,
    lease=False,
    **options,
):
    """
    Build the service of one proxy from component C{jid} to C{target}.

    @param jid: the component's JID (a string, already normalised).
    @param target: the target's bare JID (a string, already normalised).
    @param redis: a L{clientproxy.state.redis.address.RedisAddress}, or
        its URL (C{redis://host:port/db} and the other forms L{checkURL}
        reads): the requests in flight,
        the target's resources, the queue and the subscribers are shared
        there with the other processes serving the component
        (L{clientproxy.state.redis.cluster}, L{clientproxy.state.redis.store}); C{dataDir} is
        not used.
    @param dataDir: the directory of the store (queued messages, service
        subscribers); C{None} keeps them in memory only (tests).
    @param grace: seconds requests in flight get when the service stops.
    @param lease: with C{redis}: connect only while this process holds the
        component's lease in Redis (L{clientproxy.state.redis.lease}), so
        one process at a time is connected, and a standby takes over when
        the holder stops renewing it (hung, or gone).
    @param tls: L{clientproxy.xmpp.connection.TLSSettings} for direct TLS to the
        server, or C{None} for plain TCP.
    @param reactor: an L{IReactorTCP} and L{IReactorTime}; the global
        reactor by default.
    @param options: passed on to L{makeHandlers}.
    @return: the L{ProxyComponent}, an L{IService}. Its handlers are
        reachable as C{parts} (the L{Handlers}), and as C{dispatcher},
        C{store} and C{stats}.
    """
    if reactor is None:
        from twisted.internet import reactor
    if lease and redis is None:
        raise ValueError("a lease is kept in Redis: it needs redis")
    if redis is not None:
        address = checkURL(redis) if isinstance(redis, str) else redis
        redis = connectRedis(address, reactor)
        store = RedisStore(redis, jid)
        options.update(redis=redis, listen=lambda onMessage: Listener(address, onMessage, reactor))
    else:
        store = Store(":memory:" if dataDir is None else storePath(dataDir, jid))
    handlers = makeHandlers(jid, target, reactor, store, **options)
    standby = Lease(redis, jid, reactor) if lease else lockFor(store, reactor)
    return ProxyComponent(host, port, jid, secret, handlers, reactor, grace, tls, standby=standby)
