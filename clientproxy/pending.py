# -*- test-case-name: tests.test_pending -*-
"""
The pending-request table: every request sent to a resource of the target
and not yet answered.

Entries are keyed by C{(encoded resource, stanza id)}, the pair a reply
carries back in its C{to} and C{id}. Each entry is a L{Deferred} that fires
with the reply element, or fails with a L{StanzaError} whose condition is
the answer owed to the requester (C{remote-server-timeout} once the timeout
passes).

Every request gets the same timeout, so deadlines grow in the order
requests are added; the table keeps its entries in that order (a dict keeps
insertion order) and needs a single timer, on an injectable
L{IReactorTime}, for the oldest deadline. That is cheaper in time and
memory than a timer per request, and lets tests drive time with
L{twisted.internet.task.Clock}.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.words.protocols.jabber.error import StanzaError


class PendingRequest(Deferred):
    """
    One request in flight: a Deferred with what is needed to route its
    reply. Small on purpose: a busy component holds many.

    @ivar key: C{(encoded, stanzaID)} for a request from outside; for a
        request started by a resource of the target, C{(peer, id it was
        sent with, REVERSE)}.
    @ivar requester: the full JID that asked, as a string.
    @ivar stanzaID: the id the requester used (and gets its answer with).
    @ivar retry: the request as sent to the resource, serialised, while it
        may still be sent again to another resource (a C{get} not yet
        retried); C{None} otherwise.
    @ivar resource: the L{clientproxy.resources.Resource} holding it now.
    @ivar deadline: when it times out, in the table's clock's seconds.
    """

    __slots__ = ("key", "requester", "stanzaID", "retry", "resource", "deadline")

    def __init__(self, key, requester, stanzaID, retry, resource, deadline):
        Deferred.__init__(self)
        self.key = key
        self.requester = requester
        self.stanzaID = stanzaID
        self.retry = retry
        self.resource = resource
        self.deadline = deadline


class PendingTable:
    """
    Requests in flight, with their timeouts.

    @ivar timeout: seconds a request may wait for its reply; fixed for the
        life of the table (the order of deadlines depends on it).
    """

    def __init__(self, clock, timeout):
        self._clock = clock
        self.timeout = timeout
        self._entries = {}
        self._timer = None
        self._emptyWaiters = []

    def __len__(self):
        return len(self._entries)

    def __contains__(self, key):
        return key in self._entries

    def get(self, key):
        """
        Return the entry for C{key}, or C{None}.
        """
        return self._entries.get(key)

    def entriesOf(self, resource):
        """
        Return the entries C{resource} holds now (by a scan of the table: it
        is needed only when a resource leaves).
        """
        return [entry for entry in self._entries.values() if entry.resource is resource]

    def add(self, key, requester, retry, resource, stanzaID=None):
        """
        Track a request just sent, and start its timeout.

        @param resource: the resource of the target it concerns: the one it
            was sent to, or the one that started it.
        @param retry: the serialised payload if it may be sent again to
            another resource, else C{None}.
        @param stanzaID: the id to answer the requester with, when it is not
            C{key[1]}.
        @return: the new L{PendingRequest}.
        """
        entry = PendingRequest(
            key,
            requester,
            key[1] if stanzaID is None else stanzaID,
            retry,
            resource,
            self._clock.seconds() + self.timeout,
        )
        self._entries[key] = entry
        resource.pending += 1
        if self._timer is None:
            self._timer = self._clock.callLater(self.timeout, self._expire)
        return entry

    def reassign(self, entry, resource):
        """
        Move C{entry} to C{resource}: it was sent again there, and is not
        sent again a second time. The deadline stays: a requester waits at
        most C{timeout} in all.
        """
        entry.resource.pending -= 1
        entry.resource = resource
        entry.retry = None
        resource.pending += 1

    def age(self, entry):
        """
        Seconds since C{entry} was added.
        """
        return self._clock.seconds() - (entry.deadline - self.timeout)

    def whenEmpty(self):
        """
        Return a Deferred that fires once no request is in flight.
        """
        if not self._entries:
            return succeed(None)
        d = Deferred()
        self._emptyWaiters.append(d)
        return d

    def _remove(self, entry):
        del self._entries[entry.key]
        entry.resource.pending -= 1
        if not self._entries:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            waiters, self._emptyWaiters = self._emptyWaiters, []
            for d in waiters:
                d.callback(None)

    def complete(self, entry, reply):
        """
        The reply to C{entry} came: forget it and fire it with C{reply}.
        """
        self._remove(entry)
        entry.callback(reply)

    def fail(self, entry, condition, text=None):
        """
        Give up on C{entry}: forget it and fail it with a L{StanzaError} of
        C{condition}.
        """
        self._remove(entry)
        entry.errback(StanzaError(condition, text=text))

    def failAll(self, condition, text=None):
        """
        Fail every entry with C{condition} (the connection to the server is
        gone: no reply can reach us any more).
        """
        for entry in list(self._entries.values()):
            self.fail(entry, condition, text)

    def _expire(self):
        """
        Fail the entries whose deadline has passed, oldest first, and set
        the timer for the next deadline.
        """
        self._timer = None
        now = self._clock.seconds()
        expired = []
        for entry in self._entries.values():
            if entry.deadline > now:
                break
            expired.append(entry)
        for entry in expired:
            self.fail(entry, "remote-server-timeout")
        if self._entries and self._timer is None:
            oldest = next(iter(self._entries.values()))
            self._timer = self._clock.callLater(max(0.0, oldest.deadline - now), self._expire)
