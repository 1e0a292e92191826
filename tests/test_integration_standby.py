"""
End to end, on Prosody and ejabberd: a second clientproxy process for the
same component and data directory stands by (it cannot take the store's
lock, see L{clientproxy.ops.standby}) and takes over when the first is killed
with SIGKILL, with the message queue and the service's subscribers intact
(both use the same SQLite store). On ejabberd, which would accept both
connections and spread stanzas over them, this is what keeps the second
from breaking the first's requests; two processes with a store each are
both active there, and each is told of the other by its probes
(L{clientproxy.handlers.instances}). With the queue and the subscribers in Redis
(C{--redis}), a process with a data directory of its own (as on another
host) takes over on Prosody with them, and with the requests in flight.
With C{--lease} on a Prosody set to C{component_conflict_resolve =
"kick_old"}, two healthy processes never kick each other, a hung holder
(SIGSTOP) is replaced within seconds and, continued, does not take the
component back; its systemd watchdog pings stop while it hangs.
"""

import os
import shutil
import signal
import sqlite3
import tempfile

from twisted.internet import defer, protocol, reactor, task
from twisted.logger import Logger

from clientproxy.state.redis.store import connect
from clientproxy.state.sqlite import storePath
from clientproxy.testing.client import heldFor
from clientproxy.testing.ejabberd import ThrowawayEjabberd
from clientproxy.testing.prosody import ThrowawayProsody
from clientproxy.testing.redis import startRedis
from clientproxy.testing.twistd import ComponentProcess
from tests.integration import (
    COMPONENT,
    HOLD,
    Processes,
    ServerTestCase,
    onEveryServer,
    withTimeout,
)


class StandbyTests(Processes):
    """
    A second process for the same component and data directory: it stands by
    and takes over when the first is killed.
    """

    def test_standbyTakesOver(self):
        """
        Two processes on one data directory: the second stands by on the
        store's lock and takes over with the SQLite store.
        """
        directory = self.newDirectory()

        def queued():
            with sqlite3.connect(storePath(directory, COMPONENT)) as db:
                return db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]

        return self.takeOver([directory, directory], queued=queued)


class TwoActiveOnEjabberd(Processes, ServerTestCase):
    """
    ejabberd takes two connections for one component; processes with a
    store each (so no lock between them) are both active, and each is told
    of the other by its probes.
    """

    serverClass = ThrowawayEjabberd

    @defer.inlineCallbacks
    def test_otherProcessTold(self):
        """
        When a second process with its own store connects as the same component,
        the first logs that another clientproxy process serves it: two active
        processes are not silent.
        """
        first = self.startProcess(self.newDirectory())
        yield first.waitForLine(lambda line: "Connected to" in line)
        told = first.waitForLine(lambda line: "Another clientproxy process" in line, timeout=30)
        second = self.startProcess(self.newDirectory())
        yield second.waitForLine(lambda line: "Connected to" in line)
        line = yield told
        self.assertIn(COMPONENT, line)


class RedisStandbyOnProsody(Processes, ServerTestCase):
    """
    Two processes as on two hosts (a data directory each), sharing the
    queue and the subscribers in Redis: the second stands by (Prosody
    refuses it with conflict) and takes over with them.
    """

    serverClass = ThrowawayProsody

    @defer.inlineCallbacks
    def setUp(self):
        yield ServerTestCase.setUp(self)
        self.redis = yield startRedis(self)

    @defer.inlineCallbacks
    def queued(self):
        connection = connect(self.redis.url)
        try:
            length = yield connection.execute("LLEN", "clientproxy:%s:queue" % (COMPONENT,))
        finally:
            yield connection.disconnect()
        return length

    def test_takesOverWithSharedState(self):
        """
        The standby has a data directory of its own: the queued message and
        the subscriber come to it through Redis.
        """
        return self.takeOver(
            [self.newDirectory(), self.newDirectory()],
            more=["--redis", self.redis.url],
            queued=self.queued,
        )

    @defer.inlineCallbacks
    def test_requestsInFlightTakenOver(self):
        """
        Requests the killed process held are answered by the standby, once
        each: the C{get} with a result (its reply routed, or the request
        sent again), the C{set} with a result or C{recipient-unavailable}.
        """
        more = ["--redis", self.redis.url]
        first = self.startProcess(self.newDirectory(), more=more)
        yield first.waitForLine(lambda line: "Connected to" in line)
        second = ComponentProcess()
        standing = second.waitForLine(lambda line: "standing by" in line)
        self.startProcess(self.newDirectory(), second, more=more)
        yield standing
        svc = yield self.connect("svc", "a", onRequest=heldFor(HOLD))
        alice = yield self.connect("alice", "x")
        for kind in ("get", "set"):
            alice.request(COMPONENT, kind=kind, stanzaID=kind)
        yield self.waitUntil(
            lambda: {"get", "set"} <= {iq["id"] for iq in svc.requests}, "the requests to be held"
        )
        took = second.waitForLine(lambda line: "Took over" in line, timeout=20)
        os.kill(first.pid, signal.SIGKILL)
        yield took
        yield self.waitUntil(
            lambda: {"get", "set"} <= {r["id"] for r in alice.replies},
            "an answer to both requests",
            seconds=30,
        )
        yield task.deferLater(reactor, HOLD + 1, lambda: None)
        byID = {"get": [], "set": []}
        for reply in alice.replies:
            if reply["id"] in byID:
                byID[reply["id"]].append(reply)
        self.assertEqual([len(byID["get"]), len(byID["set"])], [1, 1])
        self.assertEqual(byID["get"][0]["type"], "result")
        (answer,) = byID["set"]
        if answer["type"] == "error":
            self.assertIn("recipient-unavailable", answer.toXml())


