# -*- test-case-name: tests.test_redisstore -*-
"""
The queue and the subscribers of one component in Redis (C{--redis URL}),
shared by every process serving the component (see L{clientproxy.state.redis.cluster}
and docs/instances.md), and the Redis plumbing they use.

Several processes write at once, so each change is one Lua script, which
Redis runs alone: a message is queued only if the queue's bounds (checked
in the script) allow it, and a batch of queued messages is taken off the
head of the queue by one process only, so each is delivered once. What the
handlers read on the stanza path (the subscribers, the queue's lengths in
all and per sender) is mirrored in memory: each script publishes what it
changed on the component's channel, and the other processes apply it to
their mirror (the writer has applied it already). The queued messages
themselves stay in Redis only (10,000 of 64 KiB would not fit in memory):
L{queued} returns a Deferred. L{recount} (on every connection to the
server) reads it all back, as the mirror may have missed changes while the
process was away.

Each ENQUEUE and batch taken carries a token, so that one whose reply is
lost (the connection dropped after it ran) is run again, for
L{STORE_RETRY_FOR} seconds, with the same outcome: a message queued once
and said queued; the batch it took. A batch stays in Redis (C{batch}
keys, held in C{clientproxy:c:batches}) until its process says it was
sent (L{RedisStore.delivered}) or gives it back; one held longer than
L{BATCH_HOLD} (its process died while sending it, or lost Redis) goes back
to the head of the queue at the next take by any process: delivered
again, so a process that stalls longer than that while sending may
deliver a batch twice.

Redis unreachable: the process goes on serving from what it holds in
memory. The client (L{clientproxy.state.redis.client}) reconnects by itself and keeps the writes
made meanwhile, in order, until Redis answers again; reading the queue for
a delivery waits for it too. A write Redis refuses is logged, once until
one succeeds.

Keys, for component C{c}: C{clientproxy:c:subscribers} (a set of bare
JIDs), C{clientproxy:c:queue} (a list of C{sender NUL stanza}, oldest
first: no stanza holds a NUL), C{clientproxy:c:senders} (a hash of queued
messages per sender); notices on the channel C{clientproxy:c:events}.
"""

import secrets
from collections import Counter, deque
from itertools import count

from twisted.internet import defer, task
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from zope.interface import implementer

from clientproxy.state.redis.address import parseURL
from clientproxy.state.redis.client import Redis

from clientproxy.state.interfaces import IStore
from clientproxy.state.sqlite import QUEUE_REFUSALS, SubscriberCounts

#: Seconds a message may be retried after a lost reply, and seconds a
#: batch taken but neither delivered nor given back stays out of the queue
#: (its process died, or lost Redis): then it goes back to the head.
STORE_RETRY_FOR = 30.0
BATCH_HOLD = 60.0
#: Seconds between two runs of a script whose reply was lost.
RETRY = 0.1

#: Queue a message if the bounds allow: 1 when the queue is full, 2 when
#: it holds its bound from this sender, 0 when queued. KEYS[3] is the
#: token's: run again after a lost reply, a message queued is not queued
#: twice.
ENQUEUE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local size, perSender = tonumber(ARGV[3]), tonumber(ARGV[4])
if size > 0 and redis.call('LLEN', KEYS[1]) >= size then return 1 end
if perSender > 0 and tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') >= perSender then
    return 2
end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('SET', KEYS[3], '1', 'PX', ARGV[7])
redis.call('PUBLISH', ARGV[5], 'store\0' .. ARGV[6] .. '\0+q\0' .. ARGV[1])
return 0
"""

# Put a held batch back at the head of the queue (KEYS[1]), in order, and
# forget it (KEYS[2]: the senders' counts; KEYS[3]: the held batches).
PUT_BACK = """
local function putBack(batch, channel, origin)
    local entries = redis.call('LRANGE', batch, 0, -1)
    redis.call('DEL', batch)
    redis.call('ZREM', KEYS[3], batch)
    if #entries == 0 then return end
    local senders = {}
    for i = #entries, 1, -1 do
        local entry = entries[i]
        local sender = string.sub(entry, 1, string.find(entry, '\0', 1, true) - 1)
        redis.call('LPUSH', KEYS[1], entry)
        redis.call('HINCRBY', KEYS[2], sender, 1)
        table.insert(senders, sender)
    end
    redis.call('PUBLISH', channel, 'store\0' .. origin .. '\0+q\0' .. table.concat(senders, '\0'))
