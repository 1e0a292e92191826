"""
Counters of what the component did with the stanzas it saw.

Every stanza that is dropped is counted by reason (and logged), so an
operator can tell a quiet service from one that throws traffic away.
"""

import time
from bisect import bisect_left
from collections import Counter, defaultdict

from twisted.logger import Logger

from clientproxy.ops.throttle import Throttle, quoted
from clientproxy.routing.errors import DROPS


#: The states of the link to the server: not connected (waiting to try
#: again), a TCP connection being made, connected and doing the handshake,
#: up (the handshake done), standing by (another process holds the
#: component, the store's lock, or the lease).
DOWN, CONNECTING, HANDSHAKE, UP, STANDBY = "down", "connecting", "handshake", "up", "standby"
LINK_STATES = (DOWN, CONNECTING, HANDSHAKE, UP, STANDBY)

#: Every reason a stanza is dropped for (L{Stats.drop}), so the metrics
#: show each at zero from the start (tests/test_metrics.py checks that the
#: handlers drop for no other): those a refusal is counted under are the
#: error table's (L{clientproxy.routing.errors.DROPS}).
DROP_REASONS = tuple(
    sorted(
        {reason for drops in DROPS.values() for reason in drops.values()}
        | {
            "answer-to-gone-resource",
            "bad-type",
            "error-from-peer-undeliverable",
            "error-from-target",
            "message-from-target-to-component",
            "no-address",
            "presence-from-bare-target",
            "presence-from-outsider",
            "presence-from-target",
            "probe-from-outsider",
            "reply-from-outsider",
            "reply-from-wrong-resource",
            "request-without-id",
            "stanza-too-large",
            "stanza-too-many-elements",
            "subscribers-over-limit",
            "unknown-reply",
        }
    )
)

#: Upper bounds (seconds) of the request latency histogram's buckets.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Histogram:
    """
    Counts of observations by upper bound, as Prometheus histograms keep
    them (the last count is for values above every bound).
    """

    def __init__(self, bounds):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.total = 0

    def observe(self, value):
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.total += 1


class Stats:
    """
    @ivar requests: requests by outcome: C{forwarded}, C{answered},
        C{retried}, and C{error:CONDITION} for each error the component
        answered with itself.
    @ivar messages: messages by outcome: C{fanned-out}, C{queued},
        C{delivered-from-queue}, C{routed}, C{mirrored},
        C{bounces-to-target}, and C{error:CONDITION}.
    @ivar presence: the service's presence: C{subscribed},
        C{unsubscribed}, C{broadcasts}, C{probes-answered}.
    @ivar keepalive: the link to the server: C{pings} sent after a
        silence, C{dead-links} dropped for want of an answer.
    @ivar capabilities: disco#info C{queries} sent to learn resources'
        features, answers C{verified} against caps or C{unverified},
        C{timeouts}.
    @ivar resources: per resource of the target (full JID), requests by
        outcome: C{requests} sent to it, C{refusals}, C{errors} (other
        error replies), C{timeouts}.
    @ivar dropped: stanzas dropped, by reason.
    @ivar reconnects: times the connection to the server was made again.
    @ivar otherInstances: other clientproxy processes seen connected as the
        same component (L{clientproxy.handlers.instances}).
    @ivar latency: a L{Histogram} of seconds from request to answer.
    @ivar link: the state of the link to the server, one of L{LINK_STATES}.
    @ivar connectionAttempts: attempts to connect to the server.
    @ivar connectionFailures: attempts that failed, by why (the keys of
        L{clientproxy.xmpp.connection.FAILURES}).
    """

    def __init__(self, now=time.monotonic):
        self.throttle = Throttle(now)
        self.requests = Counter()
        self.messages = Counter()
        self.presence = Counter()
        self.keepalive = Counter()
        self.capabilities = Counter()
        self.cluster = Counter()
        self.resources = defaultdict(Counter)
        self.dropped = Counter()
        self.reconnects = 0
        self.otherInstances = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.link = DOWN
        self.connectionAttempts = 0
        self.connectionFailures = Counter()

    log = Logger()

    def drop(self, stanza, reason):
        """
        Count and log a stanza that is dropped for C{reason}. The log line
        names the stanza, never its content, and there is at most one line
        per reason every L{clientproxy.ops.throttle.INTERVAL} seconds (with the
        count of those not logged since), so a flood cannot flood the log.
        """
        self.dropped[reason] += 1
        unlogged = self.throttle("drop:" + reason)
        if unlogged is None:
            return
        self.log.info(
            "Dropped {kind} type={type} from {sender}: {reason} "
            "({unlogged} more since the last such line)",
            kind=quoted(stanza.name),
            type=quoted(stanza.getAttribute("type")),
            sender=quoted(stanza.getAttribute("from")),
            reason=reason,
            unlogged=unlogged,
        )
