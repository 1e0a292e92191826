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

A resource of the target may also ask a peer: an IQ request to
C{component/<encoded peer>} goes to the peer from the component's bare JID,
and the peer's reply goes back to that resource, with the same checks.
"""

import itertools

from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish.domish import escapeToXml
from wokkel.subprotocols import XMPPHandler

from clientproxy.jat import Translator
from clientproxy.policy import TOO_LARGE
from clientproxy.stanzas import (
    REPLY_TYPES,
    REQUEST_TYPES,
    childElementCount,
    claim,
    errorReply,
)
from clientproxy.xml import toXml

#: Marks the keys of requests started by a resource of the target.
REVERSE = "reverse"

#: Default bounds of requests in flight from outside (0: no bound).
MAX_PENDING = 10000
MAX_PENDING_PER_REQUESTER = 1000

#: A get sent again to another resource: id, from, to and the payload.
RETRY = "<iq type='get' id='%s' from='%s' to='%s'>%s</iq>"


def payloadOf(request):
    """
    The payload of a serialised IQ request, as UTF-8: what is between its
    root's start and end tags. Kept for a get, to send it again if its
    resource leaves: far smaller than the parsed tree or the whole stanza,
    and smaller as bytes than as a string. In an attribute value '>' is
    always escaped, so the first '>' ends the root's start tag; a request
    always has a child, so it ends with '</iq>'.
    """
    return request[request.index(">") + 1 : -5].encode("utf-8")


#: The condition for requests in flight when the connection to the server is
#: lost, or still unanswered when a shutdown's grace period ends: type wait,
#: so the requester may ask again.
CONNECTION_LOST = "recipient-unavailable"
SHUTTING_DOWN = "The service is shutting down"


class IQDispatcher(XMPPHandler):
    """
    Forwards IQ requests to the target's resources and routes the replies.

    @ivar jat: the L{Translator} for the component's addresses.
    @ivar target: the target's bare JID.
    @ivar resources: the target's L{clientproxy.resources.ResourceSet}.
    @ivar strategy: the L{clientproxy.istrategy.IDispatchStrategy}.
    @ivar pending: the L{clientproxy.pending.PendingTable}.
    @ivar stats: the L{clientproxy.stats.Stats} to count into.
    @ivar policy: the L{clientproxy.policy.Policy} for requesters.
    @ivar maxPending: most requests from outside in flight (0: no bound).
    @ivar maxPendingPerRequester: most in flight from one bare JID.
    @ivar closing: set by L{shutdown}: new requests are refused.
    """

    log = Logger()

    def __init__(
        self,
        component,
        target,
        resources,
        strategy,
        pending,
        stats,
        policy,
        maxPending=MAX_PENDING,
        maxPendingPerRequester=MAX_PENDING_PER_REQUESTER,
    ):
        XMPPHandler.__init__(self)
        self.policy = policy
        self.maxPending = maxPending
        self.maxPendingPerRequester = maxPendingPerRequester
        self._inFlight = {}
        self.jat = Translator(component)
        self.target = target
        self.resources = resources
        self.strategy = strategy
        self.pending = pending
        self.stats = stats
        resources.whenRemoved(self._resourceRemoved)
        # Bound once: every pending request refers to these two objects.
        self._replied = self._routeReply
        self._failed = self._answerFailure
        self._ids = itertools.count(1)
        self.closing = False

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

    def shutdown(self, clock, grace):
        """
        Stop taking requests, give those in flight C{grace} seconds, then
        answer what is left with C{recipient-unavailable}.

        @return: a Deferred that fires once no request is in flight.
        """
        self.closing = True
        timer = clock.callLater(grace, self.pending.failAll, CONNECTION_LOST, SHUTTING_DOWN)
        if len(self.pending):
            self.log.info(
                "Shutting down: {count} requests in flight get {grace} s",
                count=len(self.pending),
                grace=grace,
            )

        def done(result):
            if timer.active():
                timer.cancel()
            return result

        return self.pending.whenEmpty().addBoth(done)

    def onIQ(self, iq):
        """
        Sort an IQ: a request from outside, a reply from the target, or
        something to drop.
        """
        claimed = claim(iq)
        if claimed is None:
            return
        sender, recipient, kind = claimed
        if not sender or not recipient:
            self.stats.drop(iq, "no-address")
        elif kind in REQUEST_TYPES and self.closing:
            self._refuse(iq, "service-unavailable", text=SHUTTING_DOWN)
        elif sender.partition("/")[0] == self.target:
            if kind in REPLY_TYPES:
                self._onReply(iq, sender, recipient)
            elif kind in REQUEST_TYPES:
                self._onTargetRequest(iq, sender, recipient)
            else:
                self.stats.drop(iq, "bad-type")
        elif kind in REQUEST_TYPES:
            self._onRequest(iq, kind, sender)
        elif kind in REPLY_TYPES:
            self._onPeerReply(iq, sender)
        else:
            self.stats.drop(iq, "bad-type")

    def _onRequest(self, iq, kind, requester):
        stanzaID = iq.getAttribute("id")
        if stanzaID is None:
            self.stats.drop(iq, "request-without-id")
            return
        refusal = self.policy.refusal(requester)
        if refusal is not None:
            self._refuse(iq, *refusal)
            return
        if childElementCount(iq) != 1:
            self._refuse(iq, "bad-request", text="An IQ request has exactly one child element")
            return
        encoded = self.jat.encode(requester)
        if encoded is None:
            self._refuse(
                iq, "jid-malformed", text="The requester's address is too long to translate"
            )
            return
        key = (encoded, stanzaID)
        if key in self.pending:
            self._refuse(iq, "bad-request", text="A request with this id is already in flight")
            return
        bare = requester.partition("/")[0]
        held = self._inFlight.get(bare, 0)
        if (self.maxPending and len(self.pending) >= self.maxPending) or (
            self.maxPendingPerRequester and held >= self.maxPendingPerRequester
        ):
            self._refuse(iq, "resource-constraint", text="Too many requests in flight")
            return
        available = self.resources.available
        if not available:
            self._refuse(iq, "service-unavailable")
            return
        recipient = iq["to"]
        resource = self.strategy.choose(available, requester)
        iq["from"] = self.jat.address(encoded)
        iq["to"] = resource.jid
        request = toXml(iq)
        if self.policy.tooLarge(request):
            self._answer(recipient, requester, stanzaID, *TOO_LARGE)
            return
        entry = self.pending.add(
            key, requester, payloadOf(request) if kind == "get" else None, resource
        )
        args = (entry,)
        entry.addCallbacks(self._replied, self._failed, callbackArgs=args, errbackArgs=args)
        self._inFlight[bare] = held + 1
        self.stats.requests["forwarded"] += 1
        self.send(request)

    def _release(self, requester):
        """
        A request from C{requester} is answered: one less in flight.
        """
        bare = requester.partition("/")[0]
        held = self._inFlight[bare] - 1
        if held:
            self._inFlight[bare] = held
        else:
            del self._inFlight[bare]

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
        self._release(entry.requester)
        self.stats.latency.observe(self.pending.age(entry))
        reply["to"] = entry.requester
        reply["from"] = self.jat.component
        self.stats.requests["answered"] += 1
        self.send(toXml(reply))

    def _answerFailure(self, failure, entry):
        failure.trap(StanzaError)
        self._release(entry.requester)
        self.stats.latency.observe(self.pending.age(entry))
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

    def _onTargetRequest(self, iq, sender, recipient):
        """
        A resource of the target asks a peer: C{component/<encoded peer>}.
        The request goes to the peer from the component's bare JID with an
        id of the component's own (two resources may use the same id), and
        only the peer's reply, in time, goes back to the resource that
        asked.
        """
        stanzaID = iq.getAttribute("id")
        if stanzaID is None:
            self.stats.drop(iq, "request-without-id")
            return
        resource = self.resources.get(sender)
        if resource is None:
            self._refuse(
                iq, "service-unavailable", text="Only an available resource of the target may ask"
            )
            return
        encoded = self.jat.decode(recipient)
        if encoded is None:
            self._refuse(iq, "service-unavailable", text="Address a peer as component/<peer JID>")
            return
        peer = self.jat.peer(encoded)
        if peer is None:
            self._refuse(iq, "jid-malformed", text="Not a peer's address")
            return
        if childElementCount(iq) != 1:
            self._refuse(iq, "bad-request", text="An IQ request has exactly one child element")
            return
        ownID = "cp%d" % (next(self._ids),)
        entry = self.pending.add((peer, ownID, REVERSE), sender, None, resource, stanzaID)
        entry.addCallbacks(
            self._returnReply, self._returnFailure, callbackArgs=(entry,), errbackArgs=(entry,)
        )
        iq["id"] = ownID
        iq["from"] = self.jat.component
        iq["to"] = peer
        self.stats.requests["forwarded-from-target"] += 1
        self.send(iq)

    def _onPeerReply(self, reply, sender):
        entry = self.pending.get((sender, reply.getAttribute("id"), REVERSE))
        if entry is None:
            self.stats.drop(reply, "reply-from-outsider")
        else:
            self.pending.complete(entry, reply)

    def _returnReply(self, reply, entry):
        reply["id"] = entry.stanzaID
        reply["to"] = entry.requester
        reply["from"] = self.jat.address(entry.key[0])
        self.stats.requests["answered-to-target"] += 1
        self.send(reply)

    def _returnFailure(self, failure, entry):
        failure.trap(StanzaError)
        if entry.requester not in self.resources:
            # The resource that asked is gone: nobody to answer.
            self.stats.dropped["answer-to-gone-resource"] += 1
            return
        error = failure.value
        self.stats.requests["error-to-target:" + error.condition] += 1
        self.send(
            errorReply(
                self.jat.address(entry.key[0]),
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
        for entry in self.pending.entriesOf(resource):
            available = self.resources.available
            if entry.retry is not None and available:
                other = self.strategy.choose(available, entry.requester)
                request = RETRY % (
                    escapeToXml(entry.stanzaID, True),
                    escapeToXml(self.jat.address(entry.key[0]), True),
                    escapeToXml(other.jid, True),
                    entry.retry.decode("utf-8"),
                )
                self.pending.reassign(entry, other)
                self.stats.requests["retried"] += 1
                self.send(request)
            else:
                self.pending.fail(entry, "recipient-unavailable")

    def _refuse(self, iq, condition, errorType=None, text=None):
        """
        Answer a request with an error from the address it was sent to.
        """
        self._answer(
            iq.getAttribute("to"),
            iq.getAttribute("from"),
            iq.getAttribute("id"),
            condition,
            errorType,
            text,
        )

    def _answer(self, sender, recipient, stanzaID, condition, errorType=None, text=None):
        self.stats.requests["error:" + condition] += 1
        self.send(errorReply(sender, recipient, stanzaID, condition, text, errorType=errorType))
