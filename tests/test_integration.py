"""
End-to-end tests: a real server (Prosody, then ejabberd), real client
connections for the requester and the resources of the target, and the
component connected over XEP-0114. Each set of tests runs against each
server (see L{tests.integration.onEveryServer}).
"""

from twisted.internet import defer
from twisted.words.xish import domish

from clientproxy.testing.client import echo, errorFor, hold
from tests.helpers import errorCondition
from tests.integration import COMPONENT, TARGET, onEveryServer, withTimeout


def proxied(client):
    """
    The requests a client received through the component (servers also
    send clients requests of their own, such as roster pushes).
    """
    return [iq for iq in client.requests if iq.getAttribute("from", "").startswith(COMPONENT + "/")]


def payload(text):
    query = domish.Element(("urn:test", "query"))
    item = query.addElement("item", content=text)
    item["n"] = "1"
    return query


class Holder:
    """
    A request handler that holds requests until told to answer them.
    """

    def __init__(self):
        self.held = []

    def __call__(self, iq):
        if not iq.getAttribute("from", "").startswith(COMPONENT + "/"):
            return echo(iq)
        d = defer.Deferred()
        self.held.append((iq, d))
        return d

    def answer(self, index=0, marker="answer"):
        iq, d = self.held[index]
        reply = echo(iq)
        reply.addElement(("urn:test", marker))
        d.callback(reply)


