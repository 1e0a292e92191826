"""
Tests for L{clientproxy.state.redis.lease}: the lease in Redis that decides
which process may connect as the component. The timing is checked with
fake clocks against a Redis in memory that runs the scripts' logic (one
clock for Redis, one for each process, so that a process can be paused
while time passes for the others); the Lua scripts themselves against a
real Redis; and the component's use of the lease on a memory reactor.
"""

from twisted.internet import defer, reactor, task
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.trial import unittest

from clientproxy.assembly import makeHandlers
from clientproxy.ops.metrics import readiness
from clientproxy.ops.stats import STANDBY
from clientproxy.state.redis.lease import POLL, RELEASE, RENEW, RENEW_SCRIPT, TAKE, TTL, Lease
from clientproxy.state.redis.store import connect
from clientproxy.state.sqlite import Store
from clientproxy.testing.redis import startRedis
from clientproxy.xmpp.connection import LEASE_UNUSED, ProxyComponent
from tests.helpers import stopProxy
from tests.test_systemd import HEADER

COMPONENT = "proxy.example.org"


class MemoryRedis:
    """
    The lease's keys in memory, with expiry on C{clock} (Redis's time),
    running the logic of the lease's three scripts. C{failing} makes every
    command fail; C{silent} leaves every reply pending.
    """

    def __init__(self, clock):
        self.clock = clock
        self.values = {}
        self.failing = False
        self.silent = False
        self.pending = []

    def get(self, key):
        value, expires = self.values.get(key, (None, None))
        if expires is not None and self.clock.seconds() >= expires:
            del self.values[key]
            return None
        return value

    def set(self, key, value, ms=None):
        expires = None if ms is None else self.clock.seconds() + int(ms) / 1000.0
        self.values[key] = (value, expires)

    def eval(self, script, keys=(), args=()):
        if self.failing:
            return defer.fail(ConnectionError("Redis at x:1 could not be reached within 3 s"))
        result = self.run(script, keys, args)
        if self.silent:
            d = defer.Deferred()
            self.pending.append(d)
            return d
        return defer.succeed(result)

    def run(self, script, keys, args):
        held = self.get(keys[0])
        if script is TAKE:
            if held is not None:
                if held.split(" ", 1)[1] == args[0]:
                    self.set(keys[0], held, args[1])
                    return [1, held]
                return [0, held]
            epoch = int(self.get(keys[1]) or 0) + 1
            self.set(keys[1], str(epoch))
            token = "%d %s" % (epoch, args[0])
            self.set(keys[0], token, args[1])
            return [1, token]
        if script is RENEW_SCRIPT:
            if held == args[0]:
                self.set(keys[0], held, args[1])
                return 1
            if held is None and self.get(keys[1]) == args[0].split(" ")[0]:
                self.set(keys[0], args[0], args[1])
                return 1
            return held
        if script is RELEASE:
            if held == args[0]:
                del self.values[keys[0]]
                return 1
            return 0
        raise AssertionError("unknown script")


