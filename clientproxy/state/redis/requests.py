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
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
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
        # Takes not decided yet: a shutdown waits.
        self._takes = set()
        self._adopted = None
        cluster.serve(self)

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
        d = self._run(
            entry.deadline,
            RECORD,
            [
                self._redisKey(entry.key),
                cluster.prefix + "owned:" + cluster.instanceID,
                cluster.prefix + "superseded:" + cluster.instanceID,
            ],
            [
                ttl,
                "owner",
                cluster.instanceID,
                "resource",
                entry.resource.jid,
                "data",
                data,
                "token",
                token,
            ],
        )
        cluster.stats.cluster["recorded"] += 1

        def recorded(written):
            written = int(written)
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
            if self.table.get(entry.key) is entry:
                self._refuse(entry, then, UNSHARED, args)

        d.addCallbacks(recorded, failed)

    def _run(self, until, script, keys, args):
        """
        Run C{script}; one whose reply is lost (the connection dropped
        after it was sent: it may have run) is run again, the same, until
        C{until} (the clock's time): each script gives the same outcome
        when run again with its token.
        """
        d = self.cluster.redis.eval(script, keys, args)
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
        d = task.deferLater(cluster.redis.reactor, RETRY, cluster.redis.eval, script, keys, args)
        d.addErrback(self._again, until, script, keys, args)
        return d

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
        d = self._run(
            until,
            TAKE,
            [self._redisKey(key)],
            [
                sender,
                cluster.prefix,
                cluster.instanceID,
                "%s.t%x" % (cluster.instanceID, next(self._tokens)),
                int(self.table.timeout * 1000) + 1,
                claim,
            ],
        )
        cluster.stats.cluster["takes"] += 1
        self._takes.add(d)
        marked = self._untaken.get(key)

        def done(result):
            self._takes.discard(d)
            # Taken, or found gone: nothing of it is left in Redis, unless
            # it was recorded again since (then the marker differs).
            gone = result.__class__ is not Failure and result != 0
            if gone and marked is not None and self._untaken.get(key) is marked:
                del self._untaken[key]
            return result

        return d.addBoth(done)

    def take(self, key, sender, then, *args):
        def taken(data):
            if data is None:
                then(None, *args)
            elif data == 0:
                then(WRONG_RESOURCE, *args)
            else:
                then(self._local(key, data), *args)

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
        if not self._isUntaken(entry):
            then(entry, *args)
            return
        if anyway and not self.cluster.reachable:
            self._forget(entry)
            then(entry, *args)
            return

        def taken(data):
            if data:
                then(entry, *args)
            else:
                self.cluster.stats.cluster["answered-elsewhere"] += 1

        def failed(failure):
            self.cluster.failed(failure, "taking a request")
            if anyway:
                self._forget(entry)
                then(entry, *args)

        self._take(entry.key, "", entry.deadline, "1").addCallbacks(taken, failed)

    def settled(self):
        # What is left is answered now (a shutdown): a take whose reply
        # was lost is not run again past its command's deadline.
        self._stopping = True
        return defer.DeferredList(list(self._takes))

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
