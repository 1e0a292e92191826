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
C{clientproxy_build_info{version}} says which clientproxy runs.
"""

import json

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
from clientproxy.ops.stats import LATENCY_BUCKETS


class ProxyCollector:
    """
    A prometheus_client collector that reads the proxies' own counters at
    scrape time: the stanza path keeps plain integers (the cheapest thing
    to bump per stanza), and nothing is copied until someone asks.
    """

    def __init__(self, proxies):
        self.proxies = proxies

    def collect(self):
        proxies = self.proxies

        def counter(name, help, labelName, read):
            family = CounterMetricFamily(name, help, labels=["component", labelName])
            for p in proxies:
                for key, value in sorted(read(p).items()):
                    family.add_metric([p.jid, key], value)
            return family

        def gauge(name, help, read):
            family = GaugeMetricFamily(name, help, labels=["component"])
            for p in proxies:
                family.add_metric([p.jid], read(p))
            return family

        yield InfoMetricFamily(
            "clientproxy_build", "clientproxy's version.", {"version": __version__}
        )
        yield counter(
            "clientproxy_requests",
            "IQ requests by outcome (error:CONDITION for the component's own answers).",
            "outcome",
            lambda p: p.stats.requests,
        )
        yield counter(
            "clientproxy_messages", "Messages by outcome.", "outcome", lambda p: p.stats.messages
        )
        yield counter(
            "clientproxy_dropped",
            "Stanzas dropped, by reason.",
            "reason",
            lambda p: p.stats.dropped,
        )
        yield gauge(
            "clientproxy_pending_requests",
            "Requests in flight (those waiting in line included).",
            lambda p: len(p.dispatcher.pending),
        )
        yield gauge(
            "clientproxy_held_requests",
            "Requests waiting in line for a resource (--hold).",
            lambda p: p.dispatcher.pending.lineLength,
        )
        yield gauge(
            "clientproxy_resources_available",
            "Usable resources of the target.",
            lambda p: len(p.dispatcher.resources),
        )
        yield gauge(
            "clientproxy_queued_messages",
            "Messages queued for an offline target.",
            lambda p: p.store.queueLength(),
        )
        yield gauge(
            "clientproxy_connected",
            "1 while connected to the server.",
            lambda p: int(p.xmlstream is not None and p.authenticated),
        )
        requests = CounterMetricFamily(
            "clientproxy_resource_requests",
            "Requests per resource of the target: requests sent to it, refusals, "
            "other errors, timeouts.",
            labels=["component", "resource", "outcome"],
        )
        features = GaugeMetricFamily(
            "clientproxy_resource_features",
            "1 for each feature an available resource advertises (caps, disco#info).",
            labels=["component", "resource", "feature"],
        )
        subscription = GaugeMetricFamily(
            "clientproxy_target_subscription",
            "1 for the state of the component's presence subscription to the target "
            "(none, pending: not approved, approved, revoked).",
            labels=["component", "state"],
        )
        for p in proxies:
            for jid, counts in sorted(p.stats.resources.items()):
                for outcome, count in sorted(counts.items()):
                    requests.add_metric([p.jid, jid, outcome], count)
            for r in sorted(p.dispatcher.resources.available, key=lambda r: r.jid):
                for feature in sorted(r.features or ()):
                    features.add_metric([p.jid, r.jid, feature], 1)
            for state in SUBSCRIPTION_STATES:
                subscription.add_metric([p.jid, state], int(p.parts.presence.subscription == state))
        yield requests
        yield features
        yield counter(
            "clientproxy_capability_queries",
            "disco#info queries to learn resources' features, and their outcomes.",
            "event",
            lambda p: p.stats.capabilities,
        )
        yield counter(
            "clientproxy_shared_state",
            "With --redis: entries written to and taken from the shared pending table, replies "
            "passed on to the process that asked, requests taken over from processes gone, "
            "answers another process gave, Redis errors.",
            "event",
            lambda p: p.stats.cluster,
        )
        yield subscription
        yield gauge(
            "clientproxy_subscribers",
            "Entities subscribed to the service's presence.",
            lambda p: p.store.subscriberCount(),
        )
        yield counter(
            "clientproxy_keepalive",
            "Pings after a silence of the server, and links dropped as dead.",
            "event",
            lambda p: p.stats.keepalive,
        )
        reconnects = CounterMetricFamily(
            "clientproxy_reconnects", "Connections made again.", labels=["component"]
        )
        others = CounterMetricFamily(
            "clientproxy_other_instances",
            "Other clientproxy processes seen connected as the same component "
            "(the server spreads its stanzas over them: replies get lost).",
            labels=["component"],
        )
        latency = HistogramMetricFamily(
            "clientproxy_request_duration_seconds",
            "Time from request to answer (replies and the component's errors).",
            labels=["component"],
        )
        for p in proxies:
            reconnects.add_metric([p.jid], p.stats.reconnects)
            others.add_metric([p.jid], p.stats.otherInstances)
            histogram = p.stats.latency
            buckets, cumulative = [], 0
            for bound, count in zip(LATENCY_BUCKETS, histogram.counts):
                cumulative += count
                buckets.append((str(bound), cumulative))
            buckets.append(("+Inf", histogram.total))
            latency.add_metric([p.jid], buckets, histogram.sum)
        yield reconnects
        yield others
        yield latency


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
        if p.xmlstream is None or not p.authenticated:
            return False, "%s: not connected to the server" % (p.jid,)
        if not len(p.dispatcher.resources):
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
        unmet = []
        if p.standby is not None and not p.standby.held:
            unmet.append("the store's lock held (another process holds it: standing by)")
        if p.xmlstream is None:
            unmet.append("connected to the server")
        if not p.authenticated:
            unmet.append("handshake with the server done")
        subscription = p.parts.presence.subscription
        if subscription != APPROVED:
            unmet.append(
                "presence subscription to %s approved (it is %s)"
                % (p.parts.presence.target, subscription)
            )
        if not len(p.dispatcher.resources):
            unmet.append("at least one usable resource of %s" % (p.parts.presence.target,))
        if p.parts.cluster is not None and not p.parts.cluster.reachable:
            unmet.append("Redis answering (new requests are refused until it does)")
        report[p.jid] = {
            "ready": not unmet,
            "unmet": unmet,
            "held": p.dispatcher.pending.lineLength,
        }
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
