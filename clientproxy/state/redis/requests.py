# -*- test-case-name: tests.test_state -*-
"""
The requests in flight shared by several processes (C{--redis}): any of
them answers any request, exactly once (see L{clientproxy.state.redis.cluster}
for why ejabberd needs this, and docs/instances.md).

Each entry of a process's pending table is also a Redis hash
(C{clientproxy:c:pending:<key>}), written before the request is sent
(L{SharedRequests.record}). Every answer (the reply, wherever it arrives;
the timeout; the resource gone; a shutdown) starts by taking the entry
with one Lua script that deletes it: the process whose take finds it
answers, every other finds nothing and stays silent. A reply is checked
as in a process alone (the entry exists: in time; it comes from the
resource asked) inside the same script. A request waiting in line
(C{--hold}) is written too, with no resource (no reply can match it):
sending it from the line, like any resend, takes it first and writes it
again; a process gone leaves it to another, which serves it from its own
line. The process that added an entry
(its owner) keeps its timer; one that takes it from another tells the
owner, which forgets it. The entries of a process gone are adopted by
another (L{clientproxy.state.redis.cluster}), handed to the observer
registered with L{SharedRequests.whenAdopted}.

A script whose reply is lost (the connection dropped after it was sent:
it may have run) is run again until the request's deadline, and gives the
same outcome: each RECORD carries its entry's token (run again, it finds
its own entry, or that it was taken since: answered elsewhere), each TAKE
its own token (a taken entry is kept, marked with it, for a timeout:
run again, the take is given the entry it took, and any other take finds
nothing). The same token is in the "taken" notice, so that a late notice
leaves alone an entry recorded again since under the same key.

Redis unreachable: a new request is refused with C{service-unavailable}
(wait), since no other process could route its reply; requests in flight
are answered by their owner at their timeout even when it cannot take them
(an answer a process gave just before Redis went away may then come
twice).

Cost: two Redis round trips per request (the entry written before the
request goes out; the take when it is answered), and the request kept in
Redis until its deadline (answered, marked taken, for a timeout).
"""

import secrets
from itertools import count

from twisted.internet import defer, task
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from zope.interface import implementer

from clientproxy.routing.errors import DUPLICATE_ID, UNSHARED
from clientproxy.routing.pending import PendingRequest
from clientproxy.routing.resources import Resource
from clientproxy.state.interfaces import WRONG_RESOURCE, IRequestsInFlight

#: Seconds an entry outlives its deadline in Redis, should nobody take it.
MARGIN = 60.0

#: Seconds between two runs of a script whose reply was lost.
RETRY = 0.1

#: Seconds after Redis was found to have lost its data during which a take
#: that finds nothing looks again: the time every process has to reconnect (at most a second apart, see
#: L{clientproxy.state.redis.client.RECONNECT_MAX}) and write its entries
#: again (L{SharedRequests.recordAgain}), should Redis have lost them.
SETTLE = 3.0

# ARGV: the TTL, then the fields: owner, resource, data, token (ARGV[9]).
# Run again with the same token after a lost reply, it finds its own
# entry (1), or what is left of it once taken (2: answered elsewhere).
# KEYS[3]: this process's id is superseded (3: refused, see cluster.py).
RECORD = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 3 end
local found = redis.call('HMGET', KEYS[1], 'token', 'taker')
if found[1] then
    if found[1] == ARGV[9] then
        if found[2] then return 2 end
        return 1
    end
    if not found[2] then return 0 end
    redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2, 9))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], KEYS[1])
return 1
"""

# ARGV: the sender (or ''), the prefix, this process's id, the take's
# token, the timeout in ms, '1' for a claim (only an entry this id owns:
# one adopted by another since is not this process's to answer). A taken
# entry is kept for a timeout (no deadline is further off), marked with
# the take's token: run again after a lost reply, the take is given the
# entry it took; any other take finds nothing, and a RECORD run again
# finds it answered.
TAKE = """
local found = redis.call('HMGET', KEYS[1], 'owner', 'resource', 'data', 'token', 'taker')
local owner = found[1]
if not owner then return nil end
if found[5] then
    if found[5] == ARGV[4] then return found[3] end
    return nil