class RequestTests:
    """
    Requests and replies through the component.
    """

    @defer.inlineCallbacks
    def test_resourcesOnlineBeforeStartAreLearnt(self):
        """
        Resources online before the component starts are learnt, and a
        request's id and payload come back unchanged from the component's
        bare JID.
        """
        a = yield self.connect("svc", "a")
        b = yield self.connect("svc", "b")
        proxy = yield self.startProxy(resources=2)
        self.assertEqual(
            sorted(r.jid for r in proxy.dispatcher.resources.available),
            [TARGET + "/a", TARGET + "/b"],
        )
        alice = yield self.connect("alice", "x")
        sent = payload("hello \u2603")
        reply = yield withTimeout(alice.request(COMPONENT, sent, stanzaID="id-1"))
        self.assertEqual(reply["type"], "result")
        self.assertEqual(reply["id"], "id-1")
        self.assertEqual(reply["from"], COMPONENT)
        self.assertEqual(reply.firstChildElement().toXml(), sent.toXml())
        [request] = proxied(a) + proxied(b)
        self.assertEqual(request["from"], COMPONENT + "/alice@localhost/x")
        self.assertEqual(request["id"], "id-1")

    @defer.inlineCallbacks
    def test_errorReplyPassesThrough(self):
        """
        A resource's error reaches the requester from the component's bare JID,
        with its id and condition unchanged, through a real server.
        """
        yield self.connect("svc", "a", onRequest=errorFor("item-not-found"))
        yield self.startProxy(resources=1)
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(alice.request(COMPONENT, stanzaID="e1"))
        self.assertEqual((reply["type"], reply["id"], reply["from"]), ("error", "e1", COMPONENT))
        self.assertEqual(errorCondition(reply), ("item-not-found", "cancel"))

    @defer.inlineCallbacks
    def test_requestsSpreadOverResources(self):
        """
        Requests are spread over the available resources: each of two gets some
        of forty, and every one is answered.
        """
        a = yield self.connect("svc", "a")
        b = yield self.connect("svc", "b")
        yield self.startProxy(resources=2)
        alice = yield self.connect("alice", "x")
        replies = yield withTimeout(
            defer.gatherResults([alice.request(COMPONENT) for _ in range(40)])
        )
        self.assertEqual({r["type"] for r in replies}, {"result"})
        self.assertGreater(len(proxied(a)), 0)
        self.assertGreater(len(proxied(b)), 0)
        self.assertEqual(len(proxied(a)) + len(proxied(b)), 40)

    @defer.inlineCallbacks
    def test_burstOf500(self):
        """
        500 concurrent requests from two requesters are answered completely,
        each with its own id.
        """
        yield self.connect("svc", "a")
        yield self.connect("svc", "b")
        proxy = yield self.startProxy(resources=2)
        alice = yield self.connect("alice", "x")
        bob = yield self.connect("bob", "y")
        requests = {}
        for i in range(250):
            for client in (alice, bob):
                stanzaID = "%s-%d" % (client.jid.user, i)
                requests[stanzaID] = client.request(COMPONENT, payload(stanzaID), stanzaID=stanzaID)
        replies = yield withTimeout(defer.gatherResults(list(requests.values())), 60)
        self.assertEqual(len(replies), 500)
        for stanzaID, reply in zip(requests, replies):
            self.assertEqual((reply["type"], reply["id"]), ("result", stanzaID))
            self.assertEqual(str(reply.firstChildElement().firstChildElement()), stanzaID)
        self.assertEqual(proxy.stats.requests["answered"], 500)
        self.assertEqual(len(proxy.dispatcher.pending), 0)

    @defer.inlineCallbacks
    def test_noResource(self):
        """
        With no resource of the target online, a requester gets
        service-unavailable (cancel) from the component's bare JID at once, not
        a timeout.
        """
        yield self.startProxy()
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(alice.request(COMPONENT, stanzaID="n1"), 5)
        self.assertEqual((reply["type"], reply["from"]), ("error", COMPONENT))
        self.assertEqual(errorCondition(reply), ("service-unavailable", "cancel"))

    @defer.inlineCallbacks
    def test_timeout(self):
        """
        A request the resource never answers gets remote-server-timeout (wait),
        with its id, once the component's timeout passes.
        """
        yield self.connect("svc", "a", onRequest=hold)
        yield self.startProxy(resources=1, timeout=1)
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(alice.request(COMPONENT, stanzaID="t1"))
        self.assertEqual((reply["type"], reply["id"]), ("error", "t1"))
        self.assertEqual(errorCondition(reply), ("remote-server-timeout", "wait"))

    @defer.inlineCallbacks
    def test_onlyTheAskedResourceIsRouted(self):
        """
        A third party, a resource other than the one asked, and an
        unsolicited reply from the target are never routed to the requester;
        the asked resource's reply is, once.
        """
        holders = {"a": Holder(), "b": Holder()}
        a = yield self.connect("svc", "a", onRequest=holders["a"])
        b = yield self.connect("svc", "b", onRequest=holders["b"])
        proxy = yield self.startProxy(resources=2)
        alice = yield self.connect("alice", "x")
        mallory = yield self.connect("mallory", "m")
        received = []
        alice.xmlstream.addObserver("/iq", received.append, priority=1)
        answer = alice.request(COMPONENT, stanzaID="q1")
        yield self.waitUntil(lambda: proxied(a) or proxied(b), "the request to arrive")
        asked, other = ("a", b) if proxied(a) else ("b", a)
        encoded = COMPONENT + "/alice@localhost/x"

        def forged(client, stanzaID, marker):
            iq = domish.Element((None, "iq"))
            iq["type"] = "result"
            iq["id"] = stanzaID
            iq["to"] = encoded
            iq.addElement(("urn:test", marker))
            client.send(iq)

        forged(other, "q1", "from-other-resource")
        forged(mallory, "q1", "from-third-party")
        forged(other, "never-asked", "unsolicited")
        yield self.waitUntil(lambda: sum(proxy.stats.dropped.values()) == 3, "three drops")
        self.assertEqual(
            dict(proxy.stats.dropped),
            {"reply-from-wrong-resource": 1, "reply-from-outsider": 1, "unknown-reply": 1},
        )
        self.assertEqual(received, [])
        holders[asked].answer(marker="from-asked")
        reply = yield withTimeout(answer)
        self.assertEqual([c.name for c in reply.elements()], ["query", "from-asked"])
        self.assertEqual(len(received), 1)


