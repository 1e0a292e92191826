# -*- test-case-name: tests.test_metrics -*-
"""
Health and metrics over HTTP (twisted.web), the metrics written by
prometheus_client in Prometheus' text format: off by default, bound to
127.0.0.1 by default (C{--metrics-port}, C{--metrics-interface}).

    GET /metrics   counters, gauges and the request latency histogram
    GET /livez     200 while the process serves its reactor
    GET /readyz    200 when every proxy is connected, its handshake done,
                   the target's subscription approved and at least one
                   resource usable; else 503, with a JSON body naming each
                   unmet condition per proxy, and how many requests wait
                   in line for a resource (--hold)
    GET /health    as documented before /readyz: 200 "ok" while connected
                   with a usable resource, else 503 and the reason (kept
                   for existing health checks)

Every series of the proxies carries a C{component} label, so several
proxies in one process (a configuration file, or tac/two-proxies.tac) share
one endpoint; C{process_*} are the process's, and
C{clientproxy_build_info{version}} says which clientproxy runs. One counter
per kind of event (L{COUNTERS}), every known series at zero from the first
scrape, so an alert on a rate sees the first event; docs/operations.md
lists them (L{readmeTable}, checked by a test).
"""

import json
from itertools import product

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.application import internet
from twisted.web import resource, server

from clientproxy import __version__
from clientproxy.handlers.targetpresence import APPROVED, SUBSCRIPTION_STATES
from clientproxy.ops.stats import DROP_REASONS, LATENCY_BUCKETS, LINK_STATES
from clientproxy.routing.errors import TABLE
from clientproxy.xmpp.connection import FAILURES


#: The most features of one resource exported as series of
#: C{clientproxy_resource_features}: a resource advertising thousands (a
#: buggy or hostile client) must not make thousands of series.
#: C{clientproxy_resource_features_advertised} says how many it has.
MAX_FEATURES_PER_RESOURCE = 50

#: The error conditions the component answers with itself (every one at
#: zero from the start; one not in the table is exported when it occurs).
CONDITIONS = tuple(sorted({answer.condition for _, answer in TABLE}))

#: Where the counters of L{Stats} go: C{(attribute, key, family, labels)},
#: C{labels} the family's own labels' values for that key.
REQUESTS = {
    "forwarded": ("clientproxy_requests_forwarded_total", ("peer",)),
    "forwarded-from-target": ("clientproxy_requests_forwarded_total", ("target",)),
    "refused": ("clientproxy_requests_resent_total", ("refusal",)),
    "retried": ("clientproxy_requests_resent_total", ("resource-left",)),
    "answered": ("clientproxy_requests_replied_total", ("peer",)),
    "answered-to-target": ("clientproxy_requests_replied_total", ("target",)),
    "held": ("clientproxy_requests_held_total", ("no-resource",)),
    "held-again": ("clientproxy_requests_held_total", ("resource-left",)),
    "sent-from-line": ("clientproxy_requests_sent_from_line_total", ()),
    "held-unserved": ("clientproxy_requests_hold_expired_total", ()),
}
MESSAGES = {
    "fanned-out": ("clientproxy_messages_fanned_out_total", ()),
    "queued": ("clientproxy_messages_queued_total", ()),
    "delivered-from-queue": ("clientproxy_messages_delivered_from_queue_total", ()),
    "routed": ("clientproxy_messages_routed_total", ()),
    "mirrored": ("clientproxy_messages_mirrored_total", ()),
    "bounces-to-target": ("clientproxy_messages_bounced_total", ()),
}
PRESENCE = {
    "subscribed": ("clientproxy_presence_subscriptions_total", ("accepted",)),
    "subscriptions-refused": ("clientproxy_presence_subscriptions_total", ("refused",)),
    "unsubscribed": ("clientproxy_presence_unsubscriptions_total", ()),
    "broadcasts": ("clientproxy_presence_broadcasts_total", ()),
    "probes-answered": ("clientproxy_presence_probes_total", ("answered",)),
    "probes-refused": ("clientproxy_presence_probes_total", ("refused",)),
}
KEEPALIVE = {
    "pings": ("clientproxy_keepalive_pings_total", ()),
    "dead-links": ("clientproxy_dead_links_total", ()),
}
CAPABILITIES = {
    "queries": ("clientproxy_capability_queries_total", ()),
    "verified": ("clientproxy_capability_answers_total", ("verified",)),
    "unverified": ("clientproxy_capability_answers_total", ("unverified",)),
    "timeouts": ("clientproxy_capability_query_timeouts_total", ()),
}
CLUSTER = {
    "recorded": ("clientproxy_shared_entries_recorded_total", ()),
    "takes": ("clientproxy_shared_entries_taken_total", ()),
    "adopted": ("clientproxy_shared_requests_adopted_total", ()),
    "passed-on": ("clientproxy_shared_replies_passed_on_total", ()),
    "answered-elsewhere": ("clientproxy_shared_answered_elsewhere_total", ()),
    "retried": ("clientproxy_shared_scripts_retried_total", ()),
    "superseded": ("clientproxy_shared_superseded_total", ()),
    "left": ("clientproxy_shared_left_to_others_total", ()),
    "redis-restarts": ("clientproxy_redis_data_lost_total", ()),
    "takes-refused": ("clientproxy_shared_takes_refused_total", ()),
    "redis-errors": ("clientproxy_redis_errors_total", ()),
}
RESOURCES = {
    "requests": "clientproxy_resource_requests_total",
    "refusals": "clientproxy_resource_refusals_total",
    "errors": "clientproxy_resource_errors_total",
    "timeouts": "clientproxy_resource_timeouts_total",
}