class Pings(protocol.DatagramProtocol):
    """
    systemd's notification socket, faked: each datagram with when it came.
    """

    def __init__(self):
        self.received = []

    def datagramReceived(self, data, address):
        self.received.append((reactor.seconds(), data.decode("utf-8")))

    def watchdog(self, since=0.0, until=None):
        return [
            t
            for t, message in self.received
            if message == "WATCHDOG=1" and t >= since and (until is None or t <= until)
        ]


class LeaseOnProsodyKickOld(Processes, ServerTestCase):
    """
    Two processes with C{--lease} sharing a throwaway Redis, on a Prosody
    whose newcomer kicks the connected component (C{kick_old}).
    """

    serverClass = ThrowawayProsody

    def serverArguments(self):
        return {"extra": 'component_conflict_resolve = "kick_old"'}

    @defer.inlineCallbacks
    def setUp(self):
        yield ServerTestCase.setUp(self)
        self.redis = yield startRedis(self)

    def authenticated(self):
        """
        How many component connections Prosody has accepted so far.
        """
        with open(self.server.log, encoding="utf-8", errors="replace") as f:
            return f.read().count("External component successfully authenticated")

    def startStoppable(self, process, more, env=None):
        """
        Start C{process}; at clean-up it is continued first, should it be
        stopped (SIGTERM does not reach a stopped process).
        """
        self.startProcess(self.newDirectory(), process, more=more, env=env)

        def cont():
            if not process.ended.called:
                os.kill(process.pid, signal.SIGCONT)

        self.addCleanup(cont)
        return process

    @defer.inlineCallbacks
    def test_takeoverWithoutFlapping(self):
        """
        Healthy, the holder keeps the component for 5 s and the standby never
        connects (Prosody accepts no second connection). The holder stopped
        (SIGSTOP): its watchdog pings stop, the standby takes the lease once
        it expired, connects (Prosody kicks the hung one), and a client's
        request is answered within a few seconds. Continued (SIGCONT): the
        old holder finds the lease held by the other, drops its connection,
        stands by, and does not take the component back.
        """
        more = ["--redis", self.redis.url, "--lease"]
        directory = tempfile.mkdtemp(prefix="cp-notify-")
        self.addCleanup(shutil.rmtree, directory, True)
        pings = Pings()
        port = reactor.listenUNIXDatagram(os.path.join(directory, "notify"), pings)
        self.addCleanup(port.stopListening)
        env = dict(
            os.environ,
            NOTIFY_SOCKET=os.path.join(directory, "notify"),
            WATCHDOG_USEC="1000000",
        )
        first = ComponentProcess()
        connected = first.waitForLine(lambda line: "Connected to" in line)
        known = first.waitForResources(1, timeout=30)
        self.startStoppable(first, more, env)
        yield connected
        second = ComponentProcess()
        standing = second.waitForLine(lambda line: "standing by" in line)
        secondConnected = second.waitForLine(lambda line: "Connected to" in line, timeout=60)
        secondKnows = second.waitForResources(1, timeout=60)
        self.startStoppable(second, more)
        yield standing
        yield self.connect("svc", "a")
        alice = yield self.connect("alice", "x")
        yield known

        # Both healthy: no change of hands.
        before = self.authenticated()
        healthy = reactor.seconds()
        yield task.deferLater(reactor, 5, lambda: None)
        self.assertEqual(self.authenticated(), before)
        self.assertFalse(secondConnected.called)
        self.assertGreaterEqual(len(pings.watchdog(healthy)), 8)
        reply = yield withTimeout(alice.request(COMPONENT), what="a request to the holder")
        self.assertEqual(reply["type"], "result")

        # The holder hangs.
        lost = first.waitForLine(lambda line: "Lost the lease" in line, timeout=60)
        stopped = reactor.seconds()
        os.kill(first.pid, signal.SIGSTOP)
        yield secondConnected
        took = reactor.seconds() - stopped
        yield secondKnows
        reply = yield withTimeout(
            alice.request(COMPONENT), what="a request to the process that took over"
        )
        answered = reactor.seconds() - stopped
        self.assertEqual(reply["type"], "result")
        self.assertLess(answered, 10)
        self.assertEqual(pings.watchdog(stopped + 0.1), [])

        # Continued: it does not come back.
        connections = self.authenticated()
        continued = reactor.seconds()
        os.kill(first.pid, signal.SIGCONT)
        yield lost
        yield task.deferLater(reactor, 3, lambda: None)
        self.assertEqual(self.authenticated(), connections)
        reply = yield withTimeout(alice.request(COMPONENT), what="a request after the continue")
        self.assertEqual(reply["type"], "result")
        self.assertTrue(pings.watchdog(continued))
        Logger().info(
            "Takeover: connected {took:.2f} s, a request answered {answered:.2f} s after SIGSTOP",
            took=took,
            answered=answered,
        )


globals().update(onEveryServer(StandbyTests))