class ResourceChangeTests:
    """
    Resources that come and go.
    """

    @defer.inlineCallbacks
    def test_resourceLeavingDoesNotFailLaterRequests(self):
        """
        Once a resource has gone offline, later requests all go to the one left
        and are all answered: none is sent to the gone one.
        """
        a = yield self.connect("svc", "a")
        b = yield self.connect("svc", "b")
        proxy = yield self.startProxy(resources=2)
        yield b.disconnect()
        yield self.resourcesKnown(proxy, 1)
        alice = yield self.connect("alice", "x")
        replies = yield withTimeout(
            defer.gatherResults([alice.request(COMPONENT) for _ in range(30)])
        )
        self.assertEqual({r["type"] for r in replies}, {"result"})
        self.assertEqual(len(proxied(a)), 30)

    @defer.inlineCallbacks
    def test_getHeldByLeavingResourceIsRetried(self):
        """
        A get held by a resource that goes offline is answered by another
        resource, long before the request's timeout.
        """
        a = yield self.connect("svc", "a", onRequest=hold)
        proxy = yield self.startProxy(resources=1, timeout=60)
        alice = yield self.connect("alice", "x")
        answer = alice.request(COMPONENT, stanzaID="g1")
        yield self.waitUntil(lambda: proxied(a), "the request to reach a")
        b = yield self.connect("svc", "b")
        yield self.resourcesKnown(proxy, 2)
        yield a.disconnect()
        reply = yield withTimeout(answer, 5, "the retried request's answer")
        self.assertEqual((reply["type"], reply["id"]), ("result", "g1"))
        self.assertEqual(len(proxied(b)), 1)
        self.assertEqual(proxy.stats.requests["retried"], 1)

    @defer.inlineCallbacks
    def test_setHeldByLeavingResourceFails(self):
        """
        Each C{set} held by a resource that goes offline gets
        recipient-unavailable (wait), and none is repeated on another resource:
        it may have been acted on.
        """
        a = yield self.connect("svc", "a", onRequest=hold)
        yield self.connect("svc", "b")
        # Round-robin: with the default random choice, all six went to b
        # one run in 64.
        proxy = yield self.startProxy(resources=2, strategy="round-robin")
        alice = yield self.connect("alice", "x")
        answers = [alice.request(COMPONENT, kind="set") for _ in range(6)]
        yield self.waitUntil(lambda: proxied(a), "a request to reach a")
        held = len(proxied(a))
        yield a.disconnect()
        replies = yield withTimeout(defer.gatherResults(answers))
        failed = [r for r in replies if r["type"] == "error"]
        self.assertEqual(len(failed), held)
        for reply in failed:
            self.assertEqual(errorCondition(reply), ("recipient-unavailable", "wait"))
        self.assertEqual(proxy.stats.requests["retried"], 0)


