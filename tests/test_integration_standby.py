"""
End to end, on Prosody and ejabberd: a second clientproxy process for the
same component and data directory stands by (it cannot take the store's
lock, see L{clientproxy.standby}) and takes over when the first is killed
with SIGKILL, with the message queue and the service's subscribers intact
(both use the same SQLite store). On ejabberd, which would accept both
connections and spread stanzas over them, this is what keeps the second
from breaking the first's requests; two processes with a store each are
both active there, and each is told of the other by its probes
(L{clientproxy.instances}).
"""

import os
import signal
import sqlite3

from twisted.internet import defer, reactor

from clientproxy.store import storePath
from clientproxy.testing.ejabberd import ThrowawayEjabberd
from clientproxy.testing.twistd import ComponentProcess
from tests.integration import (
    COMPONENT,
    SECRET,
    TARGET,
    ServerTestCase,
    onEveryServer,
    withTimeout,
)


def bodies(client, text):
    return [m for m in client.messages if str(m.body or "") == text]


class Processes:
    """
    clientproxy processes (twistd) for the test's component.
    """

    timeout = 120

    def startProcess(self, directory, process=None):
        """
        Start C{process} (a new L{ComponentProcess} by default) for the
        component, with C{directory} as its data directory.
        """
        process = process or ComponentProcess()
        self.addCleanup(process.stop)
        process.start(
            [
                "--jid",
                COMPONENT,
                "--target",
                TARGET,
                "--secret",
                SECRET,
                "--port",
                str(self.server.componentPort),
                "--data-dir",
                directory,
            ],
            directory,
        )
        return process

    def newDirectory(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        return directory


class StandbyTests(Processes):
    def queued(self, directory):
        with sqlite3.connect(storePath(directory, COMPONENT)) as db:
            return db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]

    @defer.inlineCallbacks
    def test_standbyTakesOver(self):
        """
        The standby says so once, takes over within seconds of the first
        process's death (kill -9), delivers the message queued through the
        first exactly once, tells the subscriber the first accepted that
        the service is available, and serves requests.
        """
        directory = self.newDirectory()
        first = self.startProcess(directory)
        yield first.waitForLine(lambda line: "Connected to" in line)
        second = ComponentProcess()
        standing = second.waitForLine(lambda line: "standing by" in line)
        self.startProcess(directory, second)
        yield standing

        alice = yield self.connect("alice", "x")
        subscribed = alice.waitFor(
            lambda s: (
                s.name == "presence"
                and s.getAttribute("type") == "subscribed"
                and s.getAttribute("from") == COMPONENT
            )
        )
        alice.sendPresence("subscribe", to=COMPONENT)
        yield withTimeout(subscribed, what="the first process to accept the subscription")
        alice.sendMessage(COMPONENT, "while away", stanzaID="m1")
        yield self.waitUntil(lambda: self.queued(directory) == 1, "the message to be queued")

        took = second.waitForLine(lambda line: "Took over" in line, timeout=20)
        killed = reactor.seconds()
        os.kill(first.pid, signal.SIGKILL)
        yield took
        self.assertLess(reactor.seconds() - killed, 10)

        svc = yield self.connect("svc", "a")
        yield self.waitUntil(lambda: bodies(svc, "while away"), "the queued message")
        alice.sendMessage(COMPONENT, "live", stanzaID="m2")
        yield self.waitUntil(lambda: bodies(svc, "live"), "a live message")
        self.assertEqual(len(bodies(svc, "while away")), 1)
        self.assertEqual(self.queued(directory), 0)
        yield self.waitUntil(
            lambda: any(
                p.getAttribute("from") == COMPONENT and p.getAttribute("type") is None
                for p in alice.presences
            ),
            "the subscriber to hear the service is available",
        )
        reply = yield withTimeout(alice.request(COMPONENT), what="a request through the second")
        self.assertEqual(reply["type"], "result")


class TwoActiveOnEjabberd(Processes, ServerTestCase):
    """
    ejabberd takes two connections for one component; processes with a
    store each (so no lock between them) are both active, and each is told
    of the other by its probes.
    """

    serverClass = ThrowawayEjabberd

    @defer.inlineCallbacks
    def test_otherProcessTold(self):
        first = self.startProcess(self.newDirectory())
        yield first.waitForLine(lambda line: "Connected to" in line)
        told = first.waitForLine(lambda line: "Another clientproxy process" in line, timeout=30)
        second = self.startProcess(self.newDirectory())
        yield second.waitForLine(lambda line: "Connected to" in line)
        line = yield told
        self.assertIn(COMPONENT, line)


globals().update(onEveryServer(StandbyTests))
