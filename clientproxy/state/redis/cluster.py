# -*- test-case-name: tests.test_cluster -*-
"""
Several active processes for one component (C{--redis URL}): any of them
answers any request, exactly once.

ejabberd spreads the stanzas for one component over all its connections
(at random by default): the reply to a request one process forwarded, the
target's presence and the answers to the component's own queries reach
any of them. So the processes share, through Redis:

 - B{The requests in flight.} Each entry of the pending table is also a
   Redis hash (C{clientproxy:c:pending:<key>}), written before the request
   is sent. Every answer (the reply, wherever it arrives; the timeout; the
   resource gone; a shutdown) starts by taking the entry with one Lua
   script that deletes it: the process whose take finds it answers, every
   other finds nothing and stays silent, so each request gets exactly one
   answer. A reply is checked as today (the entry exists: in time; it comes
   from the resource asked) inside the same script. The forwarded request
   keeps the requester's id and encoded resource. The process that added an
   entry (its owner) keeps its timer; one that takes it from another tells
   the owner, which forgets it.
 - B{The target's presence.} A process that receives presence of the
   target publishes it; the others handle it as if they had received it,
   so they all hold the same resources, and learn the same features. The
   service's own presence and the delivery of the queue follow the
   process that received the presence, so they happen once. Refusals
   learnt by one process are published too; affinity then sends a key to
   the same resource from every process (a hash of the key and the
   resources, the same everywhere).
 - B{Replies to the component's own queries} (keepalive pings, disco#info)
   carry the asking process's id in their stanza id (L{StanzaIDs}); one
   that reaches another process is passed on to it.
 - B{The queue and the subscribers}: L{clientproxy.state.redis.store}.

Each process has an id, new on every connection to the server, and keeps a
key C{alive:<id>} that expires L{TTL} seconds after its last heartbeat.
Every second each process looks for ids whose key has expired (a process
killed, or one that lost its connection, which drops its key at once) and
takes their entries over, one process alone by one Lua script: a C{get}
from outside is sent again to a resource (it is safe to repeat), a C{set}
is answered C{recipient-unavailable}, a request of the target to a peer
waits on for the peer's reply. Deadlines are wall-clock time, so the hosts'
clocks must agree (NTP).

Redis unreachable: a new request is refused with C{service-unavailable}
(wait), since no other process could route its reply; requests in flight
are answered by their owner at their timeout even when it cannot take them
(an answer a process gave just before Redis went away may then come
twice); the queue and subscribers behave as
L{clientproxy.state.redis.store} says. The client reconnects by itself.

Cost: two Redis round trips per request (the entry written before the
request goes out; the take when it is answered), and the request kept in
Redis until then.
"""

import secrets

from twisted.internet import defer, task
from twisted.logger import Logger
from wokkel.subprotocols import XMPPHandler

from clientproxy.routing.pending import PendingRequest
from clientproxy.routing.refusals import topicFromText, topicText
from clientproxy.state.redis.store import prefixOf
from clientproxy.routing.resources import Resource
from clientproxy.xmpp.stanzas import REPLY_TYPES, StanzaIDs, bareOf
from clientproxy.xmpp.writer import parseStanza, toXml

#: Seconds after its last heartbeat before a process counts as gone.
TTL = 3.0
#: Seconds between heartbeats, and between looks for processes gone.
HEARTBEAT = 1.0
#: Seconds an entry outlives its deadline in Redis, should nobody take it.
MARGIN = 60.0

#: The presence of the target that changes what a process believes, and so
#: is published to the others; the rest (subscription requests, probes) is
#: answered by the process that received it.
SHARED_PRESENCE = frozenset((None, "unavailable", "error", "subscribed", "unsubscribed"))

RECORD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], KEYS[1])
return 1
"""

TAKE = """
local found = redis.call('HMGET', KEYS[1], 'owner', 'resource', 'data')
local owner = found[1]
if not owner then return nil end
if ARGV[1] ~= '' and found[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[2] .. 'owned:' .. owner, KEYS[1])
if owner ~= ARGV[3] then
    redis.call('PUBLISH', ARGV[2] .. 'to:' .. owner, 'taken\\0' .. KEYS[1])
