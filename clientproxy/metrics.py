# -*- test-case-name: tests.test_metrics -*-
"""
Health and metrics over HTTP, in Prometheus' text format: off by default,
bound to 127.0.0.1 by default (C{--metrics-port}, C{--metrics-interface}).

    GET /metrics   counters, gauges and the request latency histogram
    GET /livez     200 while the process serves its reactor
    GET /readyz    200 when every proxy is connected, its handshake done,
                   the target's subscription approved and at least one
                   resource usable; else 503, with a JSON body naming each
                   unmet condition per proxy
    GET /health    as documented before /readyz: 200 "ok" while connected
                   with a usable resource, else 503 and the reason (kept
                   for existing health checks)

Every series carries a C{component} label, so several proxies in one
process (see tac/two-proxies.tac) can share one endpoint.
"""

import json

from twisted.application import internet
from twisted.web import resource, server

from clientproxy.presence import APPROVED, SUBSCRIPTION_STATES
from clientproxy.stats import LATENCY_BUCKETS


def _escape(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _series(name, labels, value):
    text = ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels.items())
    return "%s{%s} %s" % (name, text, value)


def render(proxies):
    """
    The Prometheus text for C{proxies} (L{ProxyComponent}s).
    """
    lines = []

    def family(name, kind, help, samples):
        lines.append("# HELP %s %s" % (name, help))
        lines.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples:
            lines.append(_series(name, labels, value))

    def per(proxy, counter, key):
        return [({"component": proxy.jid, key: k}, v) for k, v in sorted(counter.items())]

    family(
        "clientproxy_requests_total",
        "counter",
        "IQ requests by outcome (error:CONDITION for the component's own answers).",
        [s for p in proxies for s in per(p, p.stats.requests, "outcome")],
    )
    family(
        "clientproxy_messages_total",
        "counter",
        "Messages by outcome.",
        [s for p in proxies for s in per(p, p.stats.messages, "outcome")],
    )
    family(
        "clientproxy_dropped_total",
        "counter",
        "Stanzas dropped, by reason.",
        [s for p in proxies for s in per(p, p.stats.dropped, "reason")],
    )
    family(
        "clientproxy_pending_requests",
        "gauge",
        "Requests in flight.",
        [({"component": p.jid}, len(p.dispatcher.pending)) for p in proxies],
    )
    family(
        "clientproxy_resources_available",
        "gauge",
        "Usable resources of the target.",
        [({"component": p.jid}, len(p.dispatcher.resources)) for p in proxies],
    )
    family(
        "clientproxy_queued_messages",
        "gauge",
        "Messages queued for an offline target.",
        [({"component": p.jid}, p.store.queueLength()) for p in proxies],
    )
    family(
        "clientproxy_connected",
        "gauge",
        "1 while connected to the server.",
        [
            ({"component": p.jid}, int(p.xmlstream is not None and p._authenticated))
            for p in proxies
        ],
    )
    family(
        "clientproxy_resource_requests_total",
        "counter",
        "Requests per resource of the target: requests sent to it, refusals, "
        "other errors, timeouts.",
        [
            ({"component": p.jid, "resource": jid, "outcome": outcome}, count)
            for p in proxies
            for jid, counts in sorted(p.stats.resources.items())
            for outcome, count in sorted(counts.items())
        ],
    )
    family(
        "clientproxy_resource_features",
        "gauge",
        "1 for each feature an available resource advertises (caps, disco#info).",
        [
            ({"component": p.jid, "resource": r.jid, "feature": feature}, 1)
            for p in proxies
            for r in sorted(p.dispatcher.resources.available, key=lambda r: r.jid)
            for feature in sorted(r.features or ())
        ],
    )
    family(
        "clientproxy_capability_queries_total",
        "counter",
        "disco#info queries to learn resources' features, and their outcomes.",
        [s for p in proxies for s in per(p, p.stats.capabilities, "event")],
    )
    family(
        "clientproxy_target_subscription",
        "gauge",
        "1 for the state of the component's presence subscription to the target "
        "(none, pending: not approved, approved, revoked).",
        [
            ({"component": p.jid, "state": state}, int(p.parts.presence.subscription == state))
            for p in proxies
            for state in SUBSCRIPTION_STATES
        ],
    )
    family(
        "clientproxy_subscribers",
        "gauge",
        "Entities subscribed to the service's presence.",
        [({"component": p.jid}, p.store.subscriberCount()) for p in proxies],
    )
    family(
        "clientproxy_keepalive_total",
        "counter",
        "Pings after a silence of the server, and links dropped as dead.",
        [s for p in proxies for s in per(p, p.stats.keepalive, "event")],
    )
    family(
        "clientproxy_reconnects_total",
        "counter",
        "Connections made again.",
        [({"component": p.jid}, p.stats.reconnects) for p in proxies],
    )
    name = "clientproxy_request_duration_seconds"
    lines.append(
        "# HELP %s Time from request to answer (replies and the component's errors)." % name
    )
    lines.append("# TYPE %s histogram" % name)
    for p in proxies:
        histogram = p.stats.latency
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, histogram.counts):
            cumulative += count
            lines.append(_series(name + "_bucket", {"component": p.jid, "le": bound}, cumulative))
        lines.append(_series(name + "_bucket", {"component": p.jid, "le": "+Inf"}, histogram.total))
        lines.append(_series(name + "_sum", {"component": p.jid}, repr(histogram.sum)))
        lines.append(_series(name + "_count", {"component": p.jid}, histogram.total))
    return "\n".join(lines) + "\n"


def health(proxies):
    """
    C{(healthy, reason)} for C{proxies}.
    """
    for p in proxies:
        if p.xmlstream is None or not p._authenticated:
            return False, "%s: not connected to the server" % (p.jid,)
        if not len(p.dispatcher.resources):
            return False, "%s: no resource of the target is available" % (p.jid,)
    return True, "ok"


def readiness(proxies):
    """
    C{(ready, report)}: whether every proxy can serve requests, and for each
    the conditions not met, as a JSON-able dict.
    """
    report = {}
    for p in proxies:
        unmet = []
        if p.xmlstream is None:
            unmet.append("connected to the server")
        if not p._authenticated:
            unmet.append("handshake with the server done")
        subscription = p.parts.presence.subscription
        if subscription != APPROVED:
            unmet.append(
                "presence subscription to %s approved (it is %s)"
                % (p.parts.presence.target, subscription)
            )
        if not len(p.dispatcher.resources):
            unmet.append("at least one usable resource of %s" % (p.parts.presence.target,))
        report[p.jid] = {"ready": not unmet, "unmet": unmet}
    ready = all(r["ready"] for r in report.values())
    return ready, {"ready": ready, "proxies": report}


class MetricsResource(resource.Resource):
    isLeaf = True

    def __init__(self, proxies):
        resource.Resource.__init__(self)
        self.proxies = list(proxies)

    def render_GET(self, request):
        if request.path == b"/metrics":
            request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
            return render(self.proxies).encode("utf-8")
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
