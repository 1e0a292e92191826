"""
A model-based test of dispatch (hypothesis, rule-based): several
requesters, one of them hostile, ask a target whose resources each follow
a random policy per namespace, request type and requester (serve, refuse,
refuse with an application-specific condition, stay silent), while the
resources come and go and time passes. Everything goes through the real
handlers (L{tests.helpers.Harness}: the component's own stream, parser
and writer).

After every step:

 - no request is answered twice, and each answer goes to its requester
   with its id;
 - a request that some resource would serve, and that stayed online while
   the request was in flight, is never answered with a refusal
   (C{service-unavailable}, C{feature-not-implemented}): what the
   component learnt from other requesters' refusals may reorder the
   resources, never take one away;
 - a timeout means a resource asked stayed silent; C{recipient-unavailable}
   means a resource asked left;
 - with C{--hold} (drawn: none, shorter or longer than the timeout) a
   request no resource could serve waits, and one whose resource left
   waits for the next if it is safe to repeat; a C{set} outside the
   C{--idempotent} namespaces (drawn) is never sent again once a
   resource holding it left;
 - an error with an application-specific condition reaches the requester
   unchanged, from a resource that gave it;
 - every table stays under its bound.

At the end, once every timeout has passed, every request has had exactly
one answer.
"""

from hypothesis import settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.trial import unittest

from clientproxy.routing import selection
from clientproxy.xmpp.caps import NS_DISCO_INFO
from clientproxy.routing.refusals import MAX_RECORDS
from tests.helpers import COMPONENT, NS_STANZAS, TARGET, Harness
from tests.helpers import written as parseWritten

RESOURCES = ("r0", "r1", "r2")
NAMESPACES = ("urn:example:a", "urn:example:b")
KINDS = ("get", "set")
REQUESTERS = ("alice@example.org/a", "bob@example.org/b", "mallory@evil.example/m")
ACTIONS = ("serve", "feature-not-implemented", "service-unavailable", "application", "silent")
REFUSALS = ("feature-not-implemented", "service-unavailable")
TIMEOUT = 10

APPLICATION_ERROR = (
    "<error type='cancel'><service-unavailable xmlns='%s'/>"
    "<reservation-error xmlns='http://jitsi.org/protocol/focus' error-code='7'/></error>"
    % (NS_STANZAS,)
)

policies = st.fixed_dictionaries(
    {
        (resource, ns, kind, requester): st.sampled_from(ACTIONS + ("serve", "serve"))
        for resource in RESOURCES
        for ns in NAMESPACES
        for kind in KINDS
        for requester in REQUESTERS
    }
)


class Request:
    """
    What the model knows of one request.
    """

    def __init__(self, requester, stanzaID, ns, kind, servers):
        self.requester = requester
        self.stanzaID = stanzaID
        self.ns = ns
        self.kind = kind
        # Resources that would serve it, online when it was sent and not
        # gone since.
        self.servers = servers
        self.asked = []
        self.left = False
        # The resource it was sent to last, and whether that one left with
        # it in flight.
        self.holder = None
        self.lost = False
        self.answers = []


