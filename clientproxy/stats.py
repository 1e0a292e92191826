"""
Counters of what the component did with the stanzas it saw.

Every stanza that is dropped is counted by reason (and logged), so an
operator can tell a quiet service from one that throws traffic away.
"""

from collections import Counter

from twisted.logger import Logger


class Stats:
    """
    @ivar requests: requests by outcome: C{forwarded}, C{answered},
        C{retried}, and C{error:CONDITION} for each error the component
        answered with itself.
    @ivar messages: messages by outcome: C{fanned-out}, C{queued},
        C{delivered-from-queue}, C{routed}, C{mirrored},
        C{bounces-to-target}, and C{error:CONDITION}.
    @ivar presence: the service's presence: C{subscribed},
        C{unsubscribed}, C{broadcasts}, C{probes-answered}.
    @ivar dropped: stanzas dropped, by reason.
    @ivar reconnects: times the connection to the server was made again.
    """

    def __init__(self):
        self.requests = Counter()
        self.messages = Counter()
        self.presence = Counter()
        self.dropped = Counter()
        self.reconnects = 0

    log = Logger()

    def drop(self, stanza, reason):
        """
        Count and log a stanza that is dropped for C{reason}. The log line
        names the stanza, never its content.
        """
        self.dropped[reason] += 1
        self.log.info(
            "Dropped {kind} type={type} from {sender}: {reason}",
            kind=stanza.name,
            type=stanza.getAttribute("type"),
            sender=stanza.getAttribute("from"),
            reason=reason,
        )
