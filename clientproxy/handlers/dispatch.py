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
The errors the component answers with itself are L{clientproxy.routing.errors}.

Which resource a request goes to is decided by L{clientproxy.routing.selection}
(usable resources, feature match, minus recent refusers, affinity or
strategy). A C{feature-not-implemented} or C{service-unavailable} error
from the resource asked means it did not act on the request: it is sent
to another candidate not yet tried (a C{set} too: it was refused, not
lost), within its original deadline, and the refusal is learnt; when every
candidate refused, the requester gets the last refusal as it came.

A resource that leaves with requests in flight: each that is safe to repeat
(a C{get}, or a C{set} whose child is in an C{--idempotent} namespace) is
sent once at once to another candidate; with C{--hold}, one that finds
none waits in the line (L{clientproxy.routing.pending}) for the next; the
rest get C{recipient-unavailable}. With C{--hold}, a request that no
resource can serve when it comes waits in that line too, instead of
C{service-unavailable} at once; whenever a resource comes (or what one
supports becomes known), the line is served in order through the same
selection.

A resource of the target may also ask a peer: an IQ request to
C{component/<encoded peer>} goes to the peer from the component's bare JID,
and the peer's reply goes back to that resource, with the same checks. The
peer may be another resource of the target: any reply to the component's
bare JID answers one of the component's own requests.
"""

from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from wokkel.subprotocols import XMPPHandler

from clientproxy.xmpp.jat import Translator
from clientproxy.routing.pending import (
    MAX_PENDING,
    MAX_PENDING_BYTES,
    MAX_PENDING_FROM_TARGET,
    MAX_PENDING_PER_REQUESTER,
    REVERSE,
    PendingTable,
)
from clientproxy.routing.errors import (
    CONNECTION_LOST,
    DUPLICATE_ID,
    HOLD_PASSED,
    INTERNAL,
    NO_PEER_ADDRESS,
    NO_RESOURCE,
    NOT_A_PEER,
    NOT_A_RESOURCE,
    NOT_ONE_CHILD,
    RESOURCE_LEFT,
    SHUTTING_DOWN,
    TIMEOUT,
    TOO_LARGE,
    TOO_MANY,
)
from clientproxy.handlers.refusal import refuse
from clientproxy.routing.refusals import REFUSALS
from clientproxy.routing.resources import Resource
from clientproxy.state.interfaces import WRONG_RESOURCE
from clientproxy.state.local import LocalFacts, LocalRequests
from clientproxy.xmpp.stanzas import (
    FROM_TARGET,
    NO_ADDRESS,
    REPLY_TYPES,
    REQUEST_TYPES,
    StanzaIDs,
    bareOf,
    errorReply,
    onlyChildElement,
    sort,
)
from clientproxy.xmpp.writer import escapeAttribute, parseStanza, stanzaBytes

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

#: Resources whose counters are kept after they left, at most.
MAX_RESOURCE_STATS = 1000


def errorConditionOf(stanza):
    """
    The RFC 6120 condition of an error stanza (C{None} if it has none), and
    whether its C{<error/>} carries an application-specific condition too
    (a child outside the stanzas namespace, RFC 6120 8.3.2): the service's
    own answer, as Jitsi's focus gives with C{<reservation-error/>}.

    Only an C{<error/>} in the stanza's own namespace counts, and the last
    one: a service may echo the request's payload before its error (as
    Twisted's C{StanzaError.toResponse} does), and a requester chooses that
    payload, C{<error xmlns='urn:x'>} elements included.
    """
    error = None
    for child in stanza.elements():
        if child.name == "error" and child.uri == stanza.uri:
            error = child
    condition, application = None, False
    if error is not None:
        for element in error.elements():
            if element.uri != NS_STANZAS:
                application = True
            elif condition is None and element.name != "text":
                condition = element.name
    return condition, application


def retarget(request, old, new):
    """
    A serialised request (UTF-8) with its C{to} changed from C{old} to
    C{new}. The first C{ to='old'} is the root's attribute: no attribute
    value holds an unescaped quote, so the sequence cannot start inside
    one, and the root's start tag comes first.
    """
    return request.replace(
        (" to='%s'" % (escapeAttribute(old),)).encode("utf-8"),
        (" to='%s'" % (escapeAttribute(new),)).encode("utf-8"),
        1,
    )


class IQDispatcher(XMPPHandler):
    """
    Forwards IQ requests to the target's resources and routes the replies.

    @ivar jat: the L{Translator} for the component's addresses.
    @ivar target: the target's bare JID.
    @ivar resources: the target's L{clientproxy.routing.resources.ResourceSet}.
    @ivar selector: the L{clientproxy.routing.selection.Selector}: which resource
        serves a request.
    @ivar pending: the L{PendingTable} of the requests in flight, both ways;
        it owns their counts and bounds.
    @ivar stats: the L{clientproxy.ops.stats.Stats} to count into.
    @ivar policy: the L{clientproxy.routing.policy.Policy} for requesters.
    @ivar closing: set by L{shutdown}: new requests are refused.
    @ivar requests: the L{clientproxy.state.interfaces.IRequestsInFlight}
        that says whether this process may answer an entry of the table.
    @ivar facts: the L{clientproxy.state.interfaces.IFacts} told what is
        learnt of the resources (refusals).
    @ivar idempotent: the namespaces whose C{set}s are safe to repeat
        (C{--idempotent}).
    """

    log = Logger()

    def __init__(
        self,
        component,
        target,
        resources,
        selector,
        stats,
        policy,
        clock,
        timeout,
        maxPending=MAX_PENDING,
        maxPendingPerRequester=MAX_PENDING_PER_REQUESTER,
        maxPendingFromTarget=MAX_PENDING_FROM_TARGET,
        ids=None,
        requests=LocalRequests,
        maxPendingBytes=MAX_PENDING_BYTES,
        facts=None,
        hold=0.0,
        idempotent=(),
    ):
        """
        @param requests: called with the L{PendingTable} for the
            L{clientproxy.state.interfaces.IRequestsInFlight} over it.
        @param hold: seconds a request may wait in line for a resource
            (C{--hold}; 0: no line).
        @param idempotent: see L{idempotent}.
        """
        XMPPHandler.__init__(self)
        self.policy = policy
        self.jat = Translator(component)
        self.target = target
        self.resources = resources
        self.selector = selector
        self.pending = PendingTable(
            clock,
            timeout,
            self._answer,
            maxPending,
            maxPendingPerRequester,
            maxPendingFromTarget,
            maxPendingBytes,
            # Held requests are addressed to nobody: no reply can match them.
            line=Resource("", ""),
        )
        self.pending.setHold(hold)
        self.idempotent = frozenset(idempotent)
        self.stats = stats
        resources.whenRemoved(self._resourceRemoved)
        resources.whenAdded(self._serveLine)
        resources.whenLearnt(self._serveLine)
        self._ids = StanzaIDs() if ids is None else ids
        self.closing = False
        self.requests = requests(self.pending)
        self.facts = LocalFacts() if facts is None else facts

    def configure(self, idempotent):
        """
        Change the C{--idempotent} namespaces (a reload): they apply to the
        requests whose resource leaves from now on.
        """
        self.idempotent = frozenset(idempotent)

    def connectionInitialized(self):
        # The ids the handlers share (keepalive, disco#info queries, the
        # target's requests) get a new prefix on each connection, here
        # once for all of them.
        self._ids.renew()
        self.xmlstream.addRoute("iq", self.onIQ)

    def connectionLost(self, reason):
        XMPPHandler.connectionLost(self, reason)
        self.requests.connectionLost()

    def shutdown(self, clock, grace):
        """
        Stop taking requests, give those in flight C{grace} seconds, then
        answer what is left with C{recipient-unavailable}.

        @return: a Deferred that fires once no request is in flight and
            every answer is written.
        """
        self.closing = True
        timer = clock.callLater(
            grace, self.pending.failAll, CONNECTION_LOST.condition, SHUTTING_DOWN.text
        )
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

        d = self.pending.whenEmpty()
        d.addCallback(lambda _: self.requests.settled())
        return d.addBoth(done)

    def onIQ(self, iq):
        """
        Sort an IQ: a request from outside, a reply from the target, or
        something to drop.
        """
        sorted = sort(iq, self.target)
        if sorted is None:
            return
        side, sender, recipient, kind = sorted
        if side is NO_ADDRESS:
            self.stats.drop(iq, "no-address")
        elif kind in REQUEST_TYPES and self.closing:
            self._refuse(iq, SHUTTING_DOWN)
        elif kind in REPLY_TYPES and recipient == self.jat.component:
            # The component's own request asked it, whoever it is: the
            # target's other resources may be asked too.
            self._onPeerReply(iq, side, sender)
        elif side is FROM_TARGET:
            if kind in REPLY_TYPES:
                self._onReply(iq, sender, recipient)
            elif kind in REQUEST_TYPES:
                self._onTargetRequest(iq, sender, recipient)
            else:
                self.stats.drop(iq, "bad-type")
        elif kind in REQUEST_TYPES:
            self._onRequest(iq, kind, sender, recipient)
        elif kind in REPLY_TYPES:
            self._onPeerReply(iq, side, sender)
        else:
            self.stats.drop(iq, "bad-type")

    def _onRequest(self, iq, kind, requester, recipient):
        stanzaID = iq.getAttribute("id")
        if stanzaID is None:
            self.stats.drop(iq, "request-without-id")
            return
        refusal = self.policy.admit(requester, iq)
        if refusal is not None:
            self._refuse(iq, refusal)
            return
        child = onlyChildElement(iq)
        if child is None:
            self._refuse(iq, NOT_ONE_CHILD)
            return
        encoded = self.jat.encode(requester)
        key = (encoded, stanzaID)
        if key in self.pending:
            self._refuse(iq, DUPLICATE_ID)
            return
        if not self.pending.admits(requester):
            self._refuse(iq, TOO_MANY)
            return
        topic = self.selector.refusals.topicOf(child, kind)
        resource = self.selector.choose(
            child.uri, topic, self.selector.keyOf(child, requester), requester
        )
        if resource is None:
            if not self._mayWait(child.uri):
                self._refuse(iq, NO_RESOURCE)
                return
            resource = self.pending.line
        attributes = iq.attributes
        attributes["from"] = self.jat.address(encoded)
        attributes["to"] = resource.jid
        request = stanzaBytes(iq)
        if self.policy.tooLarge(request):
            self._sendError(recipient, requester, stanzaID, *TOO_LARGE)
            return
        entry = self.pending.add(
            key,
            requester,
            resource,
            request,
            resendable=True,
            via=None if recipient == self.jat.component else recipient,
        )
        if entry is None:
            self._sendError(recipient, requester, stanzaID, *TOO_MANY)
            return
        entry.topic = topic
        why = "held" if resource is self.pending.line else "forwarded"
        self.requests.record(entry, self._forward, request, why)

    def _mayWait(self, feature):
        """
        Whether a request in C{feature} that no resource can serve now
        waits in line (C{--hold}): when no usable resource is online at all
        (the service is restarting); when resources are online but none can
        serve C{feature} (C{--match-features strict}), only while what one
        of them supports is still being asked (its features come within
        seconds), or when C{feature} is one the operator named
        C{--idempotent} (a focus restarting beside another session of its
        account). A namespace an outsider makes up does not wait on
        resources that are known not to serve it: nothing would, and the
        line would hold room and work for nobody.
        """
        if not self.pending.hold:
            return False
        available = self.resources.available
        if not available or feature in self.idempotent:
            return True
        return any(resource.features is None for resource in available)

    def _forward(self, entry, refusal, request, why):
        """
        Send C{request} for C{entry}, once it may be (L{IRequestsInFlight.record});
        or answer C{refusal} instead. An entry in the line is not sent: it
        waits, counted as C{why}.
        """
        if refusal is not None:
            self._sendError(self._answerFrom(entry), entry.requester, entry.stanzaID, *refusal)
            return
        self.stats.requests[why] += 1
        resource = entry.resource
        if resource is self.pending.line:
            return
        if not entry.fromTarget:
            self.stats.resources[resource.jid]["requests"] += 1
        self.send(request)

    def _onReply(self, reply, sender, recipient):
        key = (self.jat.decode(recipient), reply.getAttribute("id"))
        self.requests.take(key, sender, self._replyTaken, reply)

    def _replyTaken(self, entry, reply):
        """
        The entry a reply of the target answers, once this process may
        answer it (L{IRequestsInFlight.take}): the reply is routed.
        """
        if entry is None:
            self.stats.drop(reply, "unknown-reply")
        elif entry is WRONG_RESOURCE:
            self.stats.drop(reply, "reply-from-wrong-resource")
        else:
            self._onResourceReply(entry, reply)

    def _onResourceReply(self, entry, reply):
        """
        The reply of the resource asked, checked: a result is routed (and
        the resource is no refuser of such requests); an error is looked at
        first.
        """
        if reply.getAttribute("type") == "error":
            self._onErrorReply(entry, reply)
            return
        refusals = self.selector.refusals
        resource = entry.resource
        if refusals.concerns(resource):
            topic = entry.topic or self._describe(entry)[1]
            if refusals.served(resource, topic):
                self.facts.learnt(("served", resource.jid, topic))
        self.pending.complete(entry, reply)

    def _onErrorReply(self, entry, reply):
        """
        An error from the resource asked: a refusal is learnt and the
        request sent to another candidate not yet tried; other errors, a
        refusal with an application-specific condition (the service's own
        answer), and the last refusal go to the requester as they came.
        """
        resource = entry.resource
        counts = self.stats.resources[resource.jid]
        condition, application = errorConditionOf(reply)
        if application or condition not in REFUSALS:
            counts["errors"] += 1
            self.pending.complete(entry, reply)
            return
        counts["refusals"] += 1
        feature, topic, key = self._describe(entry)
        if not self.selector.refusals.refused(resource, topic, entry.requester):
            self.pending.complete(entry, reply)
            return
        self.facts.learnt(("refused", resource.jid, entry.requester, topic))
        entry.tried = (entry.tried or ()) + (resource,)
        other = self.selector.choose(feature, topic, key, entry.requester, exclude=entry.tried)
        if other is None:
            self.pending.complete(entry, reply)
            return
        self._resend(entry, other, "refused")

    def _describe(self, entry):
        """
        The feature, the topic and the affinity key of a request in flight,
        read back from the request kept: only when it must be sent again
        (after a refusal, or its resource left), or when an entry taken from
        another process is answered by a resource refusals are remembered
        of.
        """
        request = parseStanza(entry.request.decode("utf-8"))
        child = request.firstChildElement()
        topic = entry.topic = self.selector.refusals.topicOf(child, request.getAttribute("type"))
        return child.uri, topic, self.selector.keyOf(child, entry.requester)

    def _resend(self, entry, other, why):
        """
        Send the request of C{entry} again, to C{other}, as first sent but
        for its recipient (kept as sent, for the next time); or, C{other}
        being the table's line, put it back in line. C{entry} may come
        from another process (L{adopted}, or taken from another's part of
        the table): it is this process's own from now on.
        """
        request = entry.request = retarget(entry.request, entry.resource.jid, other.jid)
        if other is not self.pending.line and self.policy.tooLarge(request):
            # Held with the line's empty address: measured now, addressed.
            self.pending.fail(entry, TOO_LARGE.condition, TOO_LARGE.text)
            return
        if self.pending.get(entry.key) is entry:
            if not self.pending.reassign(entry, other):
                self.pending.fail(entry, TOO_MANY.condition, TOO_MANY.text)
                return
        else:
            entry.resource = other
            self.pending.adopt(entry)
        self.requests.record(entry, self._forward, request, why)

    def _answer(self, entry, outcome):
        """
        The pending table's way out: answered once this process may
        (L{IRequestsInFlight.claim}), or anyway if that cannot be found out
        (the entry is this process's own and must be answered).
        """
        self.requests.claim(entry, True, self._settle, outcome)

    def _settle(self, entry, outcome):
        """
        The one way out of the pending table: answer C{entry} with
        C{outcome} (the reply, or a L{StanzaError}), exactly once, from
        the address the request was sent to. If building or sending that
        answer fails, the failure is logged now, with its traceback,
        counted, and the requester still gets C{internal-server-error}
        (wait).
        """
        fromTarget = entry.fromTarget
        if not fromTarget:
            self.stats.latency.observe(self.pending.age(entry))
            if entry.resource is self.pending.line:
                self.stats.requests["held-unserved"] += 1
            elif outcome.__class__ is StanzaError and outcome.condition == TIMEOUT.condition:
                self.stats.resources[entry.resource.jid]["timeouts"] += 1
        elif entry.requester not in self.resources:
            # The resource that asked is gone: nobody to answer.
            self.stats.dropped["answer-to-gone-resource"] += 1
            return
        try:
            if isinstance(outcome, StanzaError):
                outcomeName = ("error-to-target:" if fromTarget else "error:") + outcome.condition
                stanza = errorReply(
                    self._answerFrom(entry),
                    entry.requester,
                    entry.stanzaID,
                    outcome.condition,
                    outcome.text,
                )
            else:
                outcomeName = "answered-to-target" if fromTarget else "answered"
                attributes = outcome.attributes
                attributes["id"] = entry.stanzaID
                attributes["to"] = entry.requester
                attributes["from"] = self._answerFrom(entry)
                stanza = stanzaBytes(outcome)
            self.send(stanza)
        except Exception:
            self.log.failure(
                "Answering request {id} of {requester} failed; answering "
                "internal-server-error instead",
                id=entry.stanzaID,
                requester=entry.requester,
            )
            self._sendError(self._answerFrom(entry), entry.requester, entry.stanzaID, *INTERNAL)
        else:
            self.stats.requests[outcomeName] += 1

    def _answerFrom(self, entry):
        """
        The address C{entry}'s answer comes from: the one the request was
        sent to (RFC 6120 8.1.2.1); for a request started by the target,
        the peer's encoded address.
        """
        if entry.fromTarget:
            return self.jat.address(entry.key[0])
        return entry.via or self.jat.component

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
            self._refuse(iq, NOT_A_RESOURCE)
            return
        encoded = self.jat.decode(recipient)
        if encoded is None:
            self._refuse(iq, NO_PEER_ADDRESS)
            return
        peer = self.jat.peer(encoded)
        if peer is None:
            self._refuse(iq, NOT_A_PEER)
            return
        if onlyChildElement(iq) is None:
            self._refuse(iq, NOT_ONE_CHILD)
            return
        if not self.pending.admitsFromTarget():
            self._refuse(iq, TOO_MANY)
            return
        ownID = self._ids("cp")
        entry = self.pending.add((peer, ownID, REVERSE), sender, resource, stanzaID=stanzaID)
        iq["id"] = ownID
        iq["from"] = self.jat.component
        iq["to"] = peer
        self.requests.record(entry, self._forward, stanzaBytes(iq), "forwarded-from-target")

    def _onPeerReply(self, reply, side, sender):
        """
        A reply to a request the target started: from outside, checked by
        the policy like anything else an outsider sends (over the rate, or
        from a refused sender, it is dropped and counted, never answered:
        RFC 6120 8.2.3); from another resource of the target, not (the
        access lists and the rate are for outsiders). Then routed if it
        matches one.
        """
        refusal = None if side is FROM_TARGET else self.policy.admit(sender, reply)
        if refusal is not None:
            self._refuse(reply, refusal)
            return
        key = (sender, reply.getAttribute("id"), REVERSE)
        self.requests.take(key, "", self._peerReplyTaken, reply, sender)

    def _peerReplyTaken(self, entry, reply, sender):
        if entry:
            self.pending.complete(entry, reply)
        else:
            self._unmatched(reply, sender)

    def _unmatched(self, reply, sender):
        """
        Drop a reply to the component's bare JID that answers none of its
        requests: C{unknown-reply} from the target (like one to an encoded
        address), C{reply-from-outsider} from anyone else.
        """
        outsider = bareOf(sender) != self.target
        self.stats.drop(reply, "reply-from-outsider" if outsider else "unknown-reply")

    def _resourceRemoved(self, resource, origin):
        """
        A resource went away with requests in flight: each is retried,
        put back in line or answered (L{_retryOrFail}), once this process
        may (L{IRequestsInFlight.claim}).
        """
        self._pruneResourceStats()
        for entry in self.pending.entriesOf(resource):
            self.requests.claim(entry, False, self._retryOrFail)

    def _retryOrFail(self, entry):
        """
        The resource of C{entry} left (or the process that held it is
        gone). A request safe to repeat (a C{get}, or a C{set} in an
        C{--idempotent} namespace, as configured now) goes at once to
        another candidate, once; with C{--hold}, one that finds none, or
        was sent at once already, waits in line for the next resource.
        Anything else is answered C{recipient-unavailable}: a C{set} may
        have been acted on. A request that was waiting in line (taken over
        from a process gone) goes to a resource if one can serve it, and
        waits on otherwise. A request the resource itself started has
        nobody left to answer (L{_settle} drops it).
        """
        if entry.fromTarget:
            self.pending.fail(entry, RESOURCE_LEFT.condition)
            return
        feature, topic, key = self._describe(entry)
        line = self.pending.line
        waiting = entry.resource is line
        if not (waiting or topic[2] == "get" or feature in self.idempotent):
            self.pending.fail(entry, RESOURCE_LEFT.condition)
            return
        other = None
        if waiting or entry.resendable:
            other = self.selector.choose(feature, topic, key, entry.requester, entry.tried or ())
        if other is not None:
            if waiting:
                self._resend(entry, other, "sent-from-line")
                return
            entry.resendable = False
            self._resend(entry, other, "retried")
        elif self.pending.hold:
            self._resend(entry, line, "held" if waiting else "held-again")
        else:
            answer = HOLD_PASSED if waiting else RESOURCE_LEFT
            self.pending.fail(entry, answer.condition, answer.text)

    def _serveLine(self, *ignored):
        """
        A resource came, or what one supports became known: each request
        waiting in line, in the order they joined it, goes to the resource
        the selection now gives it (feature match, refusals, affinity),
        once this process may (L{IRequestsInFlight.claim}); the others wait
        on.
        """
        if not self.pending.lineLength:
            return
        # Namespaces (compacted, as topics hold them) no resource serves
        # now: a request in one that no resource refused yet is passed over
        # without reading its request again (the selection finds no
        # candidate whatever the rest), so a long line costs a parse per
        # request it moves, not per request it holds.
        unserved = set()
        for entry in self.pending.waiting():
            if not entry.tried and entry.topic is not None and entry.topic[0] in unserved:
                continue
            feature, topic, key = self._describe(entry)
            other = self.selector.choose(feature, topic, key, entry.requester, entry.tried or ())
            if other is not None:
                self.requests.claim(entry, False, self._leaveLine, other)
            elif not entry.tried:
                unserved.add(topic[0])

    def _leaveLine(self, entry, other):
        # Still waiting: not moved meanwhile by another turn of the line.
        if entry.resource is not self.pending.line or self.pending.get(entry.key) is not entry:
            return
        if self.resources.get(other.jid) is not other:
            # The resource chosen left while this process claimed the entry
            # (a round trip to Redis): choose again, or wait on.
            feature, topic, key = self._describe(entry)
            other = self.selector.choose(feature, topic, key, entry.requester, entry.tried or ())
            if other is None:
                return
        self._resend(entry, other, "sent-from-line")

    def serveLine(self):
        """
        Serve the line now (a reload changed what the selection gives).
        """
        self._serveLine()

    def adopted(self, entry):
        """
        C{entry} belonged to a process gone (docs/instances.md): a
        request of the target to a peer waits on here for the peer's reply,
        and so does a request from outside that may not be sent again (a
        C{set}) while its resource is there (it may have carried it out:
        its reply reaches any process, and is taken there); a C{get} is
        sent again, and a C{set} whose resource left is answered
        C{recipient-unavailable}, once this process may.
        """
        if entry.fromTarget or self._waitsForItsReply(entry):
            self.pending.adopt(entry)
        else:
            self.requests.claim(entry, False, self._retryOrFail)

    def _waitsForItsReply(self, entry):
        """
        Whether C{entry}, adopted, waits here for its resource's reply: a
        request that may not be sent again (a C{set} outside the
        C{--idempotent} namespaces), sent to a resource still there.
        """
        resource = entry.resource
        if resource is self.pending.line or self.resources.get(resource.jid) is not resource:
            return False
        feature, topic, _ = self._describe(entry)
        return topic[2] != "get" and feature not in self.idempotent

    def _pruneResourceStats(self):
        """
        Forget the counters of resources that have left, once there are
        more than L{MAX_RESOURCE_STATS}: clients that log in with a random
        resource each time must not grow them for ever.
        """
        counters = self.stats.resources
        if len(counters) > MAX_RESOURCE_STATS:
            for jid in [jid for jid in counters if jid not in self.resources]:
                del counters[jid]

    def _refuse(self, iq, refusal):
        """
        Answer an IQ refused with C{refusal} (L{refuse}).
        """
        refuse(self, iq, refusal, self.stats.requests)

    def _sendError(self, sender, recipient, stanzaID, condition, errorType=None, text=None):
        self.stats.requests["error:" + condition] += 1
        self.send(errorReply(sender, recipient, stanzaID, condition, text, errorType=errorType))