class Dispatch(RuleBasedStateMachine):
    """
    The model: resources online, their policies, requests and answers.
    """

    @initialize(
        policy=policies,
        affinity=st.sampled_from(["none", "requester"]),
        online=st.sets(st.sampled_from(RESOURCES), min_size=1),
        advertised=st.fixed_dictionaries(
            {resource: st.sets(st.sampled_from(NAMESPACES)) for resource in RESOURCES}
        ),
        hold=st.sampled_from([0, 3, TIMEOUT * 2]),
        idempotent=st.sets(st.sampled_from(NAMESPACES)),
    )
    def start(self, policy, affinity, online, advertised, hold, idempotent):
        self.h = Harness(
            timeout=TIMEOUT,
            matchFeatures="auto",
            affinity=affinity,
            hold=hold,
            idempotent=idempotent,
        )
        self.idempotent = idempotent
        self.policy = policy
        self.advertised = advertised
        self.online = set()
        self.requests = {}
        self.count = 0
        for resource in sorted(online):
            self.join(resource)

    def action(self, resource, request):
        return self.policy[(resource, request.ns, request.kind, request.requester)]

    # The stanzas the component writes, answered as the resources would.

    def pump(self):
        """
        Let the resources act on what the component wrote until it writes
        nothing more; record what reaches requesters.
        """
        while True:
            out = self.h.take()
            if not out:
                return
            for stanza in out:
                self.handle(stanza)

    def handle(self, stanza):
        to = stanza.getAttribute("to", "")
        sender = stanza.getAttribute("from", "")
        if stanza.name != "iq":
            return
        if to.startswith(TARGET + "/"):
            resource = to.split("/", 1)[1]
            child = stanza.firstChildElement()
            if sender == COMPONENT:
                # The component's own disco#info query: what the resource
                # advertises, which need not be what it serves.
                if resource in self.online and child is not None and child.uri == NS_DISCO_INFO:
                    features = "".join(
                        "<feature var='%s'/>" % (ns,) for ns in sorted(self.advertised[resource])
                    )
                    self.h.receive(
                        "<iq type='result' id='%s' from='%s' to='%s'><query xmlns='%s'>%s"
                        "</query></iq>" % (stanza["id"], to, COMPONENT, NS_DISCO_INFO, features)
                    )
                return
            requester = sender.split("/", 1)[1]
            request = self.requests[(requester, stanza["id"])]
            assert not request.lost or request.kind == "get" or request.ns in self.idempotent, (
                "a set sent again after its resource left: %s" % (request.stanzaID,)
            )
            request.asked.append(resource)
            request.holder = resource
            assert resource in self.online, "sent to a resource offline: %s" % (resource,)
            self.act(resource, request, stanza)
        elif stanza.getAttribute("type") in ("result", "error"):
            request = self.requests.get((to, stanza.getAttribute("id")))
            assert request is not None, "an answer to no request: %s" % (stanza.toXml(),)
            assert sender == COMPONENT, sender
            request.answers.append(stanza)
            self.check(request, stanza)

    def act(self, resource, request, forwarded):
        action = self.action(resource, request)
        if action == "silent":
            return
        head = "<iq type='%s' id='%s' from='%s' to='%s'>" % (
            "result" if action == "serve" else "error",
            forwarded["id"],
            forwarded["to"],
            forwarded["from"],
        )
        if action == "serve":
            body = "<answer xmlns='%s'/>" % (request.ns,)
        elif action == "application":
            body = APPLICATION_ERROR
        else:
            body = "<error type='cancel'><%s xmlns='%s'/></error>" % (action, NS_STANZAS)
        self.h.receive(head + body + "</iq>")

    def check(self, request, answer):
        """
        What an answer may be, given what the resources asked would do.
        """
        assert len(request.answers) == 1, "answered twice: %s" % (request.stanzaID,)
        if answer["type"] == "result":
            assert any(self.action(r, request) == "serve" for r in request.asked)
            return
        [error] = [c for c in answer.elements() if c.name == "error"]
        conditions = [c.name for c in error.elements() if c.uri == NS_STANZAS and c.name != "text"]
        application = [c for c in error.elements() if c.uri != NS_STANZAS]
        if application:
            assert any(self.action(r, request) == "application" for r in request.asked)
            assert (
                error.toXml()
                == parseWritten(("<iq>%s</iq>" % (APPLICATION_ERROR,)).encode("utf-8"))[0]
                .firstChildElement()
                .toXml()
            )
            return
        [condition] = conditions
        if condition in REFUSALS:
            assert not request.servers, "refused although %s would serve it (asked: %s)" % (
                request.servers,
                request.asked,
            )
        elif condition == "remote-server-timeout":
            assert any(self.action(r, request) == "silent" for r in request.asked)
        elif condition == "recipient-unavailable":
            assert request.left
        else:
            raise AssertionError("unexpected %s" % (condition,))

    # What happens.

    @rule(resource=st.sampled_from(RESOURCES))
    def join(self, resource):
        if resource in self.online:
            return
        self.online.add(resource)
        self.h.online(resource)
        self.pump()

    @rule(resource=st.sampled_from(RESOURCES))
    def leave(self, resource):
        if resource not in self.online:
            return
        self.online.discard(resource)
        for request in self.requests.values():
            if not request.answers:
                request.servers.discard(resource)
                if resource in request.asked:
                    request.left = True
                if request.holder == resource:
                    request.lost = True
        self.h.offline(resource)
        self.pump()

    @rule(
        requester=st.sampled_from(REQUESTERS),
        ns=st.sampled_from(NAMESPACES),
        kind=st.sampled_from(KINDS),
        shape=st.sampled_from(["%d", "caps-%d", "keepalive-%d", "cp-%d"]),
    )
    def request(self, requester, ns, kind, shape):
        self.count += 1
        stanzaID = shape % (self.count,)
        request = Request(requester, stanzaID, ns, kind, set())
        request.servers = {r for r in self.online if self.action(r, request) == "serve"}
        self.requests[(requester, stanzaID)] = request
        self.h.request(
            requester=requester, stanzaID=stanzaID, kind=kind, payload="<q xmlns='%s'/>" % (ns,)
        )
        self.pump()

    @precondition(lambda self: self.requests)
    @rule(seconds=st.sampled_from([1, 5, TIMEOUT]))
    def wait(self, seconds):
        self.h.clock.advance(seconds)
        self.pump()

    @invariant()
    def bounded(self):
        selector = self.h.dispatcher.selector
        assert len(getattr(selector, "refusals", ())) <= MAX_RECORDS
        assert len(selector._candidates) <= selection.CANDIDATE_CACHE_SIZE
        assert len(selector._affine) <= selection.AFFINITY_CACHE_SIZE
        assert len(self.h.pending) <= self.h.pending.maxPending

    def teardown(self):
        """
        Once every timeout has passed, every request has had one answer.
        """
        if not hasattr(self, "h"):
            return
        self.h.clock.advance(TIMEOUT * 3)
        self.pump()
        for request in self.requests.values():
            assert len(request.answers) == 1, (request.stanzaID, request.answers)


class DispatchModelTests(unittest.TestCase):
    def test_model(self):
        """
        The model, run by trial: random steps, the invariants checked after
        each.
        """
        run_state_machine_as_test(
            Dispatch, settings=settings(max_examples=200, stateful_step_count=40, deadline=None)
        )