end
return found[3]
"""

ADOPT = """
local prefix, me = ARGV[1], ARGV[2]
local gone, adopted = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', prefix .. 'instances')) do
    if id ~= me and redis.call('EXISTS', prefix .. 'alive:' .. id) == 0 then
        table.insert(gone, id)
        for _, key in ipairs(redis.call('SMEMBERS', prefix .. 'owned:' .. id)) do
            if redis.call('EXISTS', key) == 1 then
                redis.call('HSET', key, 'owner', me)
                redis.call('SADD', prefix .. 'owned:' .. me, key)
                table.insert(adopted, key)
                table.insert(adopted, redis.call('HGET', key, 'data'))
            end
        end
        redis.call('DEL', prefix .. 'owned:' .. id)
        redis.call('SREM', prefix .. 'instances', id)
    end
end
return {gone, adopted}
"""


class Cluster(XMPPHandler):
    """
    This process's part in the state shared with the others.

    @ivar instanceID: this process's id on the current connection.
    @ivar ids: the L{StanzaIDs} of the requests the component starts; their
        prefix is the id.
    @ivar redis: the L{clientproxy.state.redis.client.Redis} client for commands.
    @ivar listener: the L{clientproxy.state.redis.store.Listener} for the
        channels.
    @ivar onTaken: called with the key of an entry of this process another
        one answered (registered by L{clientproxy.assembly.makeHandlers}).
    @ivar onAdopted: called with each L{PendingRequest} taken over from a
        process gone (registered by L{clientproxy.assembly.makeHandlers}).
    @ivar onRefused: called as C{onRefused(jid, topic, requester)} for a
        refusal another process saw (registered by
        L{clientproxy.assembly.makeHandlers}).
    @ivar onServed: called as C{onServed(jid, topic)} for a refuser another
        process forgot on a result (registered by
        L{clientproxy.assembly.makeHandlers}).
    """

    log = Logger()

    def __init__(
        self, component, target, redis, listen, resources, stats, clock, store=None, policy=None
    ):
        """
        @param listen: called as C{listen(onMessage)}, returns a
            L{clientproxy.state.redis.store.Listener}.
        @param store: the L{clientproxy.state.redis.store.RedisStore}, told what
            the other processes change.
        @param policy: the L{clientproxy.routing.policy.Policy} for outsiders: a
            reply from one that it refuses (over the rate, denied) is not
            passed on, and is left to the dispatcher, which drops it.
        """
        XMPPHandler.__init__(self)
        self.component = component
        self.target = target
        self.redis = redis
        self.resources = resources
        self.stats = stats
        self.clock = clock
        self.store = store
        self.policy = policy
        self.prefix = prefixOf(component)
        self.events = self.prefix + "events"
        # Its prefix is the instance id (_newID), never a random one.
        self.ids = StanzaIDs(prefix="")
        self.instanceID = None
        self.onTaken = self.onAdopted = self.onRefused = self.onServed = None
        self._relaying = False
        self.reachable = True
        self._beatAnswered = True
        self._lookAfter = 0
        self._beat = task.LoopingCall(self._heartbeat)
        self._beat.clock = clock
        self.listener = listen(self._onMessage)
        self.listener.subscribe(self.events)
        self._newID()

    def _newID(self):
        old = self.instanceID
        if old is not None:
            self.listener.unsubscribe(self.prefix + "to:" + old)
        self.instanceID = secrets.token_hex(6)
        self.ids.prefix = self.instanceID + "."
        self.listener.subscribe(self.prefix + "to:" + self.instanceID)

    # The connection to the server.

    def connectionInitialized(self):
        self.xmlstream.addRoute("presence", self._onPresence, priority=3)
        self.xmlstream.addRoute("iq", self._onIQ, priority=3)
        self._beat.start(HEARTBEAT)

    def connectionLost(self, reason):
        """
        The requests this process holds are left to the others: its key is
        dropped at once, so they take them over within a second, and the
        next connection comes with a new id.
        """
        XMPPHandler.connectionLost(self, reason)
        if self._beat.running:
            self._beat.stop()
        d = self.redis.execute("DEL", self.prefix + "alive:" + self.instanceID)
        d.addErrback(self.failed, "leaving")
        self._newID()

    def stop(self):
        """
        Stop for good (the service stops): leave, close the connections.
        """
        if self._beat.running:
            self._beat.stop()
        return defer.gatherResults(
            [
                self.redis.execute("DEL", self.prefix + "alive:" + self.instanceID),
                self.listener.disconnect(),
            ],
            consumeErrors=True,
        ).addErrback(lambda _: None)

    def _heartbeat(self):
        if not self._beatAnswered:
            # The last heartbeat has had no answer for a whole interval.
            self._reachable(False)
            return
        self._beatAnswered = False

        def answered(_):
            self._beatAnswered = True
            self._reachable(True)

        def refused(failure):
            self._beatAnswered = True
            self._reachable(False)
            self.failed(failure, "the heartbeat")

        # Alive first, then a member: a process that looks for processes
        # gone in between must not count this one among them. A member
        # every time: another may have counted it gone while Redis was away.
        d = self.redis.execute(
            "SET", self.prefix + "alive:" + self.instanceID, "1", "PX", int(TTL * 1000)
        )
        d.addCallbacks(answered, refused)
        d = self.redis.execute("SADD", self.prefix + "instances", self.instanceID)
        d.addErrback(self.failed, "the heartbeat")
        if self.clock.seconds() < self._lookAfter:
            return
        d = self.redis.eval(ADOPT, keys=[], args=[self.prefix, self.instanceID])
        d.addCallback(self._adopted)
        d.addErrback(self.failed, "looking for processes gone")

    def _reachable(self, reachable):
        if reachable != self.reachable:
            self.reachable = reachable
            if reachable:
                # The others' heartbeats may not have reached Redis yet:
                # none is counted gone before it has had a TTL to send one.
                self._lookAfter = self.clock.seconds() + TTL
                self.log.info("Redis answers again: taking requests again")
            else:
                self.log.error(
                    "Redis does not answer: new requests are refused with service-unavailable "
                    "until it does"
                )

    def failed(self, failure, what):
        """
        Count and log a Redis command that failed; C{what} it was for.
        """
        self.stats.cluster["redis-errors"] += 1
        self.log.warn("Redis: {what} failed: {why}", what=what, why=failure.getErrorMessage())

    # The shared pending table.

    def redisKey(self, key):
        return self.prefix + "pending:" + "\0".join(key)

    def _keyOf(self, redisKey):
        return tuple(redisKey[len(self.prefix) + len("pending:") :].split("\0"))

    def record(self, entry):
        """
        Write C{entry}, owned by this process, to Redis: a request about to
        be sent, or sent again after this process took it. Refused if an
        entry with its key is there (the same requester and id in flight
        through another process).

        @return: a Deferred that fires with whether it was written.
        """
        # One string, read back whole by a take: a reply of many parts costs
        # the client far more than one of the same length.
        data = "\0".join(
            (
                entry.resource.jid,
                entry.requester,
                entry.stanzaID,
                entry.via or "",
                "1" if entry.resendable else "",
                repr(entry.deadline),
                "\1".join(r.jid for r in entry.tried or ()),
                "" if entry.request is None else entry.request.decode("utf-8"),
            )
        )
        ttl = int((max(0.0, entry.deadline - self.clock.seconds()) + MARGIN) * 1000)
        key = self.redisKey(entry.key)
        d = self.redis.eval(
            RECORD,
            keys=[key, self.prefix + "owned:" + self.instanceID],
            args=[ttl, "owner", self.instanceID, "resource", entry.resource.jid, "data", data],
        )
        self.stats.cluster["recorded"] += 1
        return d.addCallback(lambda written: int(written) == 1)

    def take(self, key, sender=""):
        """
        Take the entry for C{key} out of the shared table, if it is there
        and (for a non-empty C{sender}) was sent to C{sender}.

        @return: a Deferred that fires with the entry as L{record} wrote it
            (a string, for L{entryFrom}), C{None} when there is none, or
            C{0} when it was sent to another resource (and stays).
        """
        d = self.redis.eval(
            TAKE, keys=[self.redisKey(key)], args=[sender, self.prefix, self.instanceID]
        )
        self.stats.cluster["takes"] += 1
        return d

    def entryFrom(self, key, data):
        """
        A L{PendingRequest} for C{key} from a shared entry (as L{record}
        wrote it): the resources named are this process's own objects when
        it knows them.
        """
        jid, requester, stanzaID, via, resendable, deadline, tried, request = data.split("\0", 7)
        resource = self.resources.get(jid) or Resource(jid, jid.partition("/")[2])
        entry = PendingRequest(
            key,
            requester,
            stanzaID,
            via or None,
            request.encode("utf-8") if request else None,
            resendable == "1",
            resource,
            float(deadline),
        )
        if tried:
            known = (self.resources.get(j) for j in tried.split("\1"))
            entry.tried = tuple(r for r in known if r is not None)
        return entry

    def _adopted(self, result):
        gone, flat = result
        if gone:
            self.log.info(
                "Processes gone: {gone}; taking over their {count} requests in flight",
                gone=", ".join(gone),
                count=len(flat) // 2,
            )
        for redisKey, data in zip(flat[::2], flat[1::2]):
            key = self._keyOf(redisKey)
            self.stats.cluster["adopted"] += 1
            entry = self.entryFrom(key, data)
            entry.taken = False
            self.onAdopted(entry)

    # What is published.

    def publish(self, channel, *parts):
        d = self.redis.execute("PUBLISH", channel, "\0".join(parts))
        d.addErrback(self.failed, "publishing")
        return d

    def refused(self, jid, topic, requester):
        """
        Tell the others that resource C{jid} refused C{requester}'s request
        in C{topic} (L{clientproxy.routing.refusals.topicOf}; an empty namespace is
        published as itself).
        """
        self.publish(self.events, "refused", self.instanceID, jid, requester, topicText(topic))

    def served(self, jid, topic):
        """
        Tell the others that resource C{jid} answered a request in C{topic}
        with a result, and was forgotten here as a refuser of it.
        """
        self.publish(self.events, "served", self.instanceID, jid, topicText(topic))

    def _onPresence(self, presence):
        if self._relaying:
            return
        sender = presence.attributes.get("from")
        if sender is not None and bareOf(sender) == self.target:
            if presence.getAttribute("type") in SHARED_PRESENCE:
                self.publish(self.events, "presence", self.instanceID, toXml(presence))

    def _onIQ(self, iq):
        # On the path of every IQ: the common case leaves at the first test.
        if iq.attributes.get("to") != self.component or self._relaying:
            return
        stanzaID = iq.attributes.get("id", "")
        owner, dot, _ = stanzaID.partition(".")
        if not dot or owner == self.instanceID or len(owner) != len(self.instanceID):
            return
        if iq.getAttribute("type") not in REPLY_TYPES:
            return
        sender = iq.getAttribute("from", "")
        if bareOf(sender) != self.target:
            if "@" in sender:
                return
            if self.policy is not None and self.policy.refusal(sender) is not None:
                return
        iq.handled = True
        self.stats.cluster["passed-on"] += 1
        self.publish(self.prefix + "to:" + owner, "iq", toXml(iq))

    def _onMessage(self, channel, message):
        kind, _, rest = message.partition("\0")
        try:
            if kind in ("presence", "refused", "served"):
                origin, _, rest = rest.partition("\0")
                if origin == self.instanceID:
                    return
                if kind == "refused":
                    jid, requester, topic = rest.split("\0", 2)
                    self.onRefused(jid, topicFromText(topic), requester)
                elif kind == "served":
                    jid, topic = rest.split("\0", 1)
                    self.onServed(jid, topicFromText(topic))
                else:
                    self._inject(parseStanza(rest), relayed=True)
            elif kind == "iq":
                self._inject(parseStanza(rest), relayed=False)
            elif kind == "taken":
                self.onTaken(self._keyOf(rest))
            elif kind == "store" and self.store is not None:
                self.store.noticed(message)
        except Exception:
            self.log.failure("Handling a message from another process failed: {kind}", kind=kind)

    def _inject(self, stanza, relayed):
        """
        Handle C{stanza} as if it came from the server. C{relayed}: it is
        presence another process received, which it acts on for all.
        """
        xs = self.xmlstream
        if xs is None:
            return
        self._relaying = True
        self.resources.relaying = relayed
        try:
            xs.onElement(stanza)
        finally:
            self._relaying = False
            self.resources.relaying = False