#: Every counter family of a proxy: its help and its labels beyond
#: C{component}, with the values each label takes (every combination is
#: exported from the start).
COUNTERS = {
    "clientproxy_requests_forwarded_total": (
        "IQ requests sent to a resource the first time, by who started them: a peer (to the "
        "target) or the target (to a peer).",
        {"origin": ("peer", "target")},
    ),
    "clientproxy_requests_resent_total": (
        "Requests sent again to another resource, by why: the resource refused it, or left "
        "with it in flight.",
        {"reason": ("refusal", "resource-left")},
    ),
    "clientproxy_requests_replied_total": (
        "Requests answered with the reply of the entity asked (a result or its error), by origin.",
        {"origin": ("peer", "target")},
    ),
    "clientproxy_requests_held_total": (
        "Requests that joined the line to wait for a resource (--hold), by why: none could "
        "serve them when they came, or their resource left with them.",
        {"reason": ("no-resource", "resource-left")},
    ),
    "clientproxy_requests_sent_from_line_total": (
        "Requests sent from the line to a resource that came (--hold).",
        {},
    ),
    "clientproxy_requests_hold_expired_total": (
        "Requests whose hold passed with no resource to serve them (answered with an error).",
        {},
    ),
    "clientproxy_request_errors_total": (
        "Requests the component answered itself with an error, by origin and condition; with "
        "clientproxy_requests_replied_total, every request answered.",
        {"origin": ("peer", "target"), "condition": CONDITIONS},
    ),
    "clientproxy_messages_fanned_out_total": (
        "Messages to the service sent to every resource of the target.",
        {},
    ),
    "clientproxy_messages_queued_total": ("Messages queued while the target was offline.", {}),
    "clientproxy_messages_delivered_from_queue_total": (
        "Queued messages delivered once the target came online.",
        {},
    ),
    "clientproxy_messages_routed_total": ("Messages of the target routed to a peer.", {}),
    "clientproxy_messages_mirrored_total": (
        "Copies of the target's messages sent to its other resources.",
        {},
    ),
    "clientproxy_messages_bounced_total": ("Peers' error replies passed to the target.", {}),
    "clientproxy_message_errors_total": (
        "Messages the component refused with an error, by condition.",
        {"condition": CONDITIONS},
    ),
    "clientproxy_presence_subscriptions_total": (
        "Subscription requests to the service's presence, by result.",
        {"result": ("accepted", "refused")},
    ),
    "clientproxy_presence_unsubscriptions_total": (
        "Subscribers who unsubscribed from the service's presence.",
        {},
    ),
    "clientproxy_presence_broadcasts_total": (
        "Changes of the service's presence sent to its subscribers.",
        {},
    ),
    "clientproxy_presence_probes_total": (
        "Presence probes of the service, by result.",
        {"result": ("answered", "refused")},
    ),
    "clientproxy_dropped_total": (
        "Stanzas dropped, by reason (each also logged, rate-limited).",
        {"reason": DROP_REASONS},
    ),
    "clientproxy_keepalive_pings_total": ("Pings sent after a silence of the server.", {}),
    "clientproxy_dead_links_total": (
        "Links to the server dropped as dead (no answer to a keepalive).",
        {},
    ),
    "clientproxy_capability_queries_total": (
        "disco#info queries sent to learn resources' features.",
        {},
    ),
    "clientproxy_capability_answers_total": (
        "disco#info answers, by whether they matched the resource's caps hash.",
        {"verification": ("verified", "unverified")},
    ),
    "clientproxy_capability_query_timeouts_total": ("disco#info queries not answered.", {}),
    "clientproxy_shared_entries_recorded_total": (
        "With --redis: requests in flight written to the shared pending table.",
        {},
    ),
    "clientproxy_shared_entries_taken_total": (
        "With --redis: entries taken from the shared pending table to answer them.",
        {},
    ),
    "clientproxy_shared_requests_adopted_total": (
        "With --redis: requests in flight taken over from processes gone.",
        {},
    ),
    "clientproxy_shared_replies_passed_on_total": (
        "With --redis: replies passed on to the process that asked.",
        {},
    ),
    "clientproxy_shared_answered_elsewhere_total": (
        "With --redis: requests another process answered.",
        {},
    ),
    "clientproxy_shared_scripts_retried_total": (
        "With --redis: scripts run again after their reply was lost.",
        {},
    ),
    "clientproxy_shared_superseded_total": (
        "With --redis: times this process was counted gone and went on with a new id.",
        {},
    ),
    "clientproxy_shared_left_to_others_total": (
        "With --redis: requests a stopping process left in Redis unanswered (Redis did not "
        "answer its takes), for another process to adopt.",
        {},
    ),
    "clientproxy_redis_data_lost_total": (
        "With --redis: times this process found Redis had lost its data (restarted empty) and "
        "wrote its requests in flight again.",
        {},
    ),
    "clientproxy_shared_takes_refused_total": (
        "With --redis: replies not looked for in Redis, as more were waiting on it than this "
        "process could hold requests (Redis away while replies keep coming); dropped as "
        "replies to nothing.",
        {},
    ),
    "clientproxy_redis_errors_total": ("With --redis: Redis commands that failed.", {}),
    "clientproxy_server_connection_attempts_total": (
        "Attempts to connect to the server.",
        {},
    ),
    "clientproxy_server_connection_failures_total": (
        "Attempts to connect to the server that failed, by why (conflict: another process "
        "holds the component, this one stands by).",
        {"reason": tuple(FAILURES)},
    ),
    "clientproxy_reconnects_total": ("Connections to the server made again.", {}),
    "clientproxy_other_instances_total": (
        "Other clientproxy processes seen connected as the same component (the server "
        "spreads its stanzas over them: replies get lost).",
        {},
    ),
}

