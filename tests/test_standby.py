"""
Tests for L{clientproxy.ops.standby}: one active process per store, the other
standing by until the lock is free, and the component connecting only once
it holds the lock.
"""

import os

from twisted.internet import task
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial import unittest

from clientproxy.ops.metrics import readiness
from clientproxy.assembly import makeProxy
from clientproxy.ops.standby import POLL_INTERVAL, StandbyLock, lockFor, lockPath
from clientproxy.state.sqlite import Store, storePath


class StandbyLockTests(unittest.TestCase):
    """
    The lock that keeps one process active per store: taken when free, waited
    for when not, and none for a store in memory.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.path = self.mktemp()

    def test_secondStandsByUntilTheFirstLetsGo(self):
        """
        The lock is taken at once when free; a second holder stands by
        (said once) and takes it within one interval of its release.
        """
        first, second = StandbyLock(self.path, self.clock), StandbyLock(self.path, self.clock)
        held = []
        first.acquire(lambda: held.append("first"))
        with capturedLogs() as events:
            second.acquire(lambda: held.append("second"))
            for _ in range(3):
                self.clock.advance(POLL_INTERVAL)
        self.assertEqual(held, ["first"])
        self.assertEqual(len([e for e in events if "standing by" in e["log_format"]]), 1)
        first.release()
        with capturedLogs() as events:
            self.clock.advance(POLL_INTERVAL)
        self.assertEqual(held, ["first", "second"])
        self.assertTrue(second.held)
        self.assertEqual(len([e for e in events if "Took over" in e["log_format"]]), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        second.release()

    def test_releaseWhileStandingBy(self):
        """
        A standby that is stopped stops trying.
        """
        first, second = StandbyLock(self.path, self.clock), StandbyLock(self.path, self.clock)
        first.acquire(lambda: None)
        second.acquire(lambda: self.fail("took the lock after its release"))
        second.release()
        first.release()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_memoryStoreHasNoLock(self):
        """
        A store in memory has no lock (no other process can share it), so its
        proxy never stands by.
        """
        self.assertIsNone(lockFor(Store(":memory:"), self.clock))


class StandingByComponentTests(unittest.TestCase):
    """
    A proxy whose store another process holds does not connect until that
    process is gone.
    """

    def setUp(self):
        """
        Another process (a lock of this one, here) holds the store of the
        proxy about to start.
        """
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.reactor = MemoryReactorClock()
        storeFile = os.path.abspath(storePath(self.directory, "proxy.example.org"))
        self.other = StandbyLock(lockPath(storeFile), self.reactor)
        self.other.acquire(lambda: None)
        self.addCleanup(self.other.release)
        self.proxy = makeProxy(
            "proxy.example.org",
            "svc@example.org",
            "s",
            host="127.0.0.1",
            port=5347,
            dataDir=self.directory,
            reactor=self.reactor,
        )
        self.addCleanup(self.proxy.store.close)
        self.proxy.startService()

    def test_connectsOnceItHoldsTheLock(self):
        """
        While another process holds the store the proxy opens no connection and
        is not ready (it says it stands by); within an interval of the lock's
        release it connects, and it lets the lock go when stopped.
        """
        reactor = self.reactor
        self.assertEqual(reactor.tcpClients, [])
        ready, report = readiness([self.proxy])
        self.assertFalse(ready)
        self.assertIn("standing by", report["proxies"]["proxy.example.org"]["unmet"][0])
        reactor.advance(POLL_INTERVAL * 3)
        self.assertEqual(reactor.tcpClients, [])
        self.other.release()
        reactor.advance(POLL_INTERVAL)
        self.assertEqual(len(reactor.tcpClients), 1)
        self.proxy.stopService()
        self.assertFalse(self.proxy.standby.held)

    def test_stopWhileStandingBy(self):
        """
        A proxy stopped while standing by stops waiting for the lock: no call
        is left scheduled.
        """
        self.proxy.stopService()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
