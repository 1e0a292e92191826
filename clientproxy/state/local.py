# -*- test-case-name: tests.test_state -*-
"""
The state of a process alone (no C{--redis}): it holds every request in
flight itself, and has nobody to tell what it learns. Each call answers at
once, with no I/O: the path of a stanza costs one call more than with no
interface at all.
"""

from twisted.internet.defer import succeed
from twisted.logger import Logger
from zope.interface import implementer

from clientproxy.routing.errors import CONNECTION_LOST
from clientproxy.state.interfaces import WRONG_RESOURCE, IFacts, IRequestsInFlight


@implementer(IRequestsInFlight)
class LocalRequests:
    """
    The requests in flight of a process alone: every entry of its table is
    its own to answer.

    @ivar table: the L{clientproxy.routing.pending.PendingTable}.
    """

    log = Logger()

    def __init__(self, table):
        self.table = table

    def record(self, entry, then, *args):
        then(entry, None, *args)

    def take(self, key, sender, then, *args):
        entry = self.table.get(key)
        if entry is not None and sender and entry.resource.jid != sender:
            entry = WRONG_RESOURCE
        then(entry, *args)

    def claim(self, entry, anyway, then, *args):
        then(entry, *args)

    def settled(self):
        return succeed(None)

    def connectionLost(self):
        """
        Nobody else can answer them: each is answered
        C{recipient-unavailable} now (sent once the server is back, if the
        requester's session still is).
        """
        if len(self.table):
            self.log.warn(
                "Connection to the server lost with {count} requests in flight: "
                "answering them with {condition}",
                count=len(self.table),
                condition=CONNECTION_LOST.condition,
            )
        self.table.failAll(CONNECTION_LOST.condition)


@implementer(IFacts)
class LocalFacts:
    """
    The facts of a process alone: there is no other process to tell, nor
    to hear from.
    """

    def learnt(self, fact):
        pass

    def observe(self, observer):
        pass
