"""
Tests for L{clientproxy.state.redis.store} against a real Redis (Debian's
redis-server, a throwaway instance on a loopback port): what one process
writes, another reads back; the queue keeps its order and its counts; with
Redis gone the process serves on from memory, and writes once it is back.
"""

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from clientproxy.state.redis import store as store_module
from clientproxy.state.redis.store import RedisStore, checkURL, connect
from clientproxy.testing.redis import cutAfterRunning, startRedis

COMPONENT = "proxy.example.org"


class RedisStoreTests(unittest.TestCase):
    """
    The Redis store against a real server: what processes share, the queue's
    bounds and order, and serving on while Redis is away.
    """

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.redis = yield startRedis(self)

    def store(self):
        store = RedisStore(connect(self.redis.url), COMPONENT)
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def settle(self, store):
        """
        Wait until Redis has done what C{store} sent it (a command on the
        same connection answers after those before it).
        """
        yield store.redis.execute("PING")

    @defer.inlineCallbacks
    def test_anotherProcessReadsItBack(self):
        """
        Subscribers and the queue written by one store are what another
        store (a process taking over) reads back, counts and order
        included; delivered messages leave from the head.
        """
        first = self.store()
        yield first.recount()
        first.addSubscriber("alice@example.org")
        first.addSubscriber("bob@example.net")
        first.removeSubscriber("bob@example.net")
        for n in range(3):
            yield first.enqueue("alice@example.org", "<message id='%d'/>" % n)
        yield first.enqueue("carol@example.org", "<message id='c'/>")
        self.assertEqual((first.queueLength(), first.queueLength("alice@example.org")), (4, 3))
        yield self.settle(first)

        second = self.store()
        yield second.recount()
        self.assertEqual(second.subscribers(), ["alice@example.org"])
        self.assertEqual(second.subscriberCount("example.org"), 1)
        self.assertTrue(second.isSubscriber("alice@example.org"))
        self.assertEqual((second.queueLength(), second.queueLength("alice@example.org")), (4, 3))
        batch = yield second.queued(2)
        self.assertEqual(
            [stanza for _, stanza in batch], ["<message id='0'/>", "<message id='1'/>"]
        )
        second.delivered([ident for ident, _ in batch])
        self.assertEqual(second.queueLength("alice@example.org"), 1)
        yield self.settle(second)

        third = self.store()
        yield third.recount()
        self.assertEqual((third.queueLength(), third.queueLength("carol@example.org")), (2, 1))
        rest = yield third.queued()
        self.assertEqual([s for _, s in rest], ["<message id='2'/>", "<message id='c'/>"])
        self.assertEqual(third.queueLength(), 0)

    @defer.inlineCallbacks
    def test_boundsAndTaking(self):
        """
        The queue's bounds are checked in Redis, where every process
        queues: a message over them is refused with the reason. A batch is
        taken by one store only; one given back is at the head again, in
        order.
        """
        first, second = self.store(), self.store()
        self.assertIsNone((yield first.enqueue("a@x", "<m1/>", 3, 2)))
        self.assertIsNone((yield second.enqueue("a@x", "<m2/>", 3, 2)))
        refused = yield first.enqueue("a@x", "<m3/>", 3, 2)
        self.assertEqual(refused, "the queue holds its limit from this sender")
        self.assertIsNone((yield second.enqueue("b@x", "<m4/>", 3, 2)))
        self.assertEqual((yield first.enqueue("c@x", "<m5/>", 3, 2)), "the queue is full")
        # One after the other: two connections' commands reach Redis in no
        # fixed order, so sent together either store may take the head.
        taken = yield first.queued(2)
        none = yield second.queued(2)
        self.assertEqual([s for _, s in taken + none], ["<m1/>", "<m2/>", "<m4/>"])
        first.giveBack(taken)
        yield self.settle(first)
        rest = yield second.queued()
        self.assertEqual([s for _, s in rest], ["<m1/>", "<m2/>"])

    @defer.inlineCallbacks
    def test_enqueueReplyLost(self):
        """
        A message whose ENQUEUE reply is lost (the script ran) is run again
        with its token: it is queued once, and the sender is told it was.
        """
        store = self.store()
        yield self.settle(store)
        cutAfterRunning(store.redis)
        self.assertIsNone((yield store.enqueue("a@x", "<m1/>")))
        yield self.settle(store)
        self.assertEqual((yield store.redis.execute("LLEN", store._queueKey)), 1)
        self.assertEqual(store.queueLength(), 1)

    @defer.inlineCallbacks
    def test_batchReplyLost(self):
        """
        A batch whose TAKE reply is lost (the script ran: the messages are
        off the queue) is run again with its token, and is given the
        batch it took; once delivered, it is gone from Redis.
        """
        store = self.store()
        for n in range(3):
            yield store.enqueue("a@x", "<m%d/>" % n)
        yield self.settle(store)
        cutAfterRunning(store.redis)
        batch = yield store.queued(2)
        self.assertEqual([s for _, s in batch], ["<m0/>", "<m1/>"])
        store.delivered([ident for ident, _ in batch])
        yield self.settle(store)
        self.assertEqual((yield store.redis.execute("ZCARD", store._heldKey)), 0)
        rest = yield store.queued()
        self.assertEqual([s for _, s in rest], ["<m2/>"])

    @defer.inlineCallbacks
    def test_batchNotDeliveredGoesBack(self):
        """
        A batch taken and never said delivered (its process died while
        sending it) goes back to the head of the queue, in order, once
        its hold is over: the next take delivers it.
        """
        self.patch(store_module, "BATCH_HOLD", 0.2)
        dying, other = self.store(), self.store()
        for n in range(3):
            yield dying.enqueue("a@x", "<m%d/>" % n)
        batch = yield dying.queued(2)
        self.assertEqual(len(batch), 2)
        self.assertEqual([s for _, s in (yield other.queued(2))], ["<m2/>"])
        other.delivered(["a@x"])
        yield deferLater(reactor, 0.3, lambda: None)
        again = yield other.queued(5)
        self.assertEqual([s for _, s in again], ["<m0/>", "<m1/>"])

    @defer.inlineCallbacks
    def test_redisGone(self):
        """
        With Redis gone, the store serves on from memory; what it writes
        meanwhile waits in the client, in order, and reaches Redis once it
        answers again; a message is queued once Redis has checked the
        queue's bounds.
        """
        store = self.store()
        yield store.recount()
        yield self.redis.stop()
        for n in range(5):
            store.addSubscriber("user%d@example.org" % (n,))
        queued = store.enqueue("alice@example.org", "<message/>")
        self.assertEqual((store.subscriberCount(), store.queueLength()), (5, 0))
        yield self.redis.start()
        self.assertIsNone((yield queued))
        self.assertEqual(store.queueLength(), 1)
        yield self.settle(store)
        other = self.store()
        yield other.recount()
        self.assertEqual((other.subscriberCount(), other.queueLength()), (5, 1))


class URLTests(unittest.TestCase):
    """
    The C{--redis} URL as the store reads it (every form and refusal:
    L{tests.test_redisclient.URLTests}).
    """

    def test_urls(self):
        """
        A C{redis://host[:port][/db]} URL gives host, port (6379 by default)
        and database (0 by default); another scheme, no host, or a database
        that is not a number is a C{ValueError}, so a wrong C{--redis} fails at
        start.
        """
        a = checkURL("redis://10.0.0.1:6380/2")
        self.assertEqual((a.host, a.port, a.db), ("10.0.0.1", 6380, 2))
        a = checkURL("redis://localhost")
        self.assertEqual((a.host, a.port, a.db), ("localhost", 6379, 0))
        for bad in ("http://x", "redis://", "redis://h/x"):
            self.assertRaises(ValueError, checkURL, bad)
