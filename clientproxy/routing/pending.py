# -*- test-case-name: tests.test_pending -*-
"""
The pending-request table: every request in flight, and the one owner of
every count of them.

Entries are keyed by C{(encoded resource, stanza id)}, the pair a reply
carries back in its C{to} and C{id}; a request started by a resource of the
target is keyed C{(peer, id it was sent with, REVERSE)}. The two kinds are
counted apart: requests from outside count per requester (bare JID), in
all, and in the L{Resource.pending} of the resource holding them (what the
C{least-pending} strategy weighs); requests from the target count only
against their own bound. So a resource that asks peers is not steered
away from, and the target's requests cannot crowd out outsiders (nor the
reverse).

The table also counts the bytes its entries keep (L{weigh}: the request
as it will be sent again, and the addresses and ids), since entries alone
do not bound memory: each may keep a request of up to C{--max-stanza-size}.
A new request from outside that would take that count over
C{maxPendingBytes} is refused, as is sending one again to a resource whose
longer address would; the target's requests (which keep no request, only
addresses and ids, and have their own bound) and entries adopted from
another process (which must be answered) are counted but never refused:
outsiders cannot keep the target from asking, and the few bytes of each
of the target's entries take little room from them. One requester (bare
JID) may hold the same share of those bytes as of the entries
(C{maxPendingBytes * maxPendingPerRequester / maxPending}: 6.4 MiB by
default), so one account cannot take the whole budget from the others.

Every entry leaves the table through L{PendingTable._finish}, which hands it
to the owner's C{answer} callable exactly once, with the reply or with a
L{StanzaError} (C{remote-server-timeout} once the timeout passes). Waiters
for an empty table (a shutdown) are told only after that answer was
written.

The line (C{--hold}). A request from outside that no resource can serve
when it comes may wait in the table for one, in the line: its entry's
resource is then L{PendingTable.line}, a L{Resource} that stands for no
session (its address is the target's bare JID, so the request as kept is
addressed there, and no reply can match it). A held entry is an entry like
any other: counted once, against the same bounds and bytes, answered once
through L{PendingTable._finish}. It leaves the line when the dispatcher
sends it to a resource (L{PendingTable.reassign}), or when it has waited
L{PendingTable.hold} seconds in line, or its own deadline comes first: it is
then answered with what it would have had at once without the hold
(L{clientproxy.routing.errors.HOLD_PASSED}, or C{HOLD_PASSED_LEFT} for one
put back in line after its resource left). Entries join the line at its end
and wait the same hold, so they are due in line order: the same single
timer serves the line, set for whichever comes first, the oldest deadline
or the head of the line.

Every request gets the same timeout, so deadlines grow in the order
requests are added; the table keeps its entries in that order (a dict keeps
insertion order) and needs a single timer, on an injectable
L{IReactorTime}, for the oldest deadline. When the timeout is changed (a
reload) with requests in flight, that order holds again only once those
have gone; until their last deadline the table scans all its entries when
its timer fires (one reload's worth of extra work, kept off the path of
every request). That is cheaper in time and
memory than a timer per request, and lets tests drive time with
L{twisted.internet.task.Clock}. Entries are plain slotted objects, not
Deferreds: one request, one answer, no callback chain to keep.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.words.protocols.jabber.error import StanzaError

from clientproxy.routing.errors import HOLD_PASSED, HOLD_PASSED_LEFT, TIMEOUT
from clientproxy.xmpp.stanzas import bareOf

#: Marks the keys of requests started by a resource of the target.
REVERSE = "reverse"

#: Default bounds of requests in flight (0: no bound): from outside in all,
#: from one bare JID outside, and started by the target in all.
MAX_PENDING = 10000
MAX_PENDING_PER_REQUESTER = 1000
MAX_PENDING_FROM_TARGET = 10000
#: The default bound of the bytes the entries keep, in all (0: no bound).
MAX_PENDING_BYTES = 64 * 1024 * 1024


class PendingRequest:
    """
    One request in flight. Small on purpose: a busy component holds many.

    @ivar key: C{(encoded, stanzaID)} for a request from outside;
        C{(peer, id it was sent with, REVERSE)} for one started by a
        resource of the target.
    @ivar requester: the full JID that asked, as a string.
    @ivar stanzaID: the id the requester used (and gets its answer with).
    @ivar via: the address the request was sent to, when it was not the
        bare component (answers come from there, RFC 6120 8.1.2.1);
        C{None} otherwise.
    @ivar request: the request as sent to the resource, serialised as
        UTF-8, for a request from outside (it may be sent again to another
        resource); C{None} for one started by the target.
    @ivar resendable: whether it may be sent at once to another resource
        if its resource leaves: true until it has been, once (whether its
        kind allows it is the dispatcher's to say).
    @ivar tried: the resources that refused it, or C{None}.
    @ivar resource: the L{clientproxy.routing.resources.Resource} it concerns: the
        one it was sent to, or the one that started it; the table's
        L{PendingTable.line} while it waits for one.
    @ivar deadline: when it times out, in the table's clock's seconds.
    @ivar weight: the bytes the table counts for it while it is in the
        table (L{weigh} when it was added or last moved).
    @ivar topic: for a request from outside, its
        L{clientproxy.routing.refusals.topicOf} (compacted: a few hundred bytes at
        most), so that a reply need not parse the request again; C{None}
        when unknown (an entry taken from another process).
    """

    __slots__ = (
        "key",
        "requester",
        "stanzaID",
        "via",
        "request",
        "resendable",
        "tried",
        "resource",
        "deadline",
        "weight",
        "topic",
    )

    def __init__(self, key, requester, stanzaID, via, request, resendable, resource, deadline):
        self.key = key
        self.requester = requester
        self.stanzaID = stanzaID
        self.via = via
        self.request = request
        self.resendable = resendable
        self.tried = None
        self.resource = resource
        self.deadline = deadline
        self.weight = 0
        self.topic = None

    @property
    def fromTarget(self):
        """
        Whether a resource of the target started this request.
        """
        return len(self.key) == 3


def weigh(entry):
    """
    The bytes C{entry} keeps: its request (UTF-8) and the strings of its
    key, requester, id and C{via} (one a character: ASCII, as addresses and
    ids nearly always are). The id is counted once when the key holds the
    same string. Not Python's overhead per object, which the bound on
    entries covers.
    """
    key = entry.key
    size = len(key[0]) + len(key[1]) + len(entry.requester)
    if entry.stanzaID is not key[1]:
        size += len(entry.stanzaID)
    if entry.request is not None:
        size += len(entry.request)
    if entry.via is not None:
        size += len(entry.via)
    return size


class PendingTable:
    """
    Requests in flight, with their timeouts and their bounds.

    @ivar timeout: seconds a request added now may wait for its reply (see
        L{setTimeout}).
    @ivar fromOutside: requests from outside in flight.
    @ivar fromTarget: requests started by the target in flight.
    @ivar bytes: the bytes every entry in the table keeps (see L{weigh}).
    @ivar line: the L{Resource} held entries are assigned to, or C{None}
        (no line: nothing may wait).
    @ivar hold: seconds an entry may wait in the line (see L{setHold}).
    """

    def __init__(
        self,
        clock,
        timeout,
        answer,
        maxPending=MAX_PENDING,
        maxPendingPerRequester=MAX_PENDING_PER_REQUESTER,
        maxPendingFromTarget=MAX_PENDING_FROM_TARGET,
        maxPendingBytes=MAX_PENDING_BYTES,
        line=None,
    ):
        """
        @param answer: called as C{answer(entry, outcome)} once for every
            entry that leaves the table, with the reply element or a
            L{StanzaError}; it must send exactly one answer.
        @param line: see L{line}.
        """
        self._clock = clock
        self.timeout = timeout
        self._answer = answer
        self.maxPending = maxPending
        self.maxPendingPerRequester = maxPendingPerRequester
        self.maxPendingFromTarget = maxPendingFromTarget
        self.maxPendingBytes = maxPendingBytes
        self._entries = {}
        # While not None: entries added before a change of the timeout may
        # be due later than newer ones, up to this time.
        self._mixedUntil = None
        self._held = {}
        self._heldBytes = {}
        self.fromOutside = 0
        self.fromTarget = 0
        self.bytes = 0
        self._timer = None
        self._emptyWaiters = []
        self.line = line
        self.hold = 0.0
        # The keys of the entries in the line, in the order they joined it,
        # with when they did and what they get if the hold passes.
        self._line = {}

    def __len__(self):
        return len(self._entries)

    def __contains__(self, key):
        return key in self._entries

    def get(self, key):
        """
        Return the entry for C{key}, or C{None}.
        """
        return self._entries.get(key)

    def configure(
        self,
        timeout,
        maxPending,
        maxPendingPerRequester,
        maxPendingFromTarget,
        maxPendingBytes,
        hold,
    ):
        """
        Change the timeout (L{setTimeout}), the bounds and the hold
        (L{setHold}) (a reload): those in flight stay, whatever the new
        bounds.
        """
        self.maxPending = maxPending
        self.maxPendingPerRequester = maxPendingPerRequester
        self.maxPendingFromTarget = maxPendingFromTarget
        self.maxPendingBytes = maxPendingBytes
        self.setTimeout(timeout)
        self.setHold(hold)

    def setTimeout(self, timeout):
        """
        Give requests added from now on C{timeout} seconds; those in flight
        keep their deadlines.
        """
        if timeout != self.timeout:
            self.timeout = timeout
            if self._entries:
                last = max(entry.deadline for entry in self._entries.values())
                self._mixedUntil = max(last, self._mixedUntil or last)

    def setHold(self, hold):
        """
        Let entries wait C{hold} seconds in the line from now on, those
        waiting already too (counted from when they joined it).
        """
        self.hold = hold
        self._scheduleLine()

    @property
    def lineLength(self):
        """
        The entries waiting in the line.
        """
        return len(self._line)

    def waiting(self):
        """
        The entries in the line, in the order they joined it.
        """
        entries = self._entries
        return [entries[key] for key in self._line]

    def heldBy(self, bare):
        """
        The requests from outside in flight from C{bare}.
        """
        return self._held.get(bare, 0)

    def admits(self, requester):
        """
        Whether one more request from C{requester} (outside) fits the bounds.
        """
        if self.maxPending and self.fromOutside >= self.maxPending:
            return False
        return not (
            self.maxPendingPerRequester
            and self._held.get(bareOf(requester), 0) >= self.maxPendingPerRequester
        )

    def _fits(self, more, requester):
        """
        Whether C{more} bytes of C{requester}'s fit under L{maxPendingBytes}
        and under its share of it (L{bytesPerRequester}).
        """
        if not self.maxPendingBytes:
            return True
        if self.bytes + more > self.maxPendingBytes:
            return False
        share = self.bytesPerRequester
        return not share or self._heldBytes.get(bareOf(requester), 0) + more <= share

    @property
    def bytesPerRequester(self):
        """
        The bytes one bare JID's requests may keep: its share of
        L{maxPendingBytes} as of the entries; 0 when either entry bound is
        off.
        """
        if not (self.maxPending and self.maxPendingPerRequester):
            return 0
        return self.maxPendingBytes * self.maxPendingPerRequester // self.maxPending

    def admitsFromTarget(self):
        """
        Whether one more request started by the target fits its bound.
        """
        return not (self.maxPendingFromTarget and self.fromTarget >= self.maxPendingFromTarget)

    def entriesOf(self, resource):
        """
        Return the entries C{resource} holds now (by a scan of the table: it
        is needed only when a resource leaves).
        """
        return [entry for entry in self._entries.values() if entry.resource is resource]

    def add(
        self, key, requester, resource, request=None, resendable=False, stanzaID=None, via=None
    ):
        """
        Track a request just sent, and start its timeout.

        @param resource: the resource of the target it concerns: the one it
            was sent to, or the one that started it.
        @param request: see L{PendingRequest.request}.
        @param resendable: see L{PendingRequest.resendable}.
        @param stanzaID: the id to answer the requester with, when it is not
            C{key[1]}.
        @param via: see L{PendingRequest.via}.
        @return: the new L{PendingRequest}; C{None} for a request from
            outside that does not fit under L{maxPendingBytes} (nothing is
            added: it is to be refused, C{resource-constraint}).
        """
        entry = PendingRequest(
            key,
            requester,
            key[1] if stanzaID is None else stanzaID,
            via,
            request,
            resendable,
            resource,
            self._clock.seconds() + self.timeout,
        )
        entry.weight = weigh(entry)
        if len(key) == 2 and not self._fits(entry.weight, requester):
            return None
        self._entries[key] = entry
        self._count(entry, 1)
        if self._timer is None:
            self._timer = self._clock.callLater(self.timeout, self._expire)
        elif self._mixedUntil is not None and entry.deadline < self._timer.getTime():
            # A shorter timeout since a reload: this one is due first.
            self._timer.reset(self.timeout)
        if resource is self.line:
            self._join(entry, HOLD_PASSED)
        return entry

    def adopt(self, entry):
        """
        Track an entry another process added (L{clientproxy.state.redis.cluster}): it
        keeps its deadline, which may come before those of entries added
        here already. An entry the table holds under the same key (Redis
        holds one entry a key: that one was answered elsewhere, its notice
        not yet here) is counted out and replaced.
        """
        now = self._clock.seconds()
        old = self._entries.get(entry.key)
        if old is not None:
            self._remove(old)
        if self._timer is None:
            self._timer = self._clock.callLater(max(0.0, entry.deadline - now), self._expire)
        else:
            # The latest deadline so far: the newest entry's, or a later
            # one from before the order was last broken.
            newest = next(reversed(self._entries.values()), entry).deadline
            last = max(newest, entry.deadline, self._mixedUntil or newest)
            self._mixedUntil = last
            if entry.deadline < self._timer.getTime():
                self._timer.reset(max(0.0, entry.deadline - now))
        entry.weight = weigh(entry)
        self._entries[entry.key] = entry
        self._count(entry, 1)
        if entry.resource is self.line:
            self._join(entry, HOLD_PASSED)

    def discard(self, key):
        """
        Forget the entry for C{key}, if any, without answering it: another
        process answered it (L{clientproxy.state.redis.cluster}).
        """
        entry = self._entries.get(key)
        if entry is not None:
            self._remove(entry)
            if not self._entries:
                self._emptied()

    def discardAll(self):
        """
        Forget every entry without answering: the connection is gone and
        the processes sharing the table answer them (L{clientproxy.state.redis.cluster}).
        """
        for entry in list(self._entries.values()):
            self._remove(entry)
        self._emptied()

    def reassign(self, entry, resource):
        """
        Move C{entry} (from outside) to C{resource}: it is to be sent again
        there, its request (already changed) addressed to it. The deadline
        stays: a requester waits at most C{timeout} in all. To the L{line}
        (its resource left), it joins the end of the line; from it, it
        leaves the line.

        @return: whether it was moved: not if its request, now longer (a
            longer address), does not fit under L{maxPendingBytes}; it is
            then left as it was, to be failed.
        """
        weight = weigh(entry)
        if weight > entry.weight and not self._fits(weight - entry.weight, entry.requester):
            return False
        self.bytes += weight - entry.weight
        bare = bareOf(entry.requester)
        self._heldBytes[bare] += weight - entry.weight
        entry.weight = weight
        line = self.line
        if entry.resource is line:
            del self._line[entry.key]
        entry.resource.pending -= 1
        entry.resource = resource
        resource.pending += 1
        if resource is line:
            self._join(entry, HOLD_PASSED_LEFT)
        return True

    def age(self, entry):
        """
        Seconds since C{entry} was added (counted back from its deadline by
        the timeout in force now: off by the difference for requests that
        were in flight when the timeout was changed).
        """
        return self._clock.seconds() - (entry.deadline - self.timeout)

    def whenEmpty(self):
        """
        Return a Deferred that fires once no request is in flight and the
        last one's answer has been written.
        """
        if not self._entries:
            return succeed(None)
        d = Deferred()
        self._emptyWaiters.append(d)
        return d

    def complete(self, entry, reply):
        """
        The reply to C{entry} came: answer with it.
        """
        self._finish(entry, reply)

    def fail(self, entry, condition, text=None):
        """
        Give up on C{entry}: answer with a L{StanzaError} of C{condition}.
        """
        self._finish(entry, StanzaError(condition, text=text))

    def failAll(self, condition, text=None):
        """
        Fail every entry with C{condition} (the connection to the server is
        gone, or a shutdown's grace period is over).
        """
        for entry in list(self._entries.values()):
            self.fail(entry, condition, text)

    def _count(self, entry, delta):
        """
        Count C{entry} in (C{delta} 1) or out (-1) of every bound.
        """
        self.bytes += delta * entry.weight
        if len(entry.key) == 2:
            self.fromOutside += delta
            bare = bareOf(entry.requester)
            held = self._held.get(bare, 0) + delta
            if held:
                self._held[bare] = held
                self._heldBytes[bare] = self._heldBytes.get(bare, 0) + delta * entry.weight
            else:
                del self._held[bare]
                del self._heldBytes[bare]
            entry.resource.pending += delta
        else:
            self.fromTarget += delta

    def _remove(self, entry):
        del self._entries[entry.key]
        self._count(entry, -1)
        if entry.resource is self.line:
            del self._line[entry.key]

    def _join(self, entry, answer):
        """
        C{entry} joins the end of the line; if the hold passes, it gets
        C{answer}.
        """
        self._line[entry.key] = (self._clock.seconds(), answer)
        self._scheduleLine()

    def _lineDue(self):
        """
        When the head of the line has waited the hold, or C{None}.
        """
        head = next(iter(self._line.values()), None)
        return None if head is None else head[0] + self.hold

    def _scheduleLine(self):
        """
        Have the timer fire no later than the head of the line is due.
        """
        due = self._lineDue()
        if due is None or self._timer is None:
            # No line; or no entry at all, so no line either.
            return
        if due < self._timer.getTime():
            self._timer.reset(max(0.0, due - self._clock.seconds()))

    def _finish(self, entry, outcome):
        # An entry taken from another process's share of the table is
        # answered without ever having been in this one.
        if self._entries.get(entry.key) is entry:
            self._remove(entry)
        try:
            self._answer(entry, outcome)
        finally:
            if not self._entries:
                self._emptied()

    def _emptied(self):
        self._mixedUntil = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiters, self._emptyWaiters = self._emptyWaiters, []
        for d in waiters:
            d.callback(None)

    def _expire(self):
        """
        Answer the entries that have waited the hold in line (in the order
        they joined it), then those whose deadline has passed (oldest
        first; one waiting in line gets the line's answer, not a timeout),
        and set the timer for whichever is due next.
        """
        self._timer = None
        now = self._clock.seconds()
        if self._line:
            due = []
            for key, (joined, answer) in self._line.items():
                if joined + self.hold > now:
                    break
                due.append((self._entries[key], answer))
            for entry, answer in due:
                self.fail(entry, answer.condition, answer.text)
        mixed = self._mixedUntil is not None
        if mixed:
            expired = [entry for entry in self._entries.values() if entry.deadline <= now]
        else:
            expired = []
            for entry in self._entries.values():
                if entry.deadline > now:
                    break
                expired.append(entry)
        for entry in expired:
            if entry.resource is self.line:
                # Its deadline came before the hold passed.
                answer = self._line[entry.key][1]
                self.fail(entry, answer.condition, answer.text)
            else:
                self.fail(entry, TIMEOUT.condition)
        if self._mixedUntil is not None and now >= self._mixedUntil:
            self._mixedUntil = None
        if self._entries and self._timer is None:
            if self._mixedUntil is None:
                oldest = next(iter(self._entries.values())).deadline
            else:
                oldest = min(entry.deadline for entry in self._entries.values())
            line = self._lineDue()
            if line is not None and line < oldest:
                oldest = line
            self._timer = self._clock.callLater(max(0.0, oldest - now), self._expire)
