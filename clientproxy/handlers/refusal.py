# -*- test-case-name: tests.test_refusal -*-
"""
The one place a refused stanza becomes an answer or a counted drop, for
every handler: requests and messages get an error stanza (RFC 6120 8.3)
from the address they were sent to; what must not be answered with an
error (an error, a result: RFC 6120 8.3.1), and presence, is dropped and
counted under the name L{clientproxy.routing.errors.dropReason} gives, but
a denied subscription request or probe, which is told C{unsubscribed}.
"""

from clientproxy.routing.errors import DENIED, dropReason
from clientproxy.xmpp.stanzas import bareOf, errorReply, presenceStanza

#: The types of IQs and messages never answered with an error: errors, and
#: an IQ's result (a message's C{result} type is no type of RFC 6121's, so
#: a normal message, which is answered).
UNANSWERED = {"iq": frozenset(("error", "result")), "message": frozenset(("error",))}


def refuse(handler, stanza, refusal, counters, component=None):
    """
    Answer C{stanza}, refused with C{refusal} (an
    L{clientproxy.routing.errors.Answer}), through C{handler} (an
    L{XMPPHandler} with C{stats}), counting an error sent in C{counters}
    (C{"error:<condition>"}). C{component}: the component's JID, which a
    presence's C{unsubscribed} comes from (an error comes from the address
    the stanza was sent to).
    """
    kind = stanza.getAttribute("type")
    name = stanza.name
    if name == "presence":
        if refusal is DENIED and kind in ("subscribe", "probe"):
            handler.send(unsubscribed(stanza, component))
            counters["subscriptions-refused"] += 1
        else:
            handler.stats.drop(stanza, dropReason(name, refusal))
    elif kind in UNANSWERED[name]:
        handler.stats.drop(stanza, dropReason(name, refusal))
    else:
        condition, errorType, text = refusal
        counters["error:" + condition] += 1
        handler.send(
            errorReply(
                stanza.getAttribute("to"),
                stanza.getAttribute("from"),
                stanza.getAttribute("id"),
                condition,
                text,
                kind=name,
                errorType=errorType,
            )
        )


def unsubscribed(presence, component):
    """
    The C{unsubscribed} presence from C{component} that tells the sender
    of C{presence} it may not subscribe to the service.
    """
    return presenceStanza(component, bareOf(presence.getAttribute("from")), "unsubscribed")
