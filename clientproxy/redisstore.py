# -*- test-case-name: tests.test_redisstore -*-
"""
The queue and the subscribers of one component in Redis (C{--redis URL}),
so that a process on another host that takes the component over (a
standby, see README "Several instances") has them.

It has the interface of L{clientproxy.store.Store}, and one writer at a
time: the server lets one process hold the component (Prosody refuses a
second connection), and that process is the only one that handles its
stanzas. So what the handlers read on the stanza path (the subscribers,
the queue's lengths in all and per sender) is kept in memory and every
change is written through to Redis, in order, on one connection; each
change that touches two keys is one Lua script, so Redis never holds half
of it. The queued messages themselves stay in Redis only (10,000 of 64 KiB
would not fit in memory): L{queued} returns a Deferred. L{recount} (on
every connection to the server) reads it all back, since another process
may have served the component meanwhile.

Redis unreachable: the process goes on serving from what it holds in
memory. The client (txredisapi) reconnects by itself and keeps the writes
made meanwhile, in order, until Redis answers again (a process taking over
before then would not have them); reading the queue for a delivery waits
for it too. A write Redis refuses is logged, once until one succeeds.

Keys, for component C{c}: C{clientproxy:c:subscribers} (a set of bare
JIDs), C{clientproxy:c:queue} (a list of C{sender NUL stanza}, oldest
first: no stanza holds a NUL), C{clientproxy:c:senders} (a hash of queued
messages per sender).
"""

from collections import Counter
from urllib.parse import urlparse

import txredisapi
from twisted.internet import defer
from twisted.logger import Logger

from clientproxy.store import SubscriberCounts

ENQUEUE = """
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
"""

DELIVERED = """
redis.call('LTRIM', KEYS[1], #ARGV, -1)
for _, sender in ipairs(ARGV) do
    if redis.call('HINCRBY', KEYS[2], sender, -1) <= 0 then
        redis.call('HDEL', KEYS[2], sender)
    end
end
"""


def checkURL(url):
    """
    The C{(host, port, database)} of a C{redis://host[:port][/db]} URL.

    @raise ValueError: it is not one.
    """
    parsed = urlparse(url)
    if parsed.scheme != "redis" or not parsed.hostname:
        raise ValueError("not a redis://host:port/db URL: %s" % (url,))
    path = parsed.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the database must be a number: %s" % (url,))
    return parsed.hostname, parsed.port or 6379, int(path or 0)


def connect(url):
    """
    A Redis connection for C{url} (see L{checkURL}) that reconnects by
    itself; commands wait until it is made.
    """
    host, port, db = checkURL(url)
    return txredisapi.lazyConnection(host, port, dbid=db, reconnect=True)


class RedisStore:
    """
    @ivar redis: the txredisapi connection.
    @ivar path: C{None}: no file, so no lock between processes (see
        L{clientproxy.standby.lockFor}).
    """

    log = Logger()
    path = None

    def __init__(self, redis, component):
        self.redis = redis
        prefix = "clientproxy:%s:" % (component,)
        self._subscribersKey = prefix + "subscribers"
        self._queueKey = prefix + "queue"
        self._sendersKey = prefix + "senders"
        self._subscribers = set()
        self._counts = SubscriberCounts()
        self._senders = Counter()
        self._length = 0
        self._failing = False

    def close(self):
        return self.redis.disconnect()

    def _write(self, d):
        def written(result):
            if self._failing:
                self._failing = False
                self.log.info("Redis answers again")
            return result

        def failed(failure):
            if not self._failing:
                self._failing = True
                self.log.error(
                    "Writing to Redis failed ({why}); serving on from memory, and what is not "
                    "written is missing for a process that takes over",
                    why=failure.getErrorMessage(),
                )

        return d.addCallbacks(written, failed)

    def recount(self):
        """
        Read the subscribers and the queue's lengths back from Redis.

        @return: a Deferred that fires once they are read.
        """
        d = defer.gatherResults(
            [
                self.redis.smembers(self._subscribersKey),
                self.redis.hgetall(self._sendersKey),
            ],
            consumeErrors=True,
        )

        def loaded(results):
            subscribers, senders = results
            self._subscribers = set(subscribers)
            self._counts = SubscriberCounts(self._subscribers)
            self._senders = Counter({s: int(n) for s, n in senders.items() if int(n) > 0})
            self._length = sum(self._senders.values())

        def failed(failure):
            self.log.error(
                "Reading the queue and subscribers from Redis failed ({why}); going on with "
                "what this process holds",
                why=failure.getErrorMessage(),
            )

        return d.addCallbacks(loaded, failed)

    def enqueue(self, sender, stanza):
        self._length += 1
        self._senders[sender] += 1
        self._write(
            self.redis.eval(
                ENQUEUE,
                keys=[self._queueKey, self._sendersKey],
                args=[sender, sender + "\0" + stanza],
            )
        )

    def queued(self, limit=-1):
        """
        The oldest queued messages, at most C{limit}, as C{(id, stanza)}:
        a Deferred. The id is the sender: messages leave from the head.
        """
        end = -1 if limit < 0 else limit - 1
        d = self.redis.lrange(self._queueKey, 0, end)
        return d.addCallback(lambda entries: [tuple(e.split("\0", 1)) for e in entries])

    def delivered(self, ids):
        """
        Forget the first C{len(ids)} queued messages (from L{queued}, whose
        ids are their senders).
        """
        for sender in ids:
            self._length -= 1
            self._senders[sender] -= 1
            if self._senders[sender] <= 0:
                del self._senders[sender]
        if ids:
            self._write(
                self.redis.eval(DELIVERED, keys=[self._queueKey, self._sendersKey], args=list(ids))
            )

    def queueLength(self, sender=None):
        if sender is None:
            return self._length
        return self._senders.get(sender, 0)

    def subscribers(self):
        return sorted(self._subscribers)

    def isSubscriber(self, jid):
        return jid in self._subscribers

    def subscriberCount(self, domain=None):
        return self._counts.count(domain)

    def addSubscriber(self, jid):
        if jid not in self._subscribers:
            self._subscribers.add(jid)
            self._counts.add(jid)
            self._write(self.redis.sadd(self._subscribersKey, jid))

    def removeSubscriber(self, jid):
        if jid in self._subscribers:
            self._subscribers.discard(jid)
            self._counts.remove(jid)
            self._write(self.redis.srem(self._subscribersKey, jid))