end
"""

#: Give back to the head of the queue (KEYS[1]) the batches held longer
#: than their hold (their process did not say it delivered them), then
#: take up to ARGV[1] messages off the head into the batch of the token
#: (KEYS[4]), held (KEYS[3]: a sorted set of batches by when they are due
#: back) until L{DELIVERED} or L{GIVE_BACK}. Run again after a lost reply,
#: it returns the batch it took.
TAKE = (
    PUT_BACK
    + """
local held = redis.call('LRANGE', KEYS[4], 0, -1)
if #held > 0 then return held end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for _, batch in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ms)) do
    putBack(batch, ARGV[2], ARGV[3])
end
local entries = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #entries == 0 then return entries end
redis.call('LTRIM', KEYS[1], #entries, -1)
redis.call('ZADD', KEYS[3], ms + tonumber(ARGV[4]), KEYS[4])
local senders = {}
for i, entry in ipairs(entries) do
    redis.call('RPUSH', KEYS[4], entry)
    local sender = string.sub(entry, 1, string.find(entry, '\0', 1, true) - 1)
    senders[i] = sender
    if redis.call('HINCRBY', KEYS[2], sender, -1) <= 0 then
        redis.call('HDEL', KEYS[2], sender)
    end
end
redis.call('PUBLISH', ARGV[2], 'store\0' .. ARGV[3] .. '\0-q\0' .. table.concat(senders, '\0'))
return entries
"""
)

#: A batch was delivered: forgotten.
DELIVERED = """
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], KEYS[2])
"""

#: Put a batch (KEYS[4]) back at the head of the queue, in order.
GIVE_BACK = PUT_BACK + "putBack(KEYS[4], ARGV[1], ARGV[2])\n"

#: Add (ARGV[3] '+') or remove ('-') a subscriber, and say so if it changed.
SUBSCRIBER = """
local changed
if ARGV[3] == '+' then
    changed = redis.call('SADD', KEYS[1], ARGV[4])
else
    changed = redis.call('SREM', KEYS[1], ARGV[4])
end
if changed == 1 then
    redis.call('PUBLISH', ARGV[1], 'store\0' .. ARGV[2] .. '\0' .. ARGV[3] .. 's\0' .. ARGV[4])
