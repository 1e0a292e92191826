"""
Tests for L{clientproxy.ops.metrics}: the Prometheus text, health, and the
endpoint over HTTP on loopback.
"""

import ast
import json
import os
import re

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from clientproxy.assembly import makeProxy
from clientproxy.ops import metrics
from clientproxy.ops.metrics import (
    COUNTERS,
    MAX_FEATURES_PER_RESOURCE,
    health,
    metricsService,
    readiness,
    render,
)
from clientproxy.ops.stats import DROP_REASONS, LINK_STATES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Units a name may not use: Prometheus' base units are seconds and bytes.
NOT_BASE_UNITS = re.compile(
    r"_(ms|milliseconds|millis|microseconds|us|ns|minutes|hours|days|kb|kib|mb|mib|gb|"
    r"kilobytes|megabytes|percent)(_|$)"
)


def proxy(jid="proxy.example.org"):
    p = makeProxy(jid, "svc@example.org", "s", reactor=MemoryReactorClock())
    p.authenticated = False
    return p


class SampleAssertions:
    """
    An assertion on a sample of the exposition.
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


class RenderTests(SampleAssertions, unittest.TestCase):
    """
    The Prometheus exposition and the health and readiness reports, read from a
    proxy's own counters.
    """

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
        resource = {"component": "proxy.example.org", "resource": "svc@example.org/a"}
        self.assertSample(text, "clientproxy_resource_requests_total", resource, 4)
        self.assertSample(text, "clientproxy_resource_refusals_total", resource, 1)
        self.assertSample(text, "clientproxy_resource_timeouts_total", resource, 0)
        self.assertSample(
            text,
            "clientproxy_resource_features",
            {"component": "proxy.example.org", "resource": "svc@example.org/a", "feature": "urn:x"},
            1,
        )

    def test_countersGaugesHistogram(self):
        """
        The requests replied, the errors by condition and the drops by
        reason, the pending and connected gauges, and the latency histogram
        (cumulative buckets, count) are exposed with the proxy's
        C{component} label.
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
            "clientproxy_requests_replied_total",
            {"component": "proxy.example.org", "origin": "peer"},
            3,
        )
        self.assertSample(
            text,
            "clientproxy_request_errors_total",
            {
                "component": "proxy.example.org",
                "origin": "peer",
                "condition": "remote-server-timeout",
            },
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


class AlertableTests(SampleAssertions, unittest.TestCase):
    """
    Metrics operators can alert on: named by the rules, one kind of event
    per counter, every known series at zero from the start, bounded label
    sets.
    """

    def families(self, *proxies):
        return list(text_string_to_metric_families(render(list(proxies))))

    def test_namingRules(self):
        """
        Every family parses with prometheus_client's own parser and follows
        Prometheus' naming rules: a valid lower-case name under
        C{clientproxy_}; counters (and only counters) end in C{_total};
        no name ends in a suffix the exposition reserves; a histogram of
        time is in seconds, and no name uses a unit other than the base
        ones; label names are valid and none is reserved.
        """
        p = proxy()
        resource = p.dispatcher.resources.update("svc@example.org/a", "a", 0)
        p.dispatcher.resources.learnt(resource, frozenset(["urn:x"]))
        p.stats.resources["svc@example.org/a"]["requests"] = 1
        families = self.families(p)
        mine = [f for f in families if f.name.startswith("clientproxy_")]
        self.assertGreater(len(mine), 40)
        for family in mine:
            name = family.name
            self.assertRegex(name, r"^clientproxy_[a-z][a-z0-9_]*[a-z0-9]$")
            self.assertNotRegex(name, NOT_BASE_UNITS)
            self.assertFalse(name.endswith(("_count", "_sum", "_bucket", "_created")), name)
            self.assertNotIn("_total_", name)
            if family.type == "counter":
                self.assertEqual({s.name for s in family.samples}, {name + "_total"}, name)
            else:
                self.assertFalse(name.endswith("_total"), name)
            if family.type == "histogram":
                self.assertTrue(name.endswith(("_seconds", "_bytes")), name)
            if family.type == "info":
                self.assertTrue(all(s.name == name + "_info" for s in family.samples))
            for sample in family.samples:
                for label in sample.labels:
                    self.assertRegex(label, r"^[a-z][a-z0-9_]*$")
                    if label == "le":
                        self.assertEqual(family.type, "histogram")
                if family.type not in ("info",) and not name.startswith("clientproxy_build"):
                    self.assertIn("component", sample.labels, name)
            self.assertTrue(family.documentation, name)

    def test_everyCounterAtZeroFromTheStart(self):
        """
        A fresh proxy exposes every counter of L{COUNTERS}, every one of its
        label combinations, at zero: an alert on a rate sees the first
        event.
        """
        families = {f.name + "_total": f for f in self.families(proxy()) if f.type == "counter"}
        self.assertTrue(set(COUNTERS) <= set(families), set(COUNTERS) - set(families))
        for name, (_, labels) in COUNTERS.items():
            samples = families[name].samples
            expected = 1
            for values in labels.values():
                expected *= len(values)
            self.assertEqual(len(samples), expected, name)
            self.assertEqual({s.value for s in samples}, {0}, name)
        self.assertEqual(
            {s.labels["reason"] for s in families["clientproxy_dropped_total"].samples},
            set(DROP_REASONS),
        )

    def test_oneKindOfEventPerCounter(self):
        """
        The proxy's mixed tallies go to counters of their own: requests
        forwarded, resent, replied and answered with an error (by origin
        and condition), messages by what was done, presence, keepalive,
        capabilities, shared state.
        """
        p = proxy()
        p.stats.requests.update(
            {
                "forwarded": 5,
                "forwarded-from-target": 2,
                "retried": 1,
                "refused": 3,
                "answered": 4,
                "answered-to-target": 2,
                "error:service-unavailable": 1,
                "error-to-target:remote-server-timeout": 1,
            }
        )
        p.stats.messages.update({"queued": 2, "error:resource-constraint": 1})
        p.stats.presence.update({"subscribed": 3, "probes-refused": 1})
        p.stats.keepalive.update({"pings": 6, "dead-links": 1})
        p.stats.capabilities.update({"queries": 2, "verified": 1})
        p.stats.cluster.update({"redis-errors": 4})
        text = render([p])
        component = {"component": "proxy.example.org"}

        def sample(name, value, **labels):
            self.assertSample(text, name, dict(component, **labels), value)

        sample("clientproxy_requests_forwarded_total", 5, origin="peer")
        sample("clientproxy_requests_forwarded_total", 2, origin="target")
        sample("clientproxy_requests_resent_total", 1, reason="resource-left")
        sample("clientproxy_requests_resent_total", 3, reason="refusal")
        sample("clientproxy_requests_replied_total", 4, origin="peer")
        sample("clientproxy_requests_replied_total", 2, origin="target")
        sample(
            "clientproxy_request_errors_total", 1, origin="peer", condition="service-unavailable"
        )
        sample(
            "clientproxy_request_errors_total",
            1,
            origin="target",
            condition="remote-server-timeout",
        )
        sample("clientproxy_messages_queued_total", 2)
        sample("clientproxy_message_errors_total", 1, condition="resource-constraint")
        sample("clientproxy_presence_subscriptions_total", 3, result="accepted")
        sample("clientproxy_presence_probes_total", 1, result="refused")
        sample("clientproxy_keepalive_pings_total", 6)
        sample("clientproxy_dead_links_total", 1)
        sample("clientproxy_capability_queries_total", 2)
        sample("clientproxy_capability_answers_total", 1, verification="verified")
        sample("clientproxy_redis_errors_total", 4)

    def test_serverLink(self):
        """
        The link's state is one of its states at 1, the others at 0; the
        attempts and the failures by reason are counted.
        """
        p = proxy()
        p.stats.link = "up"
        p.stats.connectionAttempts = 3
        p.stats.connectionFailures["refused"] = 2
        text = render([p])
        for state in LINK_STATES:
            self.assertSample(
                text,
                "clientproxy_server_link_state",
                {"component": "proxy.example.org", "state": state},
                int(state == "up"),
            )
        self.assertSample(
            text, "clientproxy_server_connection_attempts_total", {"component": p.jid}, 3
        )
        self.assertSample(
            text,
            "clientproxy_server_connection_failures_total",
            {"component": p.jid, "reason": "refused"},
            2,
        )

    def test_featuresCapped(self):
        """
        A resource advertising thousands of features makes at most
        L{MAX_FEATURES_PER_RESOURCE} series (the first by name); another
        gauge says how many it advertises.
        """
        p = proxy()
        resource = p.dispatcher.resources.update("svc@example.org/a", "a", 0)
        many = frozenset("urn:feature:%04d" % (n,) for n in range(3000))
        p.dispatcher.resources.learnt(resource, many)
        [features] = [f for f in self.families(p) if f.name == "clientproxy_resource_features"]
        self.assertEqual(len(features.samples), MAX_FEATURES_PER_RESOURCE)
        self.assertEqual(features.samples[0].labels["feature"], "urn:feature:0000")
        self.assertSample(
            render([p]),
            "clientproxy_resource_features_advertised",
            {"component": p.jid, "resource": "svc@example.org/a"},
            3000,
        )

    def test_availableResourceAtZero(self):
        """
        An available resource has its counters from the start, at zero.
        """
        p = proxy()
        p.dispatcher.resources.update("svc@example.org/b", "b", 0)
        self.assertSample(
            render([p]),
            "clientproxy_resource_timeouts_total",
            {"component": p.jid, "resource": "svc@example.org/b"},
            0,
        )

    def test_dropReasonsKnown(self):
        """
        Every reason the code drops a stanza for (a literal given to
        C{drop} or C{dropped[...]}, or a variable's literal values in the
        parser and dispatch) is in L{DROP_REASONS}, so it is exported at
        zero from the start.
        """
        found = set()
        for directory, _, files in os.walk(os.path.join(ROOT, "clientproxy")):
            for f in files:
                if not f.endswith(".py"):
                    continue
                with open(os.path.join(directory, f), encoding="utf-8") as source:
                    tree = ast.parse(source.read())
                for node in ast.walk(tree):
                    if (
                        isinstance(node, ast.Call)
                        and getattr(node.func, "attr", None) == "drop"
                        and len(node.args) == 2
                    ):
                        found |= literals(node.args[1])
                    elif (
                        isinstance(node, ast.Subscript)
                        and getattr(node.value, "attr", None) == "dropped"
                    ):
                        found |= literals(node.slice)
                    elif isinstance(node, ast.Assign) and any(
                        getattr(t, "attr", getattr(t, "id", None)) in ("_oversized", "why")
                        for t in node.targets
                    ):
                        found |= literals(node.value)
        found = {reason for reason in found if re.match(r"^[a-z]+(-[a-z]+)+$", reason)}
        self.assertGreater(len(found), 15)
        self.assertEqual(sorted(found - set(DROP_REASONS)), [])

    def test_readmeIsTheTable(self):
        """
        docs/operations.md's table of metrics is the one
        L{metrics.readmeTable} writes.
        """
        with open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8") as f:
            text = f.read()
        header = metrics.readmeTable()[0]
        start = text.index(header)
        self.assertEqual(text[start:].split("\n\n", 1)[0].splitlines(), metrics.readmeTable())


def literals(node):
    """
    The string constants in an expression (both sides of a conditional).
    """
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


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
        self.assertIn(
            b'clientproxy_requests_replied_total{component="proxy.example.org",origin="peer"} 5',
            body,
        )
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