class LeaseTests(unittest.TestCase):
    """
    Taking, renewing, losing and releasing the lease, with a clock for
    Redis and one for each process.
    """

    def setUp(self):
        self.redisClock = task.Clock()
        self.redis = MemoryRedis(self.redisClock)
        self.clocks = []
        self.held = []
        self.lost = []

    def lease(self, name):
        clock = task.Clock()
        self.clocks.append(clock)
        lease = Lease(self.redis, COMPONENT, clock)
        lease.whenLost(lambda: self.lost.append(name))
        self.addCleanup(lease.release)
        return lease, clock

    def advance(self, seconds, paused=(), step=0.25):
        """
        Let C{seconds} pass for Redis and every process's clock but those
        in C{paused}, in small steps.
        """
        for _ in range(int(round(seconds / step))):
            self.redisClock.advance(step)
            for clock in self.clocks:
                if clock not in paused:
                    clock.advance(step)

    def test_takenWhenFreeAndRenewed(self):
        """
        A free lease is taken at once (epoch 1) and kept by its renewals,
        which keep extending the key long past one TTL.
        """
        lease, _ = self.lease("a")
        lease.acquire(lambda: self.held.append("a"))
        self.assertEqual(self.held, ["a"])
        self.assertTrue(lease.held)
        self.assertEqual(lease.token.split(" ")[0], "1")
        self.advance(TTL * 5)
        self.assertTrue(lease.held)
        self.assertEqual(self.redis.get(lease.key), lease.token)
        self.assertEqual(self.lost, [])

    def test_standbyWaitsWhileTheHolderRenews(self):
        """
        A second process finds the lease held, says once that it stands by,
        and never takes it while the holder renews: no change of hands.
        """
        first, _ = self.lease("a")
        second, _ = self.lease("b")
        first.acquire(lambda: self.held.append("a"))
        with capturedLogs() as events:
            second.acquire(lambda: self.held.append("b"))
            self.advance(30)
        self.assertEqual(self.held, ["a"])
        self.assertFalse(second.held)
        told = [e for e in events if "standing by" in e.get("log_format", "")]
        self.assertEqual(len(told), 1)

    def test_releaseHandsOverAtOnce(self):
        """
        A clean stop deletes the lease: the standby takes it at its next
        try (within one poll), with a new epoch.
        """
        first, _ = self.lease("a")
        second, _ = self.lease("b")
        first.acquire(lambda: self.held.append("a"))
        second.acquire(lambda: self.held.append("b"))
        self.advance(2)
        first.release()
        self.assertIsNone(self.redis.get(first.key))
        self.advance(POLL)
        self.assertEqual(self.held, ["a", "b"])
        self.assertEqual(second.token.split(" ")[0], "2")

    def test_pausedHolderReplacedAndDoesNotComeBack(self):
        """
        The holder paused (its clock stands still: SIGSTOP): its lease
        expires TTL after its last renewal, and the standby takes it within
        a poll more. Continued, the old holder counts its lease lost at once
        (its own bound has passed), and stands by: it neither renews nor
        takes the lease back.
        """
        first, firstClock = self.lease("a")
        second, _ = self.lease("b")
        first.acquire(lambda: self.held.append("a"))
        second.acquire(lambda: self.held.append("b"))
        self.advance(2)
        self.advance(TTL + POLL + 0.25, paused=[firstClock])
        self.assertEqual(self.held, ["a", "b"])
        self.assertTrue(first.held)
        # Continued: its clock has moved on meanwhile, its timers are late.
        firstClock.advance(TTL + POLL + 0.25)
        self.assertFalse(first.held)
        self.assertEqual(self.lost, ["a"])
        self.advance(10)
        self.assertEqual(self.held, ["a", "b"])
        self.assertTrue(second.held)
        self.assertEqual(self.redis.get(second.key), second.token)

    def test_renewalFindsAnotherHolder(self):
        """
        A renewal that finds another token (the lease expired and was taken
        while this process's timers ran late) loses the lease at once.
        """
        lease, _ = self.lease("a")
        lease.acquire(lambda: None)
        self.redis.set(lease.key, "7 other", 3000)
        with capturedLogs() as events:
            self.advance(RENEW)
        self.assertFalse(lease.held)
        self.assertEqual(self.lost, ["a"])
        self.assertIn(
            "epoch 7", [e for e in events if "Lost the lease" in e["log_format"]][0]["why"]
        )

    def test_renewalFails(self):
        """
        A renewal that fails (Redis unreachable) loses the lease at once: it
        cannot be known to be held.
        """
        lease, _ = self.lease("a")
        lease.acquire(lambda: None)
        self.redis.failing = True
        self.advance(RENEW)
        self.assertFalse(lease.held)
        self.assertEqual(self.lost, ["a"])

    def test_renewalUnanswered(self):
        """
        Renewals that get no answer (a silent Redis) lose the lease when TTL
        has passed since the last one answered was sent, before another
        could take it.
        """
        lease, _ = self.lease("a")
        lease.acquire(lambda: None)
        self.advance(RENEW)
        self.redis.silent = True
        self.advance(TTL - 0.25)
        self.assertTrue(lease.held)
        self.advance(0.25)
        self.assertFalse(lease.held)
        self.assertEqual(self.lost, ["a"])

    def test_expiredButNotTakenIsKept(self):
        """
        A renewal that finds the key expired and not taken since (the epoch
        is still its own) takes it back with the same token: nobody else
        connected meanwhile.
        """
        lease, _ = self.lease("a")
        lease.acquire(lambda: None)
        token = lease.token
        del self.redis.values[lease.key]
        self.advance(RENEW)
        self.assertTrue(lease.held)
        self.assertEqual(self.redis.get(lease.key), token)

    def test_unreachableRedisStandsBy(self):
        """
        A process that cannot reach Redis does not connect: it stands by
        and takes the lease once Redis answers.
        """
        self.redis.failing = True
        lease, _ = self.lease("a")
        lease.acquire(lambda: self.held.append("a"))
        self.advance(3)
        self.assertEqual(self.held, [])
        self.redis.failing = False
        self.advance(POLL)
        self.assertEqual(self.held, ["a"])

    def test_releaseWhileStandingBy(self):
        """
        A standby that is stopped stops trying, leaves the holder's lease
        alone, and leaves no call scheduled.
        """
        first, _ = self.lease("a")
        second, secondClock = self.lease("b")
        first.acquire(lambda: None)
        second.acquire(lambda: self.fail("took the lease"))
        second.release()
        self.assertEqual(secondClock.getDelayedCalls(), [])
        self.assertEqual(self.redis.get(first.key), first.token)