end
"""


def checkURL(url):
    """
    The L{RedisAddress} of a C{--redis} URL (see
    L{clientproxy.state.redis.address}).

    @raise ValueError: it is not one, or has parts that would be ignored;
        the message shows the URL without its password.
    """
    return parseURL(url)


#: Every command clientproxy sends to Redis, itself or from its Lua scripts
#: (read from the code: client.py's handshake, the Listener, the Cluster's
#: heartbeat and scripts, requests.py's, lease.py's and this module's scripts); the ACL
#: user of L{aclRules} may run these and no other.
ACL_COMMANDS = (
    # The handshake (ROLE: through Sentinel), the subscriber's pings.
    "auth",
    "ping",
    "select",
    "role",
    # The channels.
    "subscribe",
    "unsubscribe",
    "publish",
    # The scripts (loaded on every connection, then run by their SHA-1),
    # and what they call.
    "script|load",
    "evalsha",
    "exists",
    "del",
    "set",
    "pexpire",
    "time",
    "zadd",
    "zrem",
    "zrangebyscore",
    # The lease (lease.py).
    "get",
    "incr",
    "sadd",
    "srem",
    "smembers",
    "hset",
    "hget",
    "hmget",
    "hdel",
    "hincrby",
    "hgetall",
    "llen",
    "rpush",
    "lpush",
    "lrange",
    "ltrim",
)


def aclRules(component):
    """
    The rules of C{ACL SETUSER} for a user that may do what clientproxy
    serving C{component} needs and nothing else: the commands of
    L{ACL_COMMANDS}, on the keys and channels of L{prefixOf} only (add
    C{on} and C{>password}).
    """
    prefix = prefixOf(component)
    return ["resetkeys", "resetchannels", "~%s*" % (prefix,), "&%s*" % (prefix,), "-@all"] + [
        "+" + command for command in ACL_COMMANDS
    ]


def prefixOf(component):
    """
    The start of every Redis key and channel of C{component}.
    """
    return "clientproxy:%s:" % (component,)


def connect(address, reactor=None, onConnected=None):
    """
    A L{Redis} client for C{address} (a L{RedisAddress}, or a URL: see
    L{checkURL}) that reconnects by itself; commands wait until it is
    connected, or until their deadline. C{onConnected}: see L{Redis}.
    """
    return Redis(address, reactor, onConnected)


class Listener:
    """
    A Redis connection subscribed to channels, that reconnects by itself
    and subscribes again when it does; messages go to C{onMessage(channel,
    message)}. The connection is pinged every half deadline, so a link
    that carries nothing any more (half-open) misses a deadline and is
    made again.

    Messages published while it was down are lost (Redis keeps none): the
    observers of L{whenResubscribed} are told of every new subscription
    after the first, to read back what they may have missed.

    @ivar subscribed: whether the channels have been subscribed on the
        connection that is up (the first made, or a later one).
    @ivar subscriptions: how many connections have subscribed so far.
    """

    def __init__(self, address, onMessage, reactor=None):
        self._channels = set()
        self._onMessage = onMessage
        self._resubscribed = []
        self.subscribed = False
        self.subscriptions = 0
        self._redis = connect(address, reactor, self._connected)

    @property
    def redis(self):
        """
        The L{Redis} client of the connection.
        """
        return self._redis

    def whenResubscribed(self, observer):
        """
        Call C{observer()} each time the channels are subscribed again on a
        new connection.
        """
        self._resubscribed.append(observer)

    @defer.inlineCallbacks
    def _connected(self, connection):
        connection.listen(self._onMessage)
        connection.whenLost(self._lost)
        for channel in sorted(self._channels):
            yield connection.execute("SUBSCRIBE", channel)
        connection.ping(max(0.1, self._redis.address.deadline / 2))
        self.subscribed = True
        self.subscriptions += 1
        if self.subscriptions > 1:
            for observer in self._resubscribed:
                observer()

    def _lost(self):
        self.subscribed = False

    def subscribe(self, channel):
        if channel not in self._channels:
            self._channels.add(channel)
            self._redis.execute("SUBSCRIBE", channel).addErrback(lambda _: None)

    def unsubscribe(self, channel):
        if channel in self._channels:
            self._channels.discard(channel)
            self._redis.execute("UNSUBSCRIBE", channel).addErrback(lambda _: None)

    def disconnect(self):
        return self._redis.disconnect()


@implementer(IStore)
class RedisStore:
    """
    @ivar redis: the L{clientproxy.state.redis.client.Redis} client.
    @ivar origin: this store's id in the notices it publishes.
    @ivar path: C{None}: no file, so no lock between processes (see
        L{clientproxy.ops.standby.lockFor}).
    """

    log = Logger()
    path = None

    def __init__(self, redis, component):
        self.redis = redis
        prefix = prefixOf(component)
        self._subscribersKey = prefix + "subscribers"
        self._queueKey = prefix + "queue"
        self._sendersKey = prefix + "senders"
        self.channel = prefix + "events"
        self.origin = secrets.token_hex(6)
        self._subscribers = set()
        self._counts = SubscriberCounts()
        self._senders = Counter()
        self._length = 0
        self._failing = False
        self._heldKey = prefix + "batches"
        self._tokenPrefix = prefix + "token:"
        self._tokens = count()
        # The tokens of the batches taken and not yet delivered or given
        # back, oldest first (one is delivered at a time).
        self._batches = deque()
        self._reactor = getattr(redis, "reactor", None)

    def _token(self):
        return "%s%s.%x" % (self._tokenPrefix, self.origin, next(self._tokens))

    def _run(self, script, keys, args, until=None):
        """
        Run C{script}; one whose reply is lost (it may have run) is run
        again, the same, for L{STORE_RETRY_FOR} seconds: each script gives
        the same outcome when run again with its token.
        """
        if until is None:
            until = self._reactor.seconds() + STORE_RETRY_FOR
        d = self.redis.eval(script, keys, args)

        def again(failure):
            if (
                self.redis.closed
                or not failure.check(ConnectionLost)
                or self._reactor.seconds() + RETRY >= until
            ):
                return failure
            return task.deferLater(self._reactor, RETRY, self._run, script, keys, args, until)

        return d.addErrback(again)

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
                    "written is missing for the other processes",
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
                self.redis.execute("SMEMBERS", self._subscribersKey),
                self.redis.execute("HGETALL", self._sendersKey),
            ],
            consumeErrors=True,
        )

        def loaded(results):
            subscribers, senders = results
            self._subscribers = set(subscribers)
            self._counts = SubscriberCounts(self._subscribers)
            pairs = zip(senders[::2], senders[1::2])
            self._senders = Counter({s: int(n) for s, n in pairs if int(n) > 0})
            self._length = sum(self._senders.values())

        def failed(failure):
            self.log.error(
                "Reading the queue and subscribers from Redis failed ({why}); going on with "
                "what this process holds",
                why=failure.getErrorMessage(),
            )

        return d.addCallbacks(loaded, failed)

    def noticed(self, message):
        """
        Apply a change another process published (C{store NUL origin NUL
        change NUL arguments}) to the mirror.
        """
        _, origin, change, rest = message.split("\0", 3)
        if origin == self.origin:
            return
        if change == "+q":
            self._queued(rest.split("\0"), 1)
        elif change == "-q":
            self._queued(rest.split("\0"), -1)
        elif change == "+s":
            self._added(rest)
        elif change == "-s":
            self._removed(rest)

    def _queued(self, senders, delta):
        for sender in senders:
            self._length += delta
            count = self._senders[sender] + delta
            if count > 0:
                self._senders[sender] = count
            else:
                del self._senders[sender]

    def enqueue(self, sender, stanza, queueSize=0, queuePerSender=0):
        """
        Queue C{stanza} from C{sender} if the bounds (0: none) allow.

        @return: a Deferred that fires with C{None} once it is queued, or
            with why the queue refused it.
        """
        d = self._write(
            self._run(
                ENQUEUE,
                [self._queueKey, self._sendersKey, self._token()],
                [
                    sender,
                    sender + "\0" + stanza,
                    queueSize,
                    queuePerSender,
                    self.channel,
                    self.origin,
                    int(STORE_RETRY_FOR * 2000),
                ],
            )
        )

        def done(answer):
            if answer is None:
                # Redis is unreachable: the message cannot be kept.
                return "the queue cannot be reached"
            if int(answer):
                return QUEUE_REFUSALS[int(answer)]
            self._queued([sender], 1)

        return d.addCallback(done)

    def queued(self, limit=-1):
        """
        Take the oldest queued messages, at most C{limit}, off the queue,
        as C{(id, stanza)}: a Deferred. Taken, because another process may
        be delivering too: each message goes to one of them, held in Redis
        as a batch until L{delivered} says it was sent (a batch neither
        delivered nor given back within L{BATCH_HOLD} seconds goes back to
        the head: its process died or lost Redis). L{giveBack} returns
        what could not be delivered. One batch at a time.
        """
        token = self._token()
        d = self._run(
            TAKE,
            [self._queueKey, self._sendersKey, self._heldKey, token],
            [
                limit if limit > 0 else 2**31,
                self.channel,
                self.origin,
                int(BATCH_HOLD * 1000),
            ],
        )

        def taken(entries):
            batch = [tuple(entry.split("\0", 1)) for entry in entries]
            if batch:
                self._batches.append(token)
            self._queued([sender for sender, _ in batch], -1)
            return batch

        return d.addCallback(taken)

    def delivered(self, ids):
        """
        The oldest batch from L{queued} was sent: forgotten in Redis.
        """
        if ids and self._batches:
            token = self._batches.popleft()
            self._write(self._run(DELIVERED, [self._heldKey, token], []))

    def giveBack(self, batch):
        """
        Put a batch from L{queued} back at the head of the queue, in order.
        """
        if batch and self._batches:
            token = self._batches.popleft()
            self._queued([sender for sender, _ in batch], 1)
            self._write(
                self._run(
                    GIVE_BACK,
                    [self._queueKey, self._sendersKey, self._heldKey, token],
                    [self.channel, self.origin],
                )
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

    def _added(self, jid):
        if jid not in self._subscribers:
            self._subscribers.add(jid)
            self._counts.add(jid)
            return True
        return False

    def _removed(self, jid):
        if jid in self._subscribers:
            self._subscribers.discard(jid)
            self._counts.remove(jid)
            return True
        return False

    def _changeSubscriber(self, change, jid):
        self._write(
            self.redis.eval(
                SUBSCRIBER,
                keys=[self._subscribersKey],
                args=[self.channel, self.origin, change, jid],
            )
        )

    def addSubscriber(self, jid):
        if self._added(jid):
            self._changeSubscriber("+", jid)

    def removeSubscriber(self, jid):
        if self._removed(jid):
            self._changeSubscriber("-", jid)
