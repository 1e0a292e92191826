# -*- test-case-name: tests.test_state -*-
"""
Facts about the target's resources, shared by the processes serving one
component (C{--redis}): what one process learns (the target's presence,
a resource's refusals) is published on the component's channel, and the
others act on it as an event with its origin (the process's id), not as a
stanza handed to their streams.

ejabberd delivers each presence of the target to one process only: so
they all hold the same resources and learn the same features; affinity
then sends a key to the same resource from every process (a hash of the
key and the resources, the same everywhere). What is done once for all on
a presence (the service's own presence, the delivery of the queue) is
left to the process that received it, which the origin tells.

A fact is text on the channel: C{fact NUL origin NUL kind NUL fields},
joined by NUL (which no XML string holds).
"""

from zope.interface import implementer

from clientproxy.routing.refusals import topicFromText, topicText
from clientproxy.state.interfaces import IFacts
from clientproxy.xmpp.caps import Caps


def factText(fact):
    """
    C{fact} (see L{IFacts}) as the fields published after its kind.
    """
    kind = fact[0]
    if kind == "available":
        _, jid, name, priority, caps = fact
        fields = [jid, name, str(priority)]
        if caps is not None:
            fields += [caps.node, caps.ver]
            if caps.hash is not None:
                fields.append(caps.hash)
    elif kind == "refused":
        _, jid, requester, topic = fact
        fields = [jid, requester, topicText(topic)]
    elif kind == "served":
        _, jid, topic = fact
        fields = [jid, topicText(topic)]
    else:
        fields = list(fact[1:])
    return "\0".join([kind] + fields)


def factFromText(text):
    """
    The fact L{factText} wrote.

    @raise ValueError: it is not one.
    """
    kind, _, rest = text.partition("\0")
    if kind == "available":
        fields = rest.split("\0")
        jid, name, priority = fields[:3]
        caps = Caps(*fields[3:6]) if len(fields) > 3 else None
        return (kind, jid, name, int(priority), caps)
    if kind == "refused":
        jid, requester, topic = rest.split("\0", 2)
        return (kind, jid, requester, topicFromText(topic))
    if kind == "served":
        jid, topic = rest.split("\0", 1)
        return (kind, jid, topicFromText(topic))
    if kind == "unavailable":
        return (kind, rest)
    if kind in ("subscribed", "unsubscribed", "bounced") and not rest:
        return (kind,)
    raise ValueError("not a fact: %r" % (kind,))


@implementer(IFacts)
class SharedFacts:
    """
    The facts of one process, told to the others through the cluster's
    channel, and theirs heard from it.

    @ivar cluster: the L{clientproxy.state.redis.cluster.Cluster}.
    """

    def __init__(self, cluster):
        self.cluster = cluster
        self._observers = []
        cluster.hear(self)

    def learnt(self, fact):
        cluster = self.cluster
        cluster.publish(cluster.events, "fact", cluster.instanceID, factText(fact))

    def observe(self, observer):
        self._observers.append(observer)

    def told(self, origin, text):
        """
        Another process (C{origin}) published a fact: the observers act on
        it.
        """
        fact = factFromText(text)
        for observer in self._observers:
            observer(fact, origin)