class ScriptTests(unittest.TestCase):
    """
    The lease's Lua scripts on a real Redis.
    """

    @defer.inlineCallbacks
    def setUp(self):
        server = yield startRedis(self)
        self.redis = connect(server.url)
        self.addCleanup(self.redis.disconnect)
        self.keys = ["clientproxy:c:lease", "clientproxy:c:lease-epoch"]

    def take(self, nonce, ms=3000):
        return self.redis.eval(TAKE, keys=self.keys, args=[nonce, ms])

    def renew(self, token, ms=3000):
        return self.redis.eval(RENEW_SCRIPT, keys=self.keys, args=[token, ms])

    @defer.inlineCallbacks
    def test_scripts(self):
        """
        Taking is refused while another holds the lease and idempotent for
        its holder; renewing works with the holder's token alone, and takes
        an expired lease back only if nobody took it since; releasing needs
        the token.
        """
        self.assertEqual((yield self.take("a")), [1, "1 a"])
        self.assertEqual((yield self.take("a")), [1, "1 a"])
        self.assertEqual((yield self.take("b")), [0, "1 a"])
        self.assertEqual((yield self.renew("1 a")), 1)
        self.assertEqual((yield self.renew("1 b")), "1 a")
        ttl = yield self.redis.execute("PTTL", self.keys[0])
        self.assertGreater(ttl, 2000)
        yield self.redis.execute("DEL", self.keys[0])
        self.assertEqual((yield self.renew("1 a")), 1)
        self.assertEqual((yield self.redis.eval(RELEASE, keys=self.keys[:1], args=["1 b"])), 0)
        self.assertEqual((yield self.redis.eval(RELEASE, keys=self.keys[:1], args=["1 a"])), 1)
        self.assertEqual((yield self.take("b")), [1, "2 b"])
        yield self.redis.execute("DEL", self.keys[0])
        self.assertIsNone((yield self.renew("1 a")))
        self.assertEqual((yield self.take("c", ms=50)), [1, "3 c"])
        yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual((yield self.take("a")), [1, "4 a"])
        self.assertEqual((yield self.renew("3 c")), "4 a")


