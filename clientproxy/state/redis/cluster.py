# -*- test-case-name: tests.test_cluster -*-
"""
Several active processes for one component (C{--redis URL}): any of them
answers any request, exactly once.

ejabberd spreads the stanzas for one component over all its connections
(at random by default): the reply to a request one process forwarded, the
target's presence and the answers to the component's own queries reach
any of them. So the processes share, through Redis:

 - B{The requests in flight}: L{clientproxy.state.redis.requests}.
 - B{What they learn of the target's resources} (presence, refusals):
   L{clientproxy.state.redis.facts}.
 - B{The queue and the subscribers}: L{clientproxy.state.redis.store}.
 - B{Replies to the component's own queries} (keepalive pings, disco#info)
   carry the asking process's id in their stanza id (L{StanzaIDs}); one
   that reaches another process is passed on to it, and handled there as
   if its server had delivered it (a stanza meant for it, not a fact).
   One that nobody receives (that process is gone) is handled where it
   arrived: a peer's reply to a request of the target is taken from Redis
   there, whichever process adopted the request.

This module holds what makes the processes one: each has an id, new on
every connection to the server, and keeps a key C{alive:<id>} that
expires L{TTL} seconds after its last heartbeat. Every second each process
looks for ids whose key has expired (a process killed, or one that lost
its connection, which drops its key at once) and takes their entries
over, one process alone by one Lua script: a C{get} from outside is sent
again to a resource (it is safe to repeat), a C{set} is answered
C{recipient-unavailable}, a request of the target to a peer waits on for
the peer's reply. Deadlines are wall-clock time, so the hosts' clocks must
agree (NTP). Everything the processes tell each other goes through one
channel per component and one per process, read by L{Cluster._onMessage}.

Redis unreachable (a heartbeat unanswered for a whole interval): new
requests are refused (L{clientproxy.state.redis.requests}); the queue and
subscribers behave as L{clientproxy.state.redis.store} says. The client
reconnects by itself.
"""

import secrets

from twisted.internet import defer, task
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from wokkel.subprotocols import XMPPHandler

from clientproxy.state.redis.store import prefixOf
from clientproxy.xmpp.stanzas import REPLY_TYPES, StanzaIDs, bareOf
from clientproxy.xmpp.writer import parseStanza, toXml

#: Seconds after its last heartbeat before a process counts as gone.
TTL = 3.0
#: Seconds between heartbeats, and between looks for processes gone.
HEARTBEAT = 1.0
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
                local found = redis.call('HMGET', key, 'data', 'token')
                table.insert(adopted, found[1])
                table.insert(adopted, found[2] or '')
            end
        end
        redis.call('DEL', prefix .. 'owned:' .. id)
        redis.call('SREM', prefix .. 'instances', id)
        redis.call('SET', prefix .. 'superseded:' .. id, '1', 'PX', ARGV[3])
    end
