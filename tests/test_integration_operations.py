"""
End-to-end test of running clientproxy as an operator does: `twistd
clientproxy --config FILE` with two proxies against a real server, its
readiness endpoint following the target's subscription and resources, and
a reload on a real SIGHUP.
"""

import json
import os

from twisted.internet import defer, reactor
from twisted.web.client import Agent, readBody

from clientproxy.testing.client import hold, resultFor, supporting
from clientproxy.testing.server import freePort
from clientproxy.testing.twistd import ComponentProcess
from tests.helpers import errorCondition
from clientproxy.testing.prosody import ThrowawayProsody
from tests.integration import COMPONENT, SECRET, ServerTestCase, withTimeout

OTHER = "other.localhost"

CONFIG = """
metrics-port = {metrics}

[[proxy]]
jid = "{component}"
target = "svc@localhost"
secret-file = "{secret}"
port = {port}
data-dir = "{directory}"
{deny}

[[proxy]]
jid = "{other}"
target = "bob@localhost"
secret-file = "{secret}"
port = {port}
data-dir = "{directory}"
"""


class OperationsTests:
    """
    clientproxy run by twistd from a configuration file, as an operator runs
    it: readiness and a reload on SIGHUP.
    """

    components = {COMPONENT: SECRET, OTHER: SECRET}

    def writeConfig(self, deny=""):
        with open(self.config, "w") as f:
            f.write(
                CONFIG.format(
                    metrics=self.metricsPort,
                    component=COMPONENT,
                    other=OTHER,
                    secret=self.secret,
                    port=self.server.componentPort,
                    directory=self.directory,
                    deny=deny,
                )
            )

    @defer.inlineCallbacks
    def readyz(self):
        agent = Agent(reactor)
        response = yield agent.request(b"GET", b"http://127.0.0.1:%d/readyz" % (self.metricsPort,))
        body = yield readBody(response)
        return response.code, json.loads(body)

    @defer.inlineCallbacks
    def waitForReadiness(self, code, what):
        deadline = reactor.seconds() + 15
        while True:
            try:
                result = yield self.readyz()
            except Exception:
                result = None
            if result is not None and result[0] == code:
                return result[1]
            if reactor.seconds() > deadline:
                raise AssertionError("waited 15 s for %s (last: %r)" % (what, result))
            yield self.pause()

    def pause(self):
        d = defer.Deferred()
        reactor.callLater(0.05, d.callback, None)
        return d

    @defer.inlineCallbacks
    def test_configReadinessAndReload(self):
        """
        One twistd process runs the two proxies of a file: /readyz says what
        each lacks until its target approves and comes online; a SIGHUP reload
        denies a requester without failing the request in flight; readiness
        follows the last resource leaving.
        """
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.secret = os.path.join(self.directory, "secret")
        with open(self.secret, "w") as f:
            f.write(SECRET + "\n")
        self.config = os.path.join(self.directory, "clientproxy.toml")
        self.metricsPort = freePort()
        self.writeConfig()
        process = ComponentProcess()
        self.addCleanup(process.stop)
        process.start(["--config", self.config], self.directory)

        # Nobody of the target online: the subscription waits for approval.
        yield process.waitForLine(lambda line: "Connected to" in line and OTHER in line)
        report = yield self.waitForReadiness(503, "/readyz to answer")
        unmet = report["proxies"][COMPONENT]["unmet"]
        self.assertIn("presence subscription to svc@localhost approved (it is pending)", unmet)
        self.assertIn("at least one usable resource of svc@localhost", unmet)

        # The targets log in (their clients approve the subscription).
        held = []
        svc = yield self.connect(
            "svc", "a", onRequest=supporting([], lambda iq: held.append(iq) or hold(iq))
        )
        bob = yield self.connect("bob", "b")
        report = yield self.waitForReadiness(200, "both proxies to be ready")
        self.assertTrue(report["proxies"][OTHER]["ready"])

        alice = yield self.connect("alice", "x")
        mallory = yield self.connect("mallory", "m")
        reply = yield withTimeout(alice.request(OTHER))
        self.assertEqual((reply["type"], reply["from"]), ("result", OTHER))

        # A request held by svc/a stays in flight across a reload that
        # denies mallory.
        inFlight = alice.request(COMPONENT, stanzaID="held")
        yield self.waitUntil(lambda: held, "the request to reach svc/a")
        reloaded = process.waitForLine(lambda line: "Reload of" in line and COMPONENT in line)
        self.writeConfig(deny='deny = ["mallory@localhost"]')
        process.signal("HUP")
        line = yield reloaded
        self.assertIn("deny", line)
        svc.send(resultFor(held[0]))
        reply = yield withTimeout(inFlight, what="the held request's answer")
        self.assertEqual((reply["type"], reply["id"]), ("result", "held"))
        refused = yield withTimeout(mallory.request(COMPONENT))
        self.assertEqual(errorCondition(refused), ("forbidden", "auth"))

        # The last resource of svc leaves: not ready.
        yield svc.disconnect()
        report = yield self.waitForReadiness(503, "readiness to follow the resource")
        self.assertEqual(
            report["proxies"][COMPONENT]["unmet"],
            ["at least one usable resource of svc@localhost"],
        )
        self.assertTrue(report["proxies"][OTHER]["ready"])
        self.assertIsNotNone(bob.xmlstream)
        yield process.stop()


class OperationsTestsOnProsody(OperationsTests, ServerTestCase):
    """
    On Prosody only: ejabberd's throwaway server lists both components in
    one ejabberd_service listener, and ejabberd then routes stanzas for
    every domain of the listener over every connection made to it (seen:
    the approval meant for one proxy reached the other). Two components
    on one ejabberd need a listener each; see README, "Configuring the
    server".
    """

    serverClass = ThrowawayProsody