class LeasedComponentTests(unittest.TestCase):
    """
    A proxy with C{--lease} connects only while it holds the lease.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.redis = MemoryRedis(self.reactor)
        self.other = Lease(self.redis, COMPONENT, self.reactor)
        self.other.acquire(lambda: None)
        store = Store(":memory:")
        self.addCleanup(store.close)
        handlers = makeHandlers(COMPONENT, "svc@example.org", self.reactor, store)
        self.lease = Lease(self.redis, COMPONENT, self.reactor)
        self.proxy = ProxyComponent(
            "127.0.0.1", 5347, COMPONENT, "s", handlers, self.reactor, standby=self.lease
        )
        self.proxy.startService()
        self.addCleanup(stopProxy, self.proxy)

    def test_standsByThenConnectsThenStandsDown(self):
        """
        While another holds the lease the proxy does not connect, and
        /readyz and the link state say it stands by; once the lease is
        free it connects; when it loses it, its connection is dropped at
        once and not made again until the lease is its own again.
        """
        reactor = self.reactor
        reactor.advance(POLL * 5)
        self.assertEqual(reactor.tcpClients, [])
        self.assertEqual(self.proxy.stats.link, STANDBY)
        ready, report = readiness([self.proxy])
        self.assertFalse(ready)
        self.assertIn(
            "the lease in Redis held (another process holds it: standing by)",
            report["proxies"][COMPONENT]["unmet"],
        )
        self.other.release()
        reactor.advance(POLL)
        self.assertEqual(len(reactor.tcpClients), 1)
        # The lease is taken by another (this process's lease expired).
        self.redis.set(self.lease.key, "9 other")
        reactor.advance(RENEW)
        self.assertFalse(self.lease.held)
        self.assertEqual(self.proxy.stats.link, STANDBY)
        self.assertFalse(self.proxy.factory.continueTrying)
        reactor.advance(30)
        self.assertEqual(len(reactor.tcpClients), 1)
        del self.redis.values[self.lease.key]
        reactor.advance(POLL)
        self.assertTrue(self.lease.held)
        self.assertEqual(len(reactor.tcpClients), 2)
        self.assertTrue(self.proxy.factory.continueTrying)

    def handshake(self):
        """
        The server accepts the proxy's connection and its handshake.
        """
        xs = self.proxy.factory.buildProtocol(None)
        xs.makeConnection(StringTransport())
        xs.dataReceived(HEADER % (COMPONENT.encode(),) + b"<handshake/>")

    def test_handsBackWhenTheServerCannotBeReached(self):
        """
        A holder that has not completed a handshake with the server within
        LEASE_UNUSED seconds of taking the lease lets it go, and leaves it to
        the others for LEASE_PAUSE seconds: a standby that may reach the
        server takes it.
        """
        self.other.release()
        self.reactor.advance(POLL)
        self.assertTrue(self.lease.held)
        self.reactor.advance(LEASE_UNUSED - 1)
        self.assertTrue(self.lease.held)
        third = Lease(self.redis, COMPONENT, self.reactor)
        self.addCleanup(third.release)
        third.acquire(lambda: None)
        self.reactor.advance(1)
        self.assertFalse(self.lease.held)
        self.assertEqual(self.proxy.stats.link, STANDBY)
        self.reactor.advance(POLL)
        self.assertTrue(third.held)
        for _ in range(120):
            self.reactor.advance(0.25)
        self.assertTrue(third.held)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_keptWhileConnected(self):
        """
        A holder connected to the server keeps the lease.
        """
        self.other.release()
        self.reactor.advance(POLL)
        self.handshake()
        self.assertTrue(self.proxy.authenticated)
        for _ in range(int(LEASE_UNUSED * 3 / 0.25)):
            self.reactor.advance(0.25)
        self.assertTrue(self.lease.held)

    def test_stopReleases(self):
        """
        A proxy stopped while it holds the lease deletes it at once.
        """
        self.other.release()
        self.reactor.advance(POLL)
        self.assertTrue(self.lease.held)
        self.proxy.stopService()
        self.assertIsNone(self.redis.get(self.lease.key))