class RestartTests:
    """
    The component and the server restart; nobody approves anything again.
    """

    @defer.inlineCallbacks
    def test_gracefulStopAnswersEverything(self):
        """
        On stop, a request answered within the grace period gets its
        answer, and one still held after it gets recipient-unavailable.
        """
        holder = Holder()
        yield self.connect("svc", "a", onRequest=holder)
        proxy = yield self.startProxy(resources=1, grace=1)
        alice = yield self.connect("alice", "x")
        first = alice.request(COMPONENT, stanzaID="first")
        second = alice.request(COMPONENT, stanzaID="second")
        yield self.waitUntil(lambda: len(holder.held) == 2, "both requests held")
        stopped = proxy.stopService()
        holder.answer(0)
        reply = yield withTimeout(first)
        self.assertEqual(reply["type"], "result")
        reply = yield withTimeout(second)
        self.assertEqual(errorCondition(reply), ("recipient-unavailable", "wait"))
        yield withTimeout(stopped)

    @defer.inlineCallbacks
    def test_componentRestart(self):
        """
        After the component is stopped and started again, requests are answered
        again, with the resources learnt anew and nothing approved again.
        """
        yield self.connect("svc", "a")
        first = yield self.startProxy(resources=1)
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(alice.request(COMPONENT))
        self.assertEqual(reply["type"], "result")
        yield self.stopProxy(first)
        yield self.startProxy(resources=1)
        reply = yield withTimeout(alice.request(COMPONENT))
        self.assertEqual(reply["type"], "result")

    @defer.inlineCallbacks
    def test_serverRestart(self):
        """
        When the server restarts, the component forgets the resources it had,
        reconnects on its own (counted once), learns the resources again and
        answers requests.
        """
        a = yield self.connect("svc", "a")
        proxy = yield self.startProxy(resources=1)
        yield self.server.stop()
        yield withTimeout(a.disconnect())
        yield self.waitUntil(lambda: proxy.xmlstream is None, "the component to see the server go")
        self.assertEqual(len(proxy.dispatcher.resources), 0)
        yield self.server.start()
        yield self.connect("svc", "a")
        yield self.resourcesKnown(proxy, 1)
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(alice.request(COMPONENT))
        self.assertEqual(reply["type"], "result")
        self.assertEqual(proxy.stats.reconnects, 1)


class LimitTests:
    """
    Access lists and limits, as requesters on a real server see them.
    """

    @defer.inlineCallbacks
    def test_deniedAndOversized(self):
        """
        A denied requester gets forbidden (auth) and an oversized request
        policy-violation (modify), neither reaching the target, while an allowed
        request of normal size is served.
        """
        a = yield self.connect("svc", "a")
        yield self.startProxy(resources=1, deny=["mallory@localhost"], maxStanzaSize=2000)
        mallory = yield self.connect("mallory", "m")
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(mallory.request(COMPONENT, stanzaID="d1"))
        self.assertEqual((reply["type"], reply["id"]), ("error", "d1"))
        self.assertEqual(errorCondition(reply), ("forbidden", "auth"))
        reply = yield withTimeout(alice.request(COMPONENT, payload("x" * 3000), stanzaID="big"))
        self.assertEqual(errorCondition(reply), ("policy-violation", "modify"))
        reply = yield withTimeout(alice.request(COMPONENT, payload("small"), stanzaID="ok"))
        self.assertEqual((reply["type"], reply["id"]), ("result", "ok"))
        self.assertEqual(len(proxied(a)), 1)


class HandshakeTests:
    """
    Handshakes the server refuses, as an operator sees them in the log.
    """

    @defer.inlineCallbacks
    def test_wrongSecretLoggedClearly(self):
        """
        A wrong secret is logged as not-authorized, without the secret, and the
        component keeps running, unauthenticated, to retry once the
        configuration is fixed.
        """
        events = self.logEvents()
        proxy = yield self.startProxy(secret="wrong")
        yield self.waitUntil(
            lambda: any(e.get("condition") == "not-authorized" for e in events),
            "the refusal to be logged",
        )
        self.assertFalse(proxy.authenticated)
        self.assertTrue(proxy.running)
        for event in events:
            self.assertNotIn("wrong", repr(event))

    @defer.inlineCallbacks
    def test_unknownComponentLoggedClearly(self):
        """
        A component name the server does not know is logged with a hint naming
        that cause, and the component keeps running, unauthenticated, to retry.
        """
        events = self.logEvents()
        proxy = yield self.startProxy(jid="unknown.localhost")
        # Prosody says host-unknown; ejabberd says not-authorized, as for a
        # wrong secret: the hint names both causes then.
        yield self.waitUntil(
            lambda: any(
                e.get("condition") in ("host-unknown", "not-authorized")
                and "component of that name" in e.get("hint", "")
                for e in events
            ),
            "the refusal to be logged",
        )
        self.assertFalse(proxy.authenticated)
        self.assertTrue(proxy.running)


globals().update(
    onEveryServer(RequestTests, ResourceChangeTests, RestartTests, LimitTests, HandshakeTests)
)
