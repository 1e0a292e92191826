# -*- test-case-name: tests.test_pending -*-
"""
The pending-request table: every request sent to a resource of the target
and not yet answered.

Entries are keyed by C{(encoded resource, stanza id)}, the pair a reply
carries back in its C{to} and C{id}. Each entry has a L{Deferred} that
fires with the reply element, or fails with a L{StanzaError} whose condition
is the answer owed to the requester (C{remote-server-timeout} when the
timeout passes first). The timeout runs on an injectable L{IReactorTime}, so
tests drive it with L{twisted.internet.task.Clock}.
"""

from twisted.internet.defer import Deferred
from twisted.words.protocols.jabber.error import StanzaError


class PendingRequest:
    """
    One request in flight.

    @ivar key: C{(encoded, stanzaID)}.
    @ivar requester: the full JID that asked, as a string.
    @ivar request: the request element as sent to the resource (kept so a
        C{get} can be sent again to another resource).
    @ivar resource: the L{clientproxy.resources.Resource} holding it now.
    @ivar retried: whether it has already been sent again once.
    @ivar deferred: fires with the reply element, or fails with
        L{StanzaError}.
    """

    __slots__ = ("key", "requester", "request", "resource", "retried", "deferred", "_timer")

    def __init__(self, key, requester, request, resource):
        self.key = key
        self.requester = requester
        self.request = request
        self.resource = resource
        self.retried = False
        self.deferred = Deferred()
        self._timer = None

    @property
    def stanzaID(self):
        return self.key[1]


class PendingTable:
    """
    Requests in flight, with their timeouts.

    @ivar timeout: seconds a request may wait for its reply.
    """

    def __init__(self, clock, timeout):
        self._clock = clock
        self.timeout = timeout
        self._entries = {}

    def __len__(self):
        return len(self._entries)

    def __contains__(self, key):
        return key in self._entries

    def get(self, key):
        """
        Return the entry for C{key}, or C{None}.
        """
        return self._entries.get(key)

    def add(self, key, requester, request, resource):
        """
        Track a request just sent to C{resource}, and start its timeout.

        @return: the new L{PendingRequest}.
        """
        entry = PendingRequest(key, requester, request, resource)
        self._entries[key] = entry
        resource.pending[key] = entry
        entry._timer = self._clock.callLater(
            self.timeout, self.fail, entry, "remote-server-timeout"
        )
        return entry

    def reassign(self, entry, resource):
        """
        Move C{entry} to C{resource}: it was sent again there. The timeout
        keeps running: a requester waits at most C{timeout} in all.
        """
        entry.resource.pending.pop(entry.key, None)
        entry.resource = resource
        entry.retried = True
        resource.pending[entry.key] = entry

    def _remove(self, entry):
        del self._entries[entry.key]
        entry.resource.pending.pop(entry.key, None)
        timer = entry._timer
        if timer is not None and timer.active():
            timer.cancel()
        entry._timer = None

    def complete(self, entry, reply):
        """
        The reply to C{entry} came: forget it and fire its Deferred with
        C{reply}.
        """
        self._remove(entry)
        entry.deferred.callback(reply)

    def fail(self, entry, condition, text=None):
        """
        Give up on C{entry}: forget it and fail its Deferred with a
        L{StanzaError} of C{condition}.
        """
        self._remove(entry)
        entry.deferred.errback(StanzaError(condition, text=text))

    def failAll(self, condition, text=None):
        """
        Fail every entry with C{condition} (the connection to the server is
        gone: no reply can reach us any more).
        """
        for entry in list(self._entries.values()):
            self.fail(entry, condition, text)