#: Counters per resource of the target, with C{component} and C{resource}.
RESOURCE_COUNTERS = {
    "clientproxy_resource_requests_total": "Requests sent to a resource of the target.",
    "clientproxy_resource_refusals_total": "Requests a resource refused (and was learnt from).",
    "clientproxy_resource_errors_total": "Requests a resource answered with another error.",
    "clientproxy_resource_timeouts_total": "Requests a resource did not answer in time.",
}


class ProxyCollector:
    """
    A prometheus_client collector that reads the proxies' own counters at
    scrape time: the stanza path keeps plain integers (the cheapest thing
    to bump per stanza), and nothing is copied until someone asks.

    Each counter counts one kind of event, and where it has a label beyond
    C{component}, its values add up to something that means what the name
    says; every series that can be known in advance is there from the
    first scrape, at zero.
    """

    def __init__(self, proxies):
        self.proxies = proxies

    def statuses(self):
        """
        Each proxy's L{clientproxy.xmpp.connection.Status}: all a scrape
        reads of it.
        """
        return [p.status() for p in self.proxies]

    def collect(self):
        yield InfoMetricFamily(
            "clientproxy_build", "clientproxy's version.", {"version": __version__}
        )
        for family in self.counters():
            yield family
        for family in self.perResource():
            yield family
        for family in self.gauges():
            yield family
        yield self.latency()

    def counters(self):
        """
        The counter families of L{COUNTERS}, every known series at zero.
        """
        values = {name: {} for name in COUNTERS}
        for p in self.statuses():
            stats = p.stats
            for name, (_, labels) in COUNTERS.items():
                for combination in product(*labels.values()):
                    values[name][(p.jid,) + combination] = 0
            mine = values

            def add(name, labels, count, jid=p.jid):
                key = (jid,) + tuple(labels)
                mine[name][key] = mine[name].get(key, 0) + count

            for key, count in stats.requests.items():
                if key.startswith("error:"):
                    add("clientproxy_request_errors_total", ("peer", key[6:]), count)
                elif key.startswith("error-to-target:"):
                    add("clientproxy_request_errors_total", ("target", key[16:]), count)
                elif key in REQUESTS:
                    add(*REQUESTS[key], count)
            for key, count in stats.messages.items():
                if key.startswith("error:"):
                    add("clientproxy_message_errors_total", (key[6:],), count)
                elif key in MESSAGES:
                    add(*MESSAGES[key], count)
            for table, counter in (
                (PRESENCE, stats.presence),
                (KEEPALIVE, stats.keepalive),
                (CAPABILITIES, stats.capabilities),
                (CLUSTER, stats.cluster),
            ):
                for key, count in counter.items():
                    if key in table:
                        add(*table[key], count)
            for reason, count in stats.dropped.items():
                add("clientproxy_dropped_total", (reason,), count)
            add("clientproxy_server_connection_attempts_total", (), stats.connectionAttempts)
            for reason, count in stats.connectionFailures.items():
                add("clientproxy_server_connection_failures_total", (reason,), count)
            add("clientproxy_reconnects_total", (), stats.reconnects)
            add("clientproxy_other_instances_total", (), stats.otherInstances)
        for name, (help, labels) in COUNTERS.items():
            family = CounterMetricFamily(name, help, labels=["component"] + list(labels))
            for key, count in sorted(values[name].items()):
                family.add_metric(list(key), count)
            yield family

    def perResource(self):
        """
        The counters and features of each resource of the target: those
        known to the counters, and every available one (at zero).
        """
        counters = {
            name: CounterMetricFamily(name, help, labels=["component", "resource"])
            for name, help in RESOURCE_COUNTERS.items()
        }
        features = GaugeMetricFamily(
            "clientproxy_resource_features",
            "1 for each feature an available resource advertises (caps, disco#info); the "
            "first %d of each resource, by name." % (MAX_FEATURES_PER_RESOURCE,),
            labels=["component", "resource", "feature"],
        )
        advertised = GaugeMetricFamily(
            "clientproxy_resource_features_advertised",
            "Features an available resource advertises, all of them.",
            labels=["component", "resource"],
        )
        for p in self.statuses():
            available = sorted(p.resources, key=lambda r: r.jid)
            jids = sorted(set(p.stats.resources) | {r.jid for r in available})
            for jid in jids:
                counts = p.stats.resources.get(jid, {})
                for key, name in RESOURCES.items():
                    counters[name].add_metric([p.jid, jid], counts.get(key, 0))
            for r in available:
                known = sorted(r.features or ())
                advertised.add_metric([p.jid, r.jid], len(known))
                for feature in known[:MAX_FEATURES_PER_RESOURCE]:
                    features.add_metric([p.jid, r.jid, feature], 1)
        return list(counters.values()) + [features, advertised]

    def gauges(self):
        proxies = self.statuses()

        def gauge(name, help, read):
            family = GaugeMetricFamily(name, help, labels=["component"])
            for p in proxies:
                family.add_metric([p.jid], read(p))
            return family

        yield gauge(
            "clientproxy_pending_requests",
            "Requests in flight (those waiting in line included).",
            lambda p: p.pending,
        )
        yield gauge(
            "clientproxy_held_requests",
            "Requests waiting in line for a resource (--hold).",
            lambda p: p.held,
        )
        yield gauge(
            "clientproxy_resources_available",
            "Usable resources of the target.",
            lambda p: len(p.resources),
        )
        yield gauge(
            "clientproxy_queued_messages",
            "Messages queued for an offline target.",
            lambda p: p.queued,
        )
        yield gauge(
            "clientproxy_subscribers",
            "Entities subscribed to the service's presence.",
            lambda p: p.subscribers,
        )
        yield gauge(
            "clientproxy_connected",
            "1 while connected to the server, the handshake done.",
            lambda p: int(p.connected and p.authenticated),
        )
        link = GaugeMetricFamily(
            "clientproxy_server_link_state",
            "1 for the state of the link to the server: down (waiting to try again), "
            "connecting, handshake, up, standby (another process holds the component, the "
            "store or the lease).",
            labels=["component", "state"],
        )
        subscription = GaugeMetricFamily(
            "clientproxy_target_subscription",
            "1 for the state of the component's presence subscription to the target "
            "(none, pending: not approved, approved, revoked).",
            labels=["component", "state"],
        )
        for p in proxies:
            for state in LINK_STATES:
                link.add_metric([p.jid, state], int(p.stats.link == state))
            for state in SUBSCRIPTION_STATES:
                subscription.add_metric([p.jid, state], int(p.subscription == state))
        yield link
        yield subscription

    def latency(self):
        latency = HistogramMetricFamily(
            "clientproxy_request_duration_seconds",
            "Time from request to answer (replies and the component's errors).",
            labels=["component"],
        )
        for p in self.statuses():
            histogram = p.stats.latency
            buckets, cumulative = [], 0
            for bound, count in zip(LATENCY_BUCKETS, histogram.counts):
                cumulative += count
                buckets.append((str(bound), cumulative))
            buckets.append(("+Inf", histogram.total))
            latency.add_metric([p.jid], buckets, histogram.sum)
        return latency


