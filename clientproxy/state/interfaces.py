# -*- test-case-name: tests.test_state -*-
"""
What the handlers may ask of the state they keep, whichever process keeps
it: the requests in flight (L{IRequestsInFlight}), the message queue and
the subscribers (L{IStore}), and the facts learnt about the target's
resources (L{IFacts}).

A process alone uses the local implementations (L{clientproxy.state.local},
L{clientproxy.state.sqlite}); several processes serving one component
(C{--redis}) use those in L{clientproxy.state.redis}. Which one is chosen
once, in L{clientproxy.assembly.makeHandlers}; the handlers never ask which
it is. The contract each implementation keeps is tested against both
(tests/test_state.py, tests/test_redisstore.py).
"""

from zope.interface import Attribute, Interface

#: The origin of a fact this process learnt itself (another process's
#: facts carry its id).
HERE = None

#: What L{IRequestsInFlight.take} hands on for a reply from another
#: resource than the one asked (the entry stays, for the right reply).
WRONG_RESOURCE = 0


class IRequestsInFlight(Interface):
    """
    Who may answer each request in flight: the entries are kept by the
    dispatcher's L{clientproxy.routing.pending.PendingTable}; this says
    whether this process may answer one (each request gets exactly one
    answer, from whichever process holds it).

    Results are handed to a callable, C{then(result, *args)}, at once when
    the state is local and later when it is shared: no Deferred on the path
    of every request.
    """

    def record(entry, then, *args):
        """
        C{entry}, just added to the table, is about to be sent (or sent
        again): make it answerable, then call C{then(entry, refusal,
        *args)}, with C{refusal} C{None} to send it, or the
        L{clientproxy.routing.errors.Error} to answer the requester with
        instead (the entry has then left the table).
        """

    def take(key, sender, then, *args):
        """
        A reply to the request C{key} came from C{sender} (C{""}: from
        whoever it was sent to): call C{then(result, *args)} with the
        L{clientproxy.routing.pending.PendingRequest} this process now
        answers, C{None} when no request has that key (or another process
        answered it), or L{WRONG_RESOURCE} when it was sent to another
        resource.
        """

    def claim(entry, anyway, then, *args):
        """
        This process is about to answer C{entry} on its own (a timeout,
        its resource left, a shutdown): call C{then(entry, *args)} once it
        may, and not at all if another process answered it. With
        C{anyway}, also when that cannot be found out (the entry is this
        process's).
        """

    def settled():
        """
        A Deferred that fires once every L{take} and L{claim} started has
        been decided (a shutdown waits for it).
        """

    def connectionLost():
        """
        The connection to the server is gone: settle the requests in flight
        (answer them, or leave them to the processes still connected).
        """


class IStore(Interface):
    """
    The messages queued while no resource of the target is available, and
    the entities subscribed to the service's presence.

    What the handlers read on the path of every stanza (lengths, counts,
    membership) answers at once; what may wait on I/O (queueing, taking a
    batch) returns a Deferred, whether the store answers at once or later.
    """

    path = Attribute(
        "The store's file, C{':memory:'}, or C{None} for a store with no file "
        "(which no lock between processes can guard)."
    )

    def enqueue(sender, stanza, queueSize=0, queuePerSender=0):
        """
        Queue C{stanza} (serialised) from C{sender} (a bare JID) if it holds
        fewer than C{queueSize} in all and fewer than C{queuePerSender} from
        C{sender} (0: no bound).

        @return: a Deferred firing with C{None} once queued, or with why it
            was refused.
        """

    def queued(limit=-1):
        """
        The oldest queued messages, at most C{limit}, as C{(id, stanza)}.

        @return: a Deferred firing with that list. Each batch is either
            L{delivered} or given back (L{giveBack}).
        """

    def delivered(ids):
        """
        The messages C{ids} of a batch from L{queued} were delivered.
        """

    def giveBack(batch):
        """
        A batch from L{queued} could not be delivered: it stays at the head
        of the queue, in order.
        """

    def queueLength(sender=None):
        """
        The number of queued messages, from C{sender} only if given.
        """

    def subscribers():
        """
        The subscribers' bare JIDs, sorted.
        """

    def isSubscriber(jid):
        """
        Whether C{jid} is a subscriber.
        """

    def subscriberCount(domain=None):
        """
        The number of subscribers, from C{domain} only if given.
        """

    def addSubscriber(jid):
        """
        Add C{jid} to the subscribers.
        """

    def removeSubscriber(jid):
        """
        Remove C{jid} from the subscribers.
        """

    def recount():
        """
        Read the counts kept in memory again (another process may have
        changed what the store holds).

        @return: a Deferred that fires once they are read.
        """

    def close():
        """
        Close the store.
        """


class IFacts(Interface):
    """
    Facts about the target's resources, as the processes serving one
    component learn them: each process acts on what it learns itself, and
    on what the others learnt, told to it as events with their origin (a
    process's id), never as stanzas.

    A fact is a tuple, its kind first: C{("available", jid, name,
    priority, caps)}, C{("unavailable", jid)}, C{("subscribed",)},
    C{("unsubscribed",)}, C{("bounced",)} (presence of the target, see
    L{clientproxy.handlers.targetpresence}), C{("refused", jid,
    requester, topic)} and C{("served", jid, topic)} (see
    L{clientproxy.routing.refusals}).
    """

    def learnt(fact):
        """
        This process learnt C{fact} and acted on it: tell the others, if
        any.
        """

    def observe(observer):
        """
        Call C{observer(fact, origin)} for each fact another process learnt.
        """
