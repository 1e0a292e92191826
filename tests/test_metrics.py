"""
Tests for L{clientproxy.ops.metrics}: the Prometheus text, health, and the
endpoint over HTTP on loopback.
"""

from twisted.internet import defer, reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

import json

from prometheus_client.parser import text_string_to_metric_families

from clientproxy.ops.metrics import health, metricsService, readiness, render
from clientproxy.assembly import makeProxy


def proxy(jid="proxy.example.org"):
    p = makeProxy(jid, "svc@example.org", "s", reactor=MemoryReactorClock())
    p.authenticated = False
    return p


class RenderTests(unittest.TestCase):
    """
    The Prometheus exposition and the health and readiness reports, read from a
    proxy's own counters.
    """

    def assertSample(self, text, name, labels, value):
        """
        The exposition C{text} has sample C{name} with C{labels} = C{value}
        (read with prometheus_client's own parser).
        """
        found = [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and sample.labels == labels
        ]
        self.assertEqual(found, [value], (name, labels))

    def test_perResource(self):
        """
        Per-resource counters, and the features learnt per resource.
        """
        p = proxy()
        p.stats.resources["svc@example.org/a"]["requests"] = 4
        p.stats.resources["svc@example.org/a"]["refusals"] = 1
        resource = p.dispatcher.resources.update("svc@example.org/a", "a", 0)
        p.dispatcher.resources.learnt(resource, frozenset(["urn:x"]))
        text = render([p])
        self.assertSample(
            text,
            "clientproxy_resource_requests_total",
            {
                "component": "proxy.example.org",
                "resource": "svc@example.org/a",
                "outcome": "refusals",
            },
            1,
        )
        self.assertSample(
            text,
            "clientproxy_resource_features",
            {"component": "proxy.example.org", "resource": "svc@example.org/a", "feature": "urn:x"},
            1,
        )

    def test_countersGaugesHistogram(self):
        """
        The request and drop counters by outcome and reason, the pending and
        connected gauges, and the latency histogram (cumulative buckets, count)
        are exposed with the proxy's C{component} label.
        """
        p = proxy()
        p.stats.requests["answered"] = 3
        p.stats.requests["error:remote-server-timeout"] = 1
        p.stats.dropped["unknown-reply"] = 2
        p.stats.latency.observe(0.003)
        p.stats.latency.observe(7)
        text = render([p])
        self.assertSample(
            text,
            "clientproxy_requests_total",
            {"component": "proxy.example.org", "outcome": "answered"},
            3,
        )
        self.assertSample(
            text,
            "clientproxy_requests_total",
            {"component": "proxy.example.org", "outcome": "error:remote-server-timeout"},
            1,
        )
        self.assertSample(
            text,
            "clientproxy_dropped_total",
            {"component": "proxy.example.org", "reason": "unknown-reply"},
            2,
        )
        self.assertSample(
            text, "clientproxy_pending_requests", {"component": "proxy.example.org"}, 0
        )
        self.assertSample(text, "clientproxy_connected", {"component": "proxy.example.org"}, 0)
        self.assertSample(
            text,
            "clientproxy_request_duration_seconds_bucket",
            {"component": "proxy.example.org", "le": "0.0025"},
            0,
        )
        self.assertSample(
            text,
            "clientproxy_request_duration_seconds_bucket",
            {"component": "proxy.example.org", "le": "0.005"},
            1,
        )
        self.assertSample(
            text,
            "clientproxy_request_duration_seconds_bucket",
            {"component": "proxy.example.org", "le": "10"},
            2,
        )
        self.assertSample(
            text,
            "clientproxy_request_duration_seconds_count",
            {"component": "proxy.example.org"},
            2,
        )
        self.assertIn("# TYPE clientproxy_request_duration_seconds histogram", text)

    def test_health(self):
        """
        Health is unhealthy while not connected, then while no resource is
        available, and C{(True, "ok")} once one is; each failure says why.
        """
        p = proxy()
        self.assertEqual(health([p])[0], False)
        self.assertIn("not connected", health([p])[1])
        p.xmlstream = object()
        p.authenticated = True
        self.assertIn("no resource", health([p])[1])
        p.dispatcher.resources.update("svc@example.org/a", "a", 0)
        self.assertEqual(health([p]), (True, "ok"))

    def test_processAndBuildInfo(self):
        """
        prometheus_client adds the process's own metrics; the build info
        says which clientproxy runs.
        """
        from clientproxy import __version__

        text = render([proxy()])
        self.assertSample(text, "clientproxy_build_info", {"version": __version__}, 1)
        names = {f.name for f in text_string_to_metric_families(text)}
        self.assertIn("process_resident_memory_bytes", names)
        self.assertIn("process_cpu_seconds", names)

    def test_readiness(self):
        """
        Ready only when connected, the handshake done, the subscription
        approved and a resource usable; each unmet condition is named.
        """
        p = proxy()
        ready, report = readiness([p])
        self.assertFalse(ready)
        unmet = report["proxies"]["proxy.example.org"]["unmet"]
        self.assertEqual(len(unmet), 4)
        self.assertIn("presence subscription to svc@example.org approved (it is none)", unmet)
        p.xmlstream = object()
        p.authenticated = True
        p.parts.presence.subscription = "pending"
        p.dispatcher.resources.update("svc@example.org/a", "a", 0)
        ready, report = readiness([p])
        self.assertEqual(
            report["proxies"]["proxy.example.org"]["unmet"],
            ["presence subscription to svc@example.org approved (it is pending)"],
        )
        self.assertSample(
            render([p]),
            "clientproxy_target_subscription",
            {"component": "proxy.example.org", "state": "pending"},
            1,
        )
        p.parts.presence.subscription = "approved"
        self.assertEqual(readiness([p])[0], True)


class EndpointTests(unittest.TestCase):
    """
    The HTTP endpoint, on a real loopback port.
    """

    @defer.inlineCallbacks
    def test_overHTTP(self):
        """
        The endpoint serves /metrics, /health (503 while not connected),
        /livez, /readyz (503 with a JSON report) and 404 for anything else,
        bound to the interface given only.
        """
        p = proxy()
        p.stats.requests["answered"] = 5
        service = metricsService([p], 0, "127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        port = service._port.getHost().port
        agent = Agent(reactor)
        response = yield agent.request(b"GET", b"http://127.0.0.1:%d/metrics" % port)
        body = yield readBody(response)
        self.assertEqual(response.code, 200)
        self.assertIn(b'outcome="answered"} 5', body)
        response = yield agent.request(b"GET", b"http://127.0.0.1:%d/health" % port)
        body = yield readBody(response)
        self.assertEqual(response.code, 503)
        self.assertIn(b"not connected", body)
        response = yield agent.request(b"GET", b"http://127.0.0.1:%d/livez" % port)
        body = yield readBody(response)
        self.assertEqual((response.code, body), (200, b"ok\n"))
        response = yield agent.request(b"GET", b"http://127.0.0.1:%d/readyz" % port)
        body = yield readBody(response)
        self.assertEqual(response.code, 503)
        self.assertFalse(json.loads(body)["proxies"]["proxy.example.org"]["ready"])
        response = yield agent.request(b"GET", b"http://127.0.0.1:%d/other" % port)
        yield readBody(response)
        self.assertEqual(response.code, 404)
        self.assertEqual(service._port.getHost().host, "127.0.0.1")