end
if ARGV[1] ~= '' and found[2] ~= ARGV[1] then return 0 end
if ARGV[6] == '1' and owner ~= ARGV[3] then return nil end
redis.call('SREM', ARGV[2] .. 'owned:' .. owner, KEYS[1])
redis.call('HSET', KEYS[1], 'taker', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if owner ~= ARGV[3] then
    redis.call('PUBLISH', ARGV[2] .. 'to:' .. owner, 'taken\\0' .. (found[4] or '') .. '\\0' .. KEYS[1])
end
return found[3]
"""


# The epoch of Redis's data (KEYS[1]): set once by the first process to
# reach it, the same for all until Redis loses its data.
EPOCH = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""


@implementer(IRequestsInFlight)
class SharedRequests:
    """
    The requests in flight of one process, shared through Redis with the
    others serving the component.

    @ivar cluster: the L{clientproxy.state.redis.cluster.Cluster}: this
        process's id, its Redis client, whether Redis answers.
    @ivar table: this process's L{clientproxy.routing.pending.PendingTable}.
    """

    def __init__(self, cluster, table):
        self.cluster = cluster
        self.table = table
        # The entries written to Redis and not taken back since, by key, as
        # (entry, its record's token): answering one starts by taking it.
        # The token (in Redis too) tells a take's answer, and a "taken"
        # notice, whether the key was recorded again since.
        self._untaken = {}
        self._tokens = count()
        # A shutdown: lost replies are no longer run again.
        self._stopping = False
        # Records and takes not decided yet: a shutdown waits.
        self._waiting = set()
        # The epoch of Redis's data last seen (L{_epochSeen}), and until
        # when (real time) takes that find nothing look again.
        self._epoch = None
        self._settleBy = None
        # The entries whose record is not decided yet, by key, each with
        # the claims waiting for it (L{claim}).
        self._recording = {}
        self._adopted = None
        # Scripts carry their deadline by Redis's clock (evalInTime).
        cluster.redis.measureClock()
        cluster.serve(self)
        if cluster.redis.connected:
            # Connected already (tests): the next connections are told.
            self._readEpoch()

    def whenAdopted(self, observer):
        """
        Call C{observer(entry)} with each entry taken over from a process
        gone (registered by L{clientproxy.assembly.makeHandlers}).
        """
        self._adopted = observer

    def _redisKey(self, key):
        return self.cluster.prefix + "pending:" + "\0".join(key)

    def keyOf(self, redisKey):
        """
        The table's key of an entry's Redis key.
        """
        return tuple(redisKey[len(self.cluster.prefix) + len("pending:") :].split("\0"))

    def record(self, entry, then, *args):
        """
        Write C{entry}, owned by this process, to Redis; refused if an
        entry with its key is there (the same requester and id in flight
        through another process: C{conflict}), or Redis does not answer
        (C{service-unavailable}: no other process could route its reply).
        """
        cluster = self.cluster
        if not cluster.reachable:
            self._refuse(entry, then, UNSHARED, args)
            return
        token = self._mark(entry)
        d = self._run(entry.deadline, RECORD, *self._recordOf(entry, token))
        cluster.stats.cluster["recorded"] += 1
        # The claims that came while it was undecided: each is told its
        # outcome (1 in Redis; 0, 2 answered elsewhere; 3 or None: nobody
        # else knows of it) and decides then, alone.
        recording = self._recording[entry.key] = (entry, [])

        def decided(outcome):
            if self._recording.get(entry.key) is recording:
                del self._recording[entry.key]
            claims = recording[1]
            if claims and outcome != 1:
                self._forget(entry)
            for claim in claims:
                claim(outcome)
            return claims

        def recorded(written):
            written = int(written)
            if decided(written):
                return
            if written == 3:
                # Not written (this id was superseded): nobody else knows
                # of it, so refused here even if the table forgot it.
                self._forget(entry)
                if self.table.get(entry.key) is entry:
                    self.table.discard(entry.key)
                then(entry, UNSHARED, *args)
                return
            if self.table.get(entry.key) is not entry:
                return
            if written == 1:
                then(entry, None, *args)
            elif written == 2:
                # Run again after a lost reply: taken meanwhile, so
                # answered elsewhere (never sent: nothing more to do).
                self._forget(entry)
                self.table.discard(entry.key)
            else:
                self._refuse(entry, then, DUPLICATE_ID, args)

        def failed(failure):
            cluster.failed(failure, "recording a request")
            if decided(None):
                return
            if self.table.get(entry.key) is entry:
                self._refuse(entry, then, UNSHARED, args)

        self._waitFor(d.addCallbacks(recorded, failed))

    def _waitFor(self, d):
        """
        Count C{d} among the commands a shutdown waits for, until it fires.
        """
        self._waiting.add(d)

        def done(result):
            self._waiting.discard(d)
            return result

        return d.addBoth(done)

    def _recordOf(self, entry, token):
        """
        The keys and arguments of the RECORD of C{entry} with C{token}.
        """
        cluster = self.cluster
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
        ttl = int((max(0.0, entry.deadline - cluster.clock.seconds()) + MARGIN) * 1000)
        keys = [
            self._redisKey(entry.key),
            cluster.prefix + "owned:" + cluster.instanceID,
            cluster.prefix + "superseded:" + cluster.instanceID,
        ]
        args = [ttl, "owner", cluster.instanceID, "resource", entry.resource.jid]
        return keys, args + ["data", data, "token", token]

    def recordAgain(self):
        """
        A new connection to Redis (sent before the commands that waited
        for it): write each entry not taken again, with its token. Redis
        restarted without its data (killed, no persistence) has them back
        before a reply looks for them; one that kept them finds each
        already there, or taken since (answered elsewhere, while this
        process may have missed the notice: forgotten here).
        """
        redis = self.cluster.redis
        self._readEpoch()
        for entry, token in list(self._untaken.values()):
            d = redis.evalInTime(RECORD, *self._recordOf(entry, token))
            d.addCallbacks(
                self._recordedAgain, self.cluster.failed, (entry,), None, ("writing again",)
            )

    def _readEpoch(self):
        d = self.cluster.redis.eval(EPOCH, [self.cluster.prefix + "epoch"], [secrets.token_hex(8)])
        d.addCallbacks(self._epochSeen, self.cluster.failed, errbackArgs=("reading Redis's epoch",))

    def _epochSeen(self, epoch):
        """
        The epoch of Redis's data, read on a new connection: another than
        the last one seen means Redis lost its data (restarted empty), and
        takes that find nothing look again for L{SETTLE} seconds.
        """
        if self._epoch is not None and epoch != self._epoch:
            self._settleBy = self.cluster.redis.reactor.seconds() + SETTLE
            self.cluster.stats.cluster["redis-restarts"] += 1
            self.cluster.log.warn(
                "Redis lost its data (restarted empty?): the requests in flight are written "
                "again; the queue and subscribers it held are gone"
            )
        self._epoch = epoch

    def _recordedAgain(self, written, entry):
        written = int(written)
        if written in (0, 2) and self._isUntaken(entry):
            # Taken since (2), and even recorded again by another (0).
            self._forget(entry)
            if self.table.get(entry.key) is entry:
                self.table.discard(entry.key)

    def _run(self, until, script, keys, args):
        """
        Run C{script}; one whose reply is lost (the connection dropped
        after it was sent: it may have run), or that could not be sent
        (Redis away), is run again, the same, until C{until} (the clock's
        time): each script gives the same outcome when run again with its
        token.
        """
        d = self.cluster.redis.evalInTime(script, keys, args)
        d.addErrback(self._again, until, script, keys, args)
        return d

    def _again(self, failure, until, script, keys, args):
        cluster = self.cluster
        if (
            self._stopping
            or not failure.check(ConnectionLost)
            or cluster.clock.seconds() + RETRY >= until
        ):
            return failure
        cluster.stats.cluster["retried"] += 1
        return self._later(self._run, until, script, keys, args)

    def _later(self, run, *args, delay=RETRY):
        """
        Call C{run(*args)} in C{delay} seconds, unless a shutdown came
        meanwhile (then fail as a lost command does).
        """
        return task.deferLater(self.cluster.redis.reactor, delay, self._unlessStopping, run, args)

    def _unlessStopping(self, run, args):
        if self._stopping:
            raise ConnectionLost("stopping: not run again")
        return run(*args)

    def _refuse(self, entry, then, refusal, args):
        self._forget(entry)
        self.table.discard(entry.key)
        then(entry, refusal, *args)

    def _mark(self, entry, token=None):
        """
        Count C{entry} as written to Redis and not taken since, with its
        record's C{token} (a new one unless given): returned.
        """
        if token is None:
            token = "%s.%x" % (self.cluster.instanceID, next(self._tokens))
        self._untaken[entry.key] = (entry, token)
        return token

    def _isUntaken(self, entry):
        return self._untaken.get(entry.key, (None,))[0] is entry

    def _forget(self, entry):
        if self._isUntaken(entry):
            del self._untaken[entry.key]

    def _take(self, key, sender="", until=None, claim=""):
        """
        Take the entry for C{key} out of Redis, if it is there and (for a
        non-empty C{sender}) was sent to C{sender}: a Deferred firing with
        it as L{record} wrote it, C{None}, or C{0} (sent to another
        resource: it stays). A lost reply is retried until C{until} (by
        default, a timeout from now). A shutdown waits for it.
        """
        if None in key:
            # A reply without an id, or to no encoded address.
            return defer.succeed(None)
        cluster = self.cluster
        if until is None:
            until = cluster.clock.seconds() + self.table.timeout
        keys = [self._redisKey(key)]
        args = [
            sender,
            cluster.prefix,
            cluster.instanceID,
            "%s.t%x" % (cluster.instanceID, next(self._tokens)),
            int(self.table.timeout * 1000) + 1,
            claim,
        ]

        def found(result, delay=RETRY):
            # Found nothing just after Redis was found to have lost its data
            # (restarted empty): the entry's owner may not be back yet to
            # write it again (L{recordAgain}); looked for again, less and
            # less often (an outsider's reply to nothing costs a handful of
            # takes), until every process has had time to reconnect.
            if result is not None or self._stopping or self._settleBy is None:
                return result
            # Real time: how long the others take to reconnect.
            if cluster.redis.reactor.seconds() >= self._settleBy:
                return result
            if cluster.clock.seconds() + delay >= until:
                return result
            cluster.stats.cluster["retried"] += 1
            again = self._later(self._run, until, TAKE, keys, args, delay=delay)
            return again.addCallback(found, delay * 2)

        d = self._run(until, TAKE, keys, args).addCallback(found)
        cluster.stats.cluster["takes"] += 1
        marked = self._untaken.get(key)

        def done(result):
            # Taken, or found gone: nothing of it is left in Redis, unless
            # it was recorded again since (then the marker differs).
            gone = result.__class__ is not Failure and result != 0
            if gone and marked is not None and self._untaken.get(key) is marked:
                del self._untaken[key]
            return result

        return self._waitFor(d.addBoth(done))

    def take(self, key, sender, then, *args):
        def taken(data):
            if data is None:
                then(None, *args)
            elif data == 0:
                then(WRONG_RESOURCE, *args)
            else:
                then(self._local(key, data), *args)

        table = self.table
        if len(self._waiting) >= table.maxPending + table.maxPendingFromTarget:
            # More replies waiting on Redis than this process could hold
            # requests (Redis away, and replies keep coming: anyone may send
            # one): this one is not looked for, and is dropped as a reply
            # to nothing; a real one's request is answered at its timeout.
            self.cluster.stats.cluster["takes-refused"] += 1
            then(None, *args)
            return
        # Failed past its retries: the reply is dropped; the entry is
        # answered at its timeout by its owner.
        self._take(key, sender).addCallbacks(taken, self.cluster.failed, errbackArgs=("a take",))

    def _local(self, key, data):
        """
        The entry for C{key}, just taken from Redis: this process's own, or
        one built from C{data} (another process added it).
        """
        entry = self.table.get(key)
        if entry is None:
            return self.entryFrom(key, data)
        return entry

    def claim(self, entry, anyway, then, *args):
        """
        See L{IRequestsInFlight.claim}. Redis away, the take is run again
        until Redis answers: with C{anyway}, until the entry has expired
        in Redis (L{MARGIN} past its deadline: nobody can take it from
        there any more), then answered; but a process that stops leaves it
        in Redis, unanswered, for another to adopt (answering it too could
        answer it twice).
        """
        if not self._isUntaken(entry):
            then(entry, *args)
            return
        recording = self._recording.get(entry.key)
        if recording is not None and recording[0] is entry:
            # Its record is not decided yet (Redis away): whether another
            # process can answer it depends on it.
            recording[1].append(
                lambda outcome: self._claimRecorded(outcome, entry, anyway, then, args)
            )
            return
        cluster = self.cluster

        def taken(data):
            if data:
                then(entry, *args)
            else:
                cluster.stats.cluster["answered-elsewhere"] += 1

        def failed(failure):
            cluster.failed(failure, "taking a request")
            if not anyway:
                return
            self._forget(entry)
            if self._stopping:
                cluster.stats.cluster["left"] += 1
            else:
                then(entry, *args)

        until = entry.deadline + (MARGIN + 1.0 if anyway else 0.0)
        self._take(entry.key, "", until, "1").addCallbacks(taken, failed)

    def _claimRecorded(self, outcome, entry, anyway, then, args):
        """
        The record of C{entry}, which a claim waited for, was decided with
        C{outcome} (see L{record}).
        """
        if outcome == 1:
            self.claim(entry, anyway, then, *args)
        elif outcome in (0, 2):
            self.cluster.stats.cluster["answered-elsewhere"] += 1
        else:
            # Not in Redis: nobody else can answer it.
            then(entry, *args)

    def settled(self):
        """
        A shutdown: a script whose reply was lost is not run again; one
        waiting for Redis to be reached is given up at once (never sent,
        it never runs); an entry a take was for stays in Redis, for
        another process to adopt once this one is gone.
        """
        self._stopping = True
        cluster = self.cluster
        left = len(self._waiting)
        if left and not cluster.redis.connected:
            cluster.log.warn(
                "Stopping with Redis away: {count} commands for requests in flight given up; "
                "what was in Redis is left there, for another process to answer once Redis is "
                "back",
                count=left,
            )
            cluster.redis.giveUpWaiting()
        return defer.DeferredList(list(self._waiting))

    def connectionLost(self):
        """
        The others take these over (L{clientproxy.state.redis.cluster}):
        forgotten here, unanswered.
        """
        self._untaken.clear()
        self.table.discardAll()

    def superseded(self):
        """
        Another process counted this one gone and took its entries over
        (L{clientproxy.state.redis.cluster.Cluster._superseded}): they are
        the adopter's to answer, forgotten here unanswered.
        """
        self._untaken.clear()
        self.table.discardAll()

    def takenElsewhere(self, notice):
        """
        Another process answered this process's entry: forgotten here,
        unless its key was recorded again since (C{notice}, the token of
        the record taken and the Redis key, is then late: the new entry
        stays, with its timer).
        """
        token, _, redisKey = notice.partition("\0")
        key = self.keyOf(redisKey)
        marked = self._untaken.get(key)
        if marked is not None:
            if marked[1] != token:
                return
            del self._untaken[key]
        self.table.discard(key)

    def knows(self, redisKey, token):
        """
        Whether the entry of C{redisKey} recorded with C{token} is one this
        process holds, not taken.
        """
        marked = self._untaken.get(self.keyOf(redisKey))
        return marked is not None and marked[1] == token

    def adopt(self, redisKey, data, token):
        """
        This process took over an entry of a process gone (its timer starts
        here), recorded with C{token}: handed to the observer, to be
        answered once taken.
        """
        entry = self.entryFrom(self.keyOf(redisKey), data)
        self._mark(entry, token)
        self._adopted(entry)

    def entryFrom(self, key, data):
        """
        A L{PendingRequest} for C{key} from an entry as L{record} wrote it:
        the resources named are this process's own objects when it knows
        them.
        """
        resources = self.cluster.resources
        jid, requester, stanzaID, via, resendable, deadline, tried, request = data.split("\0", 7)
        line = self.table.line
        if line is not None and jid == line.jid:
            # It was waiting in its process's line (--hold).
            resource = line
        else:
            resource = resources.get(jid) or Resource(jid, jid.partition("/")[2])
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
            known = (resources.get(j) for j in tried.split("\1"))
            entry.tried = tuple(r for r in known if r is not None)
        return entry
