# -*- test-case-name: tests.test_stanzas -*-
"""
Small helpers for building and reading stanzas, on plain domish elements.

The stanza path works on L{domish.Element} and attribute strings rather
than L{wokkel.generic.Stanza}: that class parses and interns every address
(see L{clientproxy.xmpp.jat}), which costs time per stanza and memory for good.
"""

import secrets

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

REQUEST_TYPES = frozenset(("get", "set"))
REPLY_TYPES = frozenset(("result", "error"))


def errorReply(sender, recipient, stanzaID, condition, text=None, kind="iq", errorType=None):
    """
    Build an error stanza with an RFC 6120 stanza error.

    The condition's type, unless C{errorType} is given, is the one RFC 6120
    8.3.3 gives it (as in
    L{twisted.words.protocols.jabber.error.STANZA_CONDITIONS}). The
    request's payload is not echoed: it may be large and the requester has it.
    """
    reply = domish.Element((None, kind))
    reply["type"] = "error"
    reply["from"] = sender
    reply["to"] = recipient
    if stanzaID is not None:
        reply["id"] = stanzaID
    reply.addChild(StanzaError(condition, type=errorType, text=text).getElement())
    return reply


#: Where a stanza comes from (L{sort}): it lacks an address, the target
#: sent it, or anybody else (an outsider) did.
NO_ADDRESS, FROM_TARGET, FROM_OUTSIDE = "no-address", "target", "outside"


def presenceStanza(sender, recipient, kind=None):
    """
    Build a presence stanza; C{kind} C{None} is an available presence.
    """
    presence = domish.Element((None, "presence"))
    presence["from"] = sender
    presence["to"] = recipient
    if kind is not None:
        presence["type"] = kind
    return presence


def sort(stanza, target):
    """
    The one sort of every stanza a handler takes: C{None} if another
    handler has it already; else it is taken (marked handled) and sorted
    as C{(side, from, to, type)}, C{side} one of L{NO_ADDRESS} (no C{from}
    or no C{to}: the server stamps both on what it routes),
    L{FROM_TARGET} (from the bare JID C{target} or a resource of it) and
    L{FROM_OUTSIDE}; absent attributes are C{None}.
    """
    if stanza.handled:
        return None
    stanza.handled = True
    get = stanza.attributes.get
    sender, recipient = get("from"), get("to")
    if not sender or not recipient:
        side = NO_ADDRESS
    elif bareOf(sender) == target:
        side = FROM_TARGET
    else:
        side = FROM_OUTSIDE
    return side, sender, recipient, get("type")


def isAnswer(iq, asker, asked):
    """
    Whether C{iq} can answer a request that C{asker} sent to C{asked}: a
    C{result} or C{error} from C{asked} to C{asker} (its id is the caller's
    to check). The address it is sent to counts as much as the sender: a
    reply with the same id to another address answers a request of
    somebody else's, which chose that id.
    """
    get = iq.attributes.get
    return get("type") in REPLY_TYPES and get("to") == asker and get("from") == asked


def onlyChildElement(element):
    """
    The one child element of C{element} (text is ignored), or C{None} when
    it has none or more than one: what an IQ request must carry (RFC 6120
    8.2.3).
    """
    only = None
    for child in element.children:
        if not isinstance(child, str):
            if only is not None:
                return None
            only = child
    return only


def bareOf(address):
    """
    The bare JID of an address string (itself when it has no resource).
    """
    return address.partition("/")[0]


def domainOf(jid):
    """
    The domain of a bare JID or domain string.
    """
    return jid.rpartition("@")[2]


def splitJID(address):
    """
    Split an address string into C{(bare, resource)}; the resource is C{''}
    for a bare JID. No stringprep: the server has normalised the addresses it
    stamps.
    """
    bare, _, resource = address.partition("/")
    return bare, resource


class StanzaIDs:
    """
    The ids of the requests the component starts itself (keepalive pings,
    disco#info queries, requests of the target to peers): C{kind-N}, after
    L{prefix}.

    The prefix is what makes them unguessable to whoever has not seen one,
    and different from one connection to the next (a reply to a request of
    the last connection, or of the process before a restart, matches
    nothing of this one): a random one for a process alone, new with every
    connection (L{renew}, called by the dispatcher for all the handlers
    that share it); with state shared by several processes,
    C{<instance id>.}, set by L{clientproxy.state.redis.cluster} (a random id, new with
    every connection too), so that a reply the server hands to another
    process's connection can be passed to the one that asked, and ids never
    clash between processes. An id costs one counter step and one string
    format: the randomness is drawn once a connection.

    Unguessable is a second line only: a peer the component asked has seen
    the prefix. What keeps an outsider from answering for another is that
    an answer is taken only from the entity asked, to the address that
    asked (see L{clientproxy.handlers.capabilities}, L{clientproxy.handlers.keepalive},
    L{clientproxy.handlers.dispatch}).

    @ivar prefix: what every id starts with.
    """

    def __init__(self, prefix=None):
        """
        @param prefix: a prefix its owner keeps up to date (the cluster's
            instance id), left alone by L{renew}; C{None} for a random one.
        """
        self._owned = prefix is not None
        self.prefix = prefix
        self._count = 0
        self.renew()

    def renew(self):
        """
        A new connection: a new random prefix (64 bits from L{secrets}),
        unless the prefix is its owner's.
        """
        if not self._owned:
            self.prefix = secrets.token_hex(8) + "."

    def __call__(self, kind):
        """
        A new id for a request of C{kind}.
        """
        self._count += 1
        return "%s%s-%d" % (self.prefix, kind, self._count)
