# -*- test-case-name: tests.test_refusals -*-
"""
Refusals learnt from the target's answers, in a form no outsider can turn
into a refusal of someone else's request.

A resource that answers a request with C{feature-not-implemented} or
C{service-unavailable} did not act on it; the dispatcher then sends the
request to another resource (L{clientproxy.handlers.dispatch}). What is learnt from
that only changes the order in which resources are asked next time
(L{clientproxy.routing.selection}): a learnt refuser is asked after the others,
never left out, so a request some resource would serve is served. And
what is learnt is narrow, because outsiders choose what they send and a
service may refuse one requester alone (RFC 6120 allows
C{service-unavailable} to one requester for privacy):

 - per resource and I{topic}: the namespace and name of the request's
   child and the request type (C{get} or C{set}), L{topicOf}. A resource
   that serves a C{set} but refuses the C{get} of a namespace is still
   asked first for the C{set}; one that refuses a C{<bogus/>} element it
   has no handler for, as XMPP libraries do, is still asked first for the
   C{<conference/>} of the same namespace;
 - a resource counts as a refuser only once it refused requests of at
   least L{WITNESSES} distinct bare JIDs in that topic within the TTL: one
   requester (or one account) cannot reorder anyone else's requests;
 - a result from the resource in that topic forgets it as a refuser at
   once (its refusal was for those requesters, or it changed), in every
   process sharing state;
 - a refusal that carries an application-specific condition (a child of
   C{<error/>} outside the stanzas namespace, as Jitsi's focus sends with
   C{<reservation-error/>}) is the service's answer: the dispatcher passes
   it on and nothing is learnt from it.

The table is bounded: at most L{MAX_RECORDS} records (the oldest goes
first), each with its topic and requester kept as
L{clientproxy.routing.bounded.compact} keys, so a few hundred bytes a record
whatever came in. Every record lives the same TTL from its last refusal,
so records expire in the order they were last written: expiry takes them
off the front of an ordered dict, never rescanning the table. A change of
the TTL (a reload) empties it.
"""

from collections import OrderedDict

from twisted.logger import Logger

from clientproxy.routing.bounded import LRU, compact
from clientproxy.xmpp.stanzas import bareOf
from clientproxy.ops.throttle import Throttle, quoted

#: Default seconds a refusal is remembered (C{--refusal-ttl}).
REFUSAL_TTL = 300.0

#: Stanza error conditions that mean the resource did not act on a request.
REFUSALS = frozenset(("feature-not-implemented", "service-unavailable"))

#: Distinct bare JIDs whose requests a resource must have refused, in one
#: namespace and type, before it is asked after the others for everyone.
WITNESSES = 2

#: Records kept at most.
MAX_RECORDS = 10000

#: Distinct topics kept as shared tuples (L{Refusals.topicOf}) at most.
MAX_TOPICS = 1000


def topicOf(child, kind):
    """
    The topic of a request of type C{kind} whose child element is
    C{child}: C{(namespace, name, kind)}, each string compacted (what a
    requester chose, bounded in bytes).
    """
    return (compact(child.uri), compact(child.name), kind)


def topicText(topic):
    """
    C{topic} as text, to publish to other processes: its parts joined by
    NUL (which XML names cannot hold), a digest written as C{\\1} and its
    hex digits.
    """
    return "\0".join(part if part.__class__ is str else "\1" + part.hex() for part in topic)


def topicFromText(text):
    """
    The topic that L{topicText} wrote.
    """
    return tuple(
        bytes.fromhex(part[1:]) if part.startswith("\1") else part for part in text.split("\0")
    )


class _Record:
    __slots__ = ("expiry", "witness")

    def __init__(self, expiry, witness):
        self.expiry = expiry
        # The bare JID (compacted) of the one requester seen refused, or
        # None once WITNESSES distinct ones were: a refuser.
        self.witness = witness