def registry(proxies):
    """
    A registry of C{proxies}' metrics, the process's own (C{process_*}) and
    the platform's.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(proxies))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def render(proxies):
    """
    The Prometheus text for C{proxies} (L{ProxyComponent}s).
    """
    return generate_latest(registry(proxies)).decode("utf-8")


def health(proxies):
    """
    C{(healthy, reason)} for C{proxies}.
    """
    for p in proxies:
        p = p.status()
        if not p.connected or not p.authenticated:
            return False, "%s: not connected to the server" % (p.jid,)
        if not p.resources:
            return False, "%s: no resource of the target is available" % (p.jid,)
    return True, "ok"


def readiness(proxies):
    """
    C{(ready, report)}: whether every proxy can serve requests, and for each
    the conditions not met and the requests waiting in line for a resource
    (C{held}: with C{--hold}, a proxy with no usable resource is not ready,
    and its requests wait there), as a JSON-able dict.
    """
    report = {}
    for p in proxies:
        p = p.status()
        unmet = []
        if p.standingBy:
            unmet.append("%s held (another process holds it: standing by)" % (p.standbyWhat,))
        if not p.connected:
            unmet.append("connected to the server")
        if not p.authenticated:
            unmet.append("handshake with the server done")
        if p.subscription != APPROVED:
            unmet.append(
                "presence subscription to %s approved (it is %s)" % (p.target, p.subscription)
            )
        if not p.resources:
            unmet.append("at least one usable resource of %s" % (p.target,))
        if p.sharedProblem is not None:
            unmet.append("Redis accepting this process (%s)" % (p.sharedProblem,))
        if p.sharedReachable is False:
            unmet.append("Redis answering (new requests are refused until it does)")
        elif p.sharedReachable and not p.sharedSynced:
            unmet.append(
                "Redis channels subscribed, and what was published while they were not read back"
            )
        report[p.jid] = {"ready": not unmet, "unmet": unmet, "held": p.held}
    ready = all(r["ready"] for r in report.values())
    return ready, {"ready": ready, "proxies": report}


class MetricsResource(resource.Resource):
    isLeaf = True

    def __init__(self, proxies):
        resource.Resource.__init__(self)
        self.proxies = list(proxies)
        self.registry = registry(self.proxies)

    def render_GET(self, request):
        if request.path == b"/metrics":
            request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
            return generate_latest(self.registry)
        if request.path == b"/livez":
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"ok\n"
        if request.path == b"/readyz":
            ready, report = readiness(self.proxies)
            request.setResponseCode(200 if ready else 503)
            request.setHeader(b"content-type", b"application/json")
            return (json.dumps(report, indent=1) + "\n").encode("utf-8")
        if request.path == b"/health":
            healthy, reason = health(self.proxies)
            request.setResponseCode(200 if healthy else 503)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return (reason + "\n").encode("utf-8")
        request.setResponseCode(404)
        return b"not found: try /metrics, /livez, /readyz or /health\n"


def metricsService(proxies, port, interface="127.0.0.1"):
    """
    A TCP service for the metrics endpoint of C{proxies}.
    """
    site = server.Site(MetricsResource(proxies))
    site.noisy = False
    return internet.TCPServer(port, site, interface=interface)


def readmeTable():
    """
    The metrics of docs/operations.md, as Markdown lines: one row per
    family of clientproxy's own (not C{process_*}), with its type, labels
    beyond C{component}, and help; read from the exposition of a proxy, so
    it is the one a scrape shows.
    """
    from prometheus_client.parser import text_string_to_metric_families
    from twisted.internet.testing import MemoryReactorClock

    from clientproxy.assembly import makeProxy

    proxy = makeProxy("proxy.example.org", "svc@example.org", "s", reactor=MemoryReactorClock())
    try:
        text = render([proxy])
    finally:
        proxy.store.close()
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("clientproxy_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = []
        for sample in family.samples:
            for label in sample.labels:
                if label not in labels and label not in ("component", "le"):
                    labels.append(label)
        if family.name == "clientproxy_resource_features":
            labels = ["resource", "feature"]
        elif family.name.startswith("clientproxy_resource_"):
            labels = ["resource"]
        lines.append(
            "| `%s` | %s | %s | %s |"
            % (
                name,
                family.type,
                ", ".join("`%s`" % (label,) for label in labels),
                family.documentation,
            )
        )
    return lines