end
return {gone, adopted}
"""

#: The entries this process owns and that are not taken (KEYS: its owned
#: set; ARGV: its id), as ADOPT returns them: read back after an adoption
#: whose reply was lost. Only those recorded by another process (their
#: token starts with its id): one recorded here, and unknown here, was
#: given up here (a record refused after its replies were lost), answered.
ORPHANS = """
local found = {}
local mine = ARGV[1] .. '.'
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local entry = redis.call('HMGET', key, 'owner', 'data', 'token', 'taker')
    local token = entry[3] or ''
    if entry[1] == ARGV[1] and not entry[4] and string.sub(token, 1, #mine) ~= mine then
        table.insert(found, key)
        table.insert(found, entry[2])
        table.insert(found, token)
    end
end
return found
"""

#: Milliseconds a process counted gone is remembered as superseded: should
#: it come back (it was paused, not dead), its heartbeat finds out.
SUPERSEDED_FOR = 24 * 3600 * 1000
#: One heartbeat (KEYS: alive, instances, superseded; ARGV: TTL in ms,
#: id): 1, and nothing renewed, when this id was counted gone meanwhile.
BEAT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 0
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
    @ivar requests: the L{clientproxy.state.redis.requests.SharedRequests}
        told of entries another process took, and of those adopted.
    @ivar facts: the L{clientproxy.state.redis.facts.SharedFacts} told of
        the facts the others learnt.
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
        self.requests = self.facts = None
        self._handingOver = False
        self.reachable = True
        self._beatAnswered = True
        self._lookAfter = 0
        # An adoption's reply was lost: what it took is read back.
        self._orphans = False
        self._beat = task.LoopingCall(self._heartbeat)
        self._beat.clock = clock
        self.listener = listen(self._onMessage)
        self.listener.subscribe(self.events)
        self._newID()
        self._resyncs = []
        self._resyncing = False
        whenResubscribed = getattr(self.listener, "whenResubscribed", None)
        if whenResubscribed is not None:
            whenResubscribed(self.resync)

    def serve(self, requests):
        """
        Tell C{requests} (L{clientproxy.state.redis.requests.SharedRequests})
        of the entries other processes take and of those adopted.
        """
        self.requests = requests
        self.redis.whenConnected(requests.recordAgain)

    @property
    def synced(self):
        """
        Whether the channels are subscribed and what was published while
        they were not has been read back (L{resync}).
        """
        return not self._resyncing and getattr(self.listener, "subscribed", True)

    def whenResyncing(self, step):
        """
        Call C{step()} (which may return a Deferred) on each L{resync}.
        """
        self._resyncs.append(step)

    def resync(self):
        """
        The channels were subscribed again on a new connection: what the
        others published meanwhile is lost (Redis keeps no message), so
        read back what may have changed: the store's counts
        (L{clientproxy.state.redis.store.RedisStore.recount}) and what the
        steps registered with L{whenResyncing} do (a presence probe of the
        target, whose answers are published as facts for all). The process
        counts as ready again once they are done.
        """
        self.log.info(
            "Redis channels subscribed again: reading back the queue and subscribers, probing "
            "the target's presence"
        )
        self._resyncing = True
        steps = [self.store.recount()] if self.store is not None else []
        steps += [defer.maybeDeferred(step) for step in self._resyncs]

        def done(_):
            self._resyncing = False

        return defer.DeferredList(steps, consumeErrors=True).addBoth(done)

    def hear(self, facts):
        """
        Tell C{facts} (L{clientproxy.state.redis.facts.SharedFacts}) what
        the other processes learnt.
        """
        self.facts = facts

    def _newID(self):
        old = self.instanceID
        if old is not None:
            self.listener.unsubscribe(self.prefix + "to:" + old)
        self.instanceID = secrets.token_hex(6)
        self.ids.prefix = self.instanceID + "."
        self.listener.subscribe(self.prefix + "to:" + self.instanceID)

    # The connection to the server.

    def connectionInitialized(self):
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
        waits = [self.listener.disconnect()]
        if self.redis.connected:
            # Redis away, the key expires by itself within TTL: the stop
            # does not wait for a command's deadline.
            waits.append(self.redis.execute("DEL", self.prefix + "alive:" + self.instanceID))
        return defer.gatherResults(waits, consumeErrors=True).addErrback(lambda _: None)

    def _heartbeat(self):
        if not self._beatAnswered:
            # The last heartbeat has had no answer for a whole interval.
            self._reachable(False)
            return
        self._beatAnswered = False

        beating = self.instanceID

        def answered(superseded):
            self._beatAnswered = True
            self._reachable(True)
            if int(superseded) and beating == self.instanceID:
                self._superseded()

        def refused(failure):
            self._beatAnswered = True
            self._reachable(False)
            self.failed(failure, "the heartbeat")

        # Alive and a member at once (one script): a member every time,
        # since another may have counted it gone while Redis was away;
        # neither if another took its requests over meanwhile.
        prefix = self.prefix
        d = self.redis.eval(
            BEAT,
            [prefix + "alive:" + beating, prefix + "instances", prefix + "superseded:" + beating],
            [int(TTL * 1000), beating],
        )
        d.addCallbacks(answered, refused)
        self.redis.checkClock()
        if self._orphans:
            self._findOrphans(beating)
        if self.clock.seconds() >= self._lookAfter:
            self._lookForGone(beating)

    def _lookForGone(self, beating):
        """
        Take over the requests of the processes gone (L{ADOPT}). Should its
        reply be lost (it may have run), what it took is found again at the
        next heartbeat (L{ORPHANS}).
        """
        d = self.redis.evalInTime(ADOPT, keys=[], args=[self.prefix, beating, SUPERSEDED_FOR])
        d.addCallback(self._adopted)

        def lost(failure):
            if failure.check(ConnectionLost):
                self._orphans = True
            self.failed(failure, "looking for processes gone")

        d.addErrback(lost)

    def _findOrphans(self, beating):
        """
        Read back the entries Redis says this process owns and it does not
        know of (an adoption whose reply was lost), and adopt them.
        """
        self._orphans = False
        d = self.redis.eval(ORPHANS, [self.prefix + "owned:" + beating], [beating])

        def found(flat):
            if beating == self.instanceID:
                self._adopted([[], flat], orphans=True)

        def lost(failure):
            self._orphans = True
            self.failed(failure, "reading back adopted requests")

        d.addCallbacks(found, lost)

    def _superseded(self):
        """
        Another process counted this one gone (it was paused longer than
        L{TTL}: a stall, a long GC, a frozen VM) and took its requests
        over: they are no longer this process's to answer. It forgets
        them, and goes on with a new id (its ownership's new epoch); the
        old one's entries are answered by the adopter, and its takes of
        them find nothing (L{clientproxy.state.redis.requests}).
        """
        self.stats.cluster["superseded"] += 1
        self.log.warn(
            "Redis: this process ({id}) was counted gone (paused longer than {ttl} s) and its "
            "requests taken over by another; going on with a new id",
            id=self.instanceID,
            ttl=TTL,
        )
        if self.requests is not None:
            self.requests.superseded()
        self._newID()
        self._lookAfter = self.clock.seconds() + TTL

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
        Count and log a Redis command that failed; C{what} it was for. One
        may fail for each request an outsider sends (while Redis stalls,
        before a heartbeat says so): the line is written at most once an
        interval for each C{what}, with the count of those not written.
        """
        self.stats.cluster["redis-errors"] += 1
        unlogged = self.stats.throttle("redis:" + what)
        if unlogged is not None:
            self.log.warn(
                "Redis: {what} failed: {why} ({unlogged} more such failures since the last "
                "such line)",
                what=what,
                why=failure.getErrorMessage(),
                unlogged=unlogged,
            )

    def _adopted(self, result, orphans=False):
        gone, flat = result
        if gone:
            self.log.info(
                "Processes gone: {gone}; taking over their {count} requests in flight",
                gone=", ".join(gone),
                count=len(flat) // 3,
            )
        for redisKey, data, token in zip(flat[::3], flat[1::3], flat[2::3]):
            if orphans and self.requests.knows(redisKey, token):
                continue
            self.stats.cluster["adopted"] += 1
            self.requests.adopt(redisKey, data, token)

    # What is published.

    def publish(self, channel, *parts):
        d = self.redis.execute("PUBLISH", channel, "\0".join(parts))
        d.addErrback(self.failed, "publishing")
        return d

    def _onIQ(self, iq):
        # On the path of every IQ: the common case leaves at the first test.
        if iq.attributes.get("to") != self.component or self._handingOver:
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
            if self.policy is not None and self.policy.admit(sender, iq) is not None:
                return
        iq.handled = True
        self.stats.cluster["passed-on"] += 1
        xml = toXml(iq)

        def heard(receivers):
            # Nobody listens on the owner's channel: the owner is gone (its
            # requests adopted by another, or about to be). Handled here
            # then: a reply to a request of the target, shared in Redis, is
            # taken by the dispatcher as if it had come here first; one to
            # the owner's own query finds nothing and is dropped.
            if not receivers:
                self._handOver(parseStanza(xml))

        self.publish(self.prefix + "to:" + owner, "iq", xml).addCallback(heard)

    def _onMessage(self, channel, message):
        kind, _, rest = message.partition("\0")
        try:
            if kind == "fact":
                # While not connected to the server (before the first
                # connection, or between two), this process acts on no
                # fact: it learns the target's resources from the probe
                # when it connects, and acts on their arrival then.
                origin, _, fact = rest.partition("\0")
                if origin != self.instanceID and self.xmlstream is not None:
                    self.facts.told(origin, fact)
            elif kind == "iq":
                self._handOver(parseStanza(rest))
            elif kind == "taken":
                self.requests.takenElsewhere(rest)
            elif kind == "store" and self.store is not None:
                self.store.noticed(message)
        except Exception:
            self.log.failure("Handling a message from another process failed: {kind}", kind=kind)

    def _handOver(self, iq):
        """
        Handle C{iq}, a reply to this process's own query that the server
        delivered to another process, as if the server had delivered it
        here.
        """
        xs = self.xmlstream
        if xs is None:
            return
        self._handingOver = True
        try:
            xs.onElement(iq)
        finally:
            self._handingOver = False
