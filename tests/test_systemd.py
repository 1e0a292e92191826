"""
Tests for L{clientproxy.ops.systemd}: the notifications, received on a real
Unix datagram socket as systemd would, with a fake clock for the watchdog.
"""

import os
import shutil
import socket
import tempfile

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from clientproxy.assembly import makeProxy
from clientproxy.ops.systemd import SystemdNotifier, notifySocket, watchdogInterval
from tests.helpers import stopProxy

HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='%s' id='s1'>"
)


class NotifierTests(unittest.TestCase):
    """
    The notifications as systemd receives them: C{READY=1} once every proxy is
    up, C{WATCHDOG=1} while running, C{STOPPING=1} on stop.
    """

    def setUp(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        self.path = os.path.join(directory, "notify")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.setblocking(False)
        self.addCleanup(self.socket.close)
        self.reactor = MemoryReactorClock()
        self.proxies = [
            makeProxy(jid, "svc@example.org", "s", reactor=self.reactor)
            for jid in ("a.example.org", "b.example.org")
        ]
        environ = {
            "NOTIFY_SOCKET": self.path,
            "WATCHDOG_USEC": "10000000",
            "WATCHDOG_PID": str(os.getpid()),
        }
        self.notifier = SystemdNotifier(self.proxies, self.reactor, environ)
        for proxy in self.proxies:
            proxy.startService()
            self.addCleanup(stopProxy, proxy)

    def received(self):
        messages = []
        while True:
            try:
                messages.append(self.socket.recv(4096).decode("utf-8"))
            except BlockingIOError:
                return messages

    def handshake(self, proxy):
        xs = proxy.factory.buildProtocol(None)
        xs.makeConnection(StringTransport())
        xs.dataReceived(HEADER % proxy.jid.encode() + b"<handshake/>")

    def test_readyOnceEveryProxyIsConnected(self):
        """
        C{READY=1} comes once every proxy has completed its handshake, with a
        status naming them, and only once: a later handshake (a reconnection)
        sends no second one.
        """
        self.notifier.startService()
        self.handshake(self.proxies[0])
        self.assertEqual([m for m in self.received() if "READY" in m], [])
        self.handshake(self.proxies[1])
        [ready] = [m for m in self.received() if "READY" in m]
        self.assertTrue(ready.startswith("READY=1\nSTATUS=connected: a.example.org"))
        self.handshake(self.proxies[0])
        self.assertEqual([m for m in self.received() if "READY" in m], [])

    def test_standbyCountsAsStarted(self):
        """
        A proxy standing by for another process (which holds its store's
        lock) counts as started: READY=1 comes with the others connected,
        and the status says it stands by.
        """
        from clientproxy.ops.standby import StandbyLock

        lock = StandbyLock(self.mktemp(), self.reactor)
        lock.acquire(lambda: None)
        self.addCleanup(lock.release)
        standby = StandbyLock(lock.path, self.reactor)
        standby.acquire(lambda: None)
        self.addCleanup(standby.release)
        self.proxies[1].standby = standby
        self.notifier.startService()
        self.assertEqual([m for m in self.received() if "READY" in m], [])
        self.handshake(self.proxies[0])
        [ready] = [m for m in self.received() if "READY" in m]
        self.assertEqual(
            ready, "READY=1\nSTATUS=connected: a.example.org; standing by: b.example.org"
        )

    def test_leaseStandbyCountsAsStarted(self):
        """
        A proxy with a lease held by another process counts as started once
        Redis has said so, not before (it may be about to connect).
        """
        from clientproxy.state.redis.lease import Lease
        from tests.test_lease import MemoryRedis

        redis = MemoryRedis(self.reactor)
        holder = Lease(redis, "b.example.org", self.reactor)
        holder.acquire(lambda: None)
        self.addCleanup(holder.release)
        redis.silent = True
        lease = Lease(redis, "b.example.org", self.reactor)
        self.proxies[1].standby = lease
        self.addCleanup(lease.release)
        self.notifier.startService()
        lease.acquire(lambda: None)
        self.handshake(self.proxies[0])
        self.assertEqual([m for m in self.received() if "READY" in m], [])
        redis.silent = False
        redis.pending.pop().callback([0, holder.token])
        [ready] = [m for m in self.received() if "READY" in m]
        self.assertEqual(
            ready, "READY=1\nSTATUS=connected: a.example.org; standing by: b.example.org"
        )

    def test_watchdogAndStopping(self):
        """
        The watchdog is pinged at start and every half C{WatchdogSec} (5 s of
        10); a stop sends C{STOPPING=1} and ends the pings.
        """
        self.notifier.startService()
        self.assertEqual(self.received(), ["WATCHDOG=1"])
        self.reactor.advance(5)
        self.assertEqual(self.received(), ["WATCHDOG=1"])
        self.notifier.stopService()
        self.assertEqual(self.received(), ["STOPPING=1"])
        self.reactor.advance(5)
        self.assertEqual(self.received(), [])


class EnvironmentTests(unittest.TestCase):
    """
    What the notifier reads from the environment systemd sets.
    """

    def test_socket(self):
        """
        No C{$NOTIFY_SOCKET} is no socket; a name starting with C{@} is in the
        abstract namespace (a leading NUL); a path is used as it is.
        """
        self.assertIsNone(notifySocket({}))
        self.assertEqual(notifySocket({"NOTIFY_SOCKET": "@abstract"}), "\0abstract")
        self.assertEqual(notifySocket({"NOTIFY_SOCKET": "/run/x"}), "/run/x")

    def test_watchdog(self):
        """
        The ping interval is half C{$WATCHDOG_USEC}, in seconds; none without
        it, or when C{$WATCHDOG_PID} names another process.
        """
        self.assertIsNone(watchdogInterval({}))
        self.assertEqual(watchdogInterval({"WATCHDOG_USEC": "4000000"}), 2.0)
        self.assertIsNone(watchdogInterval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}))
