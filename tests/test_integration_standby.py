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
"""

import os
import signal
import sqlite3

from twisted.internet import defer, reactor, task

from clientproxy.state.redis.store import connect
from clientproxy.state.sqlite import storePath
from clientproxy.testing.client import heldFor
from clientproxy.testing.ejabberd import ThrowawayEjabberd
from clientproxy.testing.prosody import ThrowawayProsody
from clientproxy.testing.redis import startRedis
from clientproxy.testing.twistd import ComponentProcess
from tests.integration import COMPONENT, HOLD, Processes, ServerTestCase, onEveryServer


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


globals().update(onEveryServer(StandbyTests))
