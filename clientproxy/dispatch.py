# -*- test-case-name: tests.test_dispatch -*-
"""
IQ dispatch: requests from outside go to one resource of the target, with
the requester's address translated (JAT); replies come back translated.

    alice@example.org/abc -> proxy.example.org        <iq type='get' id='1'>
    proxy.example.org/ENC -> svc@example.org/a        same id, same payload
    svc@example.org/a     -> proxy.example.org/ENC    <iq type='result' id='1'>
    proxy.example.org     -> alice@example.org/abc    same id, same payload

Only a reply that matches a pending request, comes from the resource the
request went to, and arrives before the timeout is routed; anything else is
dropped and counted. Errors are never answered with errors (RFC 6120 8.2.3).
The errors the component answers with itself are listed in README.md.
"""

from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from wokkel.subprotocols import XMPPHandler

from clientproxy.jat import Translator
from clientproxy.stanzas import (
    REPLY_TYPES,
    REQUEST_TYPES,
    childElementCount,
    errorReply,
)

#: The condition for requests in flight when the connection to the server is
#: lost: type wait, so the requester may ask again.
CONNECTION_LOST = "recipient-unavailable"


class IQDispatcher(XMPPHandler):
    """
    Forwards IQ requests to the target's resources and routes the replies.

    @ivar jat: the L{Translator} for the component's addresses.
    @ivar target: the target's bare JID.
    @ivar resources: the target's L{clientproxy.resources.ResourceSet}.
    @ivar strategy: the L{clientproxy.istrategy.IDispatchStrategy}.
    @ivar pending: the L{clientproxy.pending.PendingTable}.
    @ivar stats: the L{clientproxy.stats.Stats} to count into.
    """

    log = Logger()

    def __init__(self, component, target, resources, strategy, pending, stats):
        XMPPHandler.__init__(self)
        self.jat = Translator(component)
        self.target = target
        self.resources = resources
        self.strategy = strategy
        self.pending = pending
        self.stats = stats
        resources.whenRemoved(self._resourceRemoved)

    def connectionInitialized(self):
        self.xmlstream.addObserver("/iq", self.onIQ)

    def connectionLost(self, reason):
        if len(self.pending):
            self.log.warn(
                "Connection to the server lost with {count} requests in flight: "
                "answering them with {condition}",
                count=len(self.pending),
                condition=CONNECTION_LOST,
            )
        self.pending.failAll(CONNECTION_LOST)

    def onIQ(self, iq):
        """
        Sort an IQ: a request from outside, a reply from the target, or
        something to drop.
        """
        if iq.handled:
            return
        iq.handled = True
        sender = iq.getAttribute("from")
        recipient = iq.getAttribute("to")
        kind = iq.getAttribute("type")
        if not sender or not recipient:
            self.stats.drop(iq, "no-address")
        elif sender.partition("/")[0] == self.target:
            if kind in REPLY_TYPES:
                self._onReply(iq, sender, recipient)
            elif kind in REQUEST_TYPES:
                self._refuse(
                    iq,
                    "service-unavailable",
                    "The target cannot make requests through the component",
                )
            else:
                self.stats.drop(iq, "bad-type")
        elif kind in REQUEST_TYPES:
            self._onRequest(iq, sender, recipient)
        elif kind in REPLY_TYPES:
            self.stats.drop(iq, "reply-from-outsider")
        else:
            self.stats.drop(iq, "bad-type")

    def _onRequest(self, iq, requester, recipient):
        stanzaID = iq.getAttribute("id")
        if stanzaID is None:
            self.stats.drop(iq, "request-without-id")
            return
        if childElementCount(iq) != 1:
            self._refuse(iq, "bad-request", "An IQ request has exactly one child element")
            return
        encoded = self.jat.encode(requester)
        if encoded is None:
            self._refuse(iq, "jid-malformed", "The requester's address is too long to translate")
            return
        key = (encoded, stanzaID)
        if key in self.pending:
            self._refuse(iq, "bad-request", "A request with this id is already in flight")
            return
        available = self.resources.available
        if not available:
            self._refuse(iq, "service-unavailable")
            return
        resource = self.strategy.choose(available, requester)
        iq["from"] = self.jat.address(encoded)
        iq["to"] = resource.jid
        entry = self.pending.add(key, requester, iq, resource)
        entry.deferred.addCallbacks(
            self._routeReply,
            self._answerFailure,
            callbackArgs=(entry,),
            errbackArgs=(entry,),
        )
        self.stats.requests["forwarded"] += 1
        self.send(iq)

    def _onReply(self, reply, sender, recipient):
        encoded = self.jat.decode(recipient)
        entry = self.pending.get((encoded, reply.getAttribute("id")))
        if entry is None:
            self.stats.drop(reply, "unknown-reply")
        elif entry.resource.jid != sender:
            self.stats.drop(reply, "reply-from-wrong-resource")
        else:
            self.pending.complete(entry, reply)

    def _routeReply(self, reply, entry):
        reply["to"] = entry.requester
        reply["from"] = self.jat.component
        self.stats.requests["answered"] += 1
        self.send(reply)

    def _answerFailure(self, failure, entry):
        failure.trap(StanzaError)
        error = failure.value
        self.stats.requests["error:" + error.condition] += 1
        self.send(
            errorReply(
                self.jat.component,
                entry.requester,
                entry.stanzaID,
                error.condition,
                error.text,
            )
        )

    def _resourceRemoved(self, resource):
        """
        A resource went away with requests in flight: send each C{get} once
        more to another resource, and fail the rest with
        C{recipient-unavailable} (a C{set} is not safe to repeat).
        """
        for entry in list(resource.pending.values()):
            available = self.resources.available
            request = entry.request
            if request.getAttribute("type") == "get" and not entry.retried and available:
                other = self.strategy.choose(available, entry.requester)
                self.pending.reassign(entry, other)
                request["to"] = other.jid
                self.stats.requests["retried"] += 1
                self.send(request)
            else:
                self.pending.fail(entry, "recipient-unavailable")

    def _refuse(self, iq, condition, text=None):
        """
        Answer a request with an error from the address it was sent to.
        """
        self.stats.requests["error:" + condition] += 1
        self.send(
            errorReply(
                iq.getAttribute("to"),
                iq.getAttribute("from"),
                iq.getAttribute("id"),
                condition,
                text,
            )
        )