class Refusals:
    """
    What resources refused, per resource JID and topic (L{topicOf}).

    @ivar ttl: seconds a record lives from its last refusal; 0 turns
        learning off.
    """

    log = Logger()

    def __init__(self, clock, ttl=REFUSAL_TTL, size=MAX_RECORDS):
        self.clock = clock
        self.ttl = ttl
        self.size = size
        self._records = OrderedDict()
        # topic: {resource JID} of learnt refusers.
        self._refusers = {}
        # resource JID: records about it.
        self._perResource = {}
        self._throttle = Throttle(clock.seconds)
        self._topics = LRU(MAX_TOPICS)

    def __len__(self):
        return len(self._records)

    def topicOf(self, child, kind):
        """
        L{topicOf}, as one tuple shared by every request of that topic
        while it is among the L{MAX_TOPICS} last seen: a request in flight
        keeps its topic, and the parser makes new strings for every stanza
        (it interns no names), so a topic of its own would cost each
        request in flight a tuple and two strings (about 270 bytes).
        """
        topic = topicOf(child, kind)
        shared = self._topics.get(topic)
        if shared is None:
            self._topics[topic] = shared = topic
        return shared

    def configure(self, ttl):
        """
        Change the TTL (a reload): what was learnt is forgotten.
        """
        self.ttl = ttl
        self.clear()

    def clear(self):
        self._records.clear()
        self._refusers.clear()
        self._perResource.clear()

    def refused(self, resource, topic, requester):
        """
        C{resource} refused C{requester}'s request in C{topic}.

        @return: whether refusals are learnt at all.
        """
        if not self.ttl:
            return False
        self._expire()
        records = self._records
        jid = resource.jid
        key = (jid, topic)
        witness = compact(bareOf(requester))
        expiry = self.clock.seconds() + self.ttl
        record = records.get(key)
        if record is None:
            if len(records) >= self.size:
                self._remove(*records.popitem(last=False))
            records[key] = _Record(expiry, witness)
            self._perResource[jid] = self._perResource.get(jid, 0) + 1
            return True
        record.expiry = expiry
        records.move_to_end(key)
        if record.witness is not None and record.witness != witness:
            record.witness = None
            self._refusers.setdefault(topic, set()).add(jid)
            unlogged = self._throttle("learnt")
            if unlogged is not None:
                namespace, name, kind = topic
                self.log.info(
                    "Resource {resource} refused {kind} requests for {name} in {feature} "
                    "from {witnesses} requesters: asked after the others for {ttl} s "
                    "({unlogged} more such lines not written)",
                    resource=jid,
                    kind=kind,
                    name=quoted(name if name.__class__ is str else name.hex()),
                    feature=quoted(namespace if namespace.__class__ is str else namespace.hex()),
                    witnesses=WITNESSES,
                    ttl=self.ttl,
                    unlogged=unlogged,
                )
        return True

    def served(self, resource, topic):
        """
        C{resource} answered a request in C{topic} with a result: it is no
        refuser of it.

        @return: whether a record was forgotten.
        """
        if self.concerns(resource):
            key = (resource.jid, topic)
            record = self._records.pop(key, None)
            if record is not None:
                self._remove(key, record)
                return True
        return False

    def concerns(self, resource):
        """
        Whether anything is remembered about C{resource} (a test cheap
        enough for the path of every reply).
        """
        return resource.jid in self._perResource

    def refusersOf(self, topic):
        """
        The JIDs of the resources learnt to refuse requests in C{topic}, or
        C{None}.
        """
        if not self._records:
            return None
        self._expire()
        return self._refusers.get(topic)

    def refusedBy(self, resource):
        """
        The topics C{resource} is a learnt refuser of.
        """
        self._expire()
        return [
            key[1]
            for key, record in self._records.items()
            if key[0] == resource.jid and record.witness is None
        ]

    def forget(self, resource, origin=None):
        """
        C{resource} left or changed its caps (whoever saw it, C{origin}):
        what it refused no longer holds.
        """
        if self.concerns(resource):
            jid = resource.jid
            for key in [key for key in self._records if key[0] == jid]:
                self._remove(key, self._records.pop(key))

    def _expire(self):
        records = self._records
        now = self.clock.seconds()
        while records:
            key = next(iter(records))
            if records[key].expiry > now:
                return
            self._remove(key, records.pop(key))

    def _remove(self, key, record):
        """
        Forget the indexes of a record taken out of the table.
        """
        jid = key[0]
        left = self._perResource[jid] - 1
        if left:
            self._perResource[jid] = left
        else:
            del self._perResource[jid]
        if record.witness is None:
            topic = key[1]
            refusers = self._refusers[topic]
            refusers.discard(jid)
            if not refusers:
                del self._refusers[topic]
