"""
End-to-end tests of capability-aware dispatch on each real server, with real
client connections: requests go to the resource that advertises their
namespace, a resource that refuses two requesters is asked after the others,
one requester's refusals take nothing from another, and with affinity each
room stays on one resource.
"""

from twisted.internet import defer
from twisted.words.xish import domish

from clientproxy.testing.client import capsFor, echo, errorFor, resultFor, supporting
from tests.integration import COMPONENT, onEveryServer, withTimeout

NS = "http://jitsi.org/protocol/focus"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
SETONLY = "urn:example:setonly"


def setOnly(iq):
    """
    A request handler for a service in L{SETONLY} that it serves as a
    C{set} only: a C{get} is C{feature-not-implemented}.
    """
    if iq.getAttribute("type") == "set":
        return echo(iq)
    return errorFor("feature-not-implemented")(iq)


def refusing(users):
    """
    A request handler that answers C{service-unavailable} to the requests
    of C{users} (local parts) alone, as a service may answer one requester
    it will not serve (RFC 6120 8.3.3.19), and serves everyone else.
    """

    def handler(iq):
        requester = iq.getAttribute("from", "").partition("/")[2]
        if requester.partition("@")[0] in users:
            return errorFor("service-unavailable")(iq)
        return echo(iq)

    return handler


def errorCondition(reply):
    """
    The stanza error condition of a reply, or C{None} for a result.
    """
    for error in reply.elements():
        if error.name == "error":
            for condition in error.elements(NS_STANZAS):
                return condition.name
    return None


def proxied(client):
    """
    The requests a client got through the component (not the server's own,
    nor the component's disco#info queries).
    """
    return [iq for iq in client.requests if iq.getAttribute("from", "").startswith(COMPONENT + "/")]


def conference(room):
    element = domish.Element((NS, "conference"))
    element["room"] = room
    return element


class CapabilityDispatchTests:
    @defer.inlineCallbacks
    def test_advertiserGetsEveryRequest(self):
        """
        Like a focus and a videobridge logged in with one account: only the
        resource that advertises the namespace (caps, then disco#info)
        gets the requests.
        """
        focus = yield self.connect("svc", "focus", caps=capsFor([NS]), onRequest=supporting([NS]))
        bridge = yield self.connect(
            "svc",
            "bridge",
            caps=capsFor(["urn:xmpp:jingle:1"]),
            onRequest=supporting(["urn:xmpp:jingle:1"], errorFor("feature-not-implemented")),
        )
        proxy = yield self.startProxy(resources=2)
        yield self.waitUntil(
            lambda: all(r.features is not None for r in proxy.dispatcher.resources.available),
            "the resources' features to be learnt",
        )
        alice = yield self.connect("alice", "x")
        replies = yield withTimeout(
            defer.gatherResults(
                [alice.request(COMPONENT, conference("r%d" % i)) for i in range(20)]
            )
        )
        self.assertEqual({r["type"] for r in replies}, {"result"})
        self.assertEqual(len(proxied(focus)), 20)
        self.assertEqual(proxied(bridge), [])

    @defer.inlineCallbacks
    def test_refuserLearnt(self):
        """
        Neither resource advertises anything: the one that refuses is asked
        again until it has refused two requesters, then no more for that
        namespace; every request is answered with a result.
        """
        good = yield self.connect("svc", "good", onRequest=supporting([], echo))
        bad = yield self.connect(
            "svc", "bad", onRequest=supporting([], errorFor("feature-not-implemented"))
        )
        proxy = yield self.startProxy(resources=2, strategy="round-robin")
        yield self.waitUntil(
            lambda: all(r.features is not None for r in proxy.dispatcher.resources.available),
            "the resources' features to be learnt",
        )
        alice = yield self.connect("alice", "x")
        bob = yield self.connect("bob", "x")
        sent = 0
        for user, requester in (("alice", alice), ("bob", bob)):
            # Until bad has refused this requester (round-robin: soon).
            for i in range(4):
                sent += 1
                reply = yield withTimeout(requester.request(COMPONENT, conference("r%d" % i)))
                self.assertEqual(reply["type"], "result", i)
                if any("/%s@" % (user,) in iq["from"] for iq in proxied(bad)):
                    break
        refused = len(proxied(bad))
        for i in range(10):
            reply = yield withTimeout(alice.request(COMPONENT, conference("s%d" % i)))
            self.assertEqual(reply["type"], "result", i)
        self.assertEqual(len(proxied(bad)), refused)
        self.assertEqual(len(proxied(good)), sent + 10)

    @defer.inlineCallbacks
    def test_oneRequesterTakesNothingAway(self):
        """
        With the component's defaults: mallory's C{get} in a namespace the
        resources serve as a C{set} only is refused by both; alice's C{set}
        in it is served right after.
        """
        yield self.connect("svc", "a", onRequest=setOnly)
        yield self.connect("svc", "b", onRequest=setOnly)
        yield self.startProxy(resources=2)
        mallory = yield self.connect("mallory", "m")
        alice = yield self.connect("alice", "x")
        payload = domish.Element((SETONLY, "thing"))
        reply = yield withTimeout(mallory.request(COMPONENT, payload, kind="get"))
        self.assertEqual(errorCondition(reply), "feature-not-implemented")
        for i in range(5):
            reply = yield withTimeout(alice.request(COMPONENT, payload, kind="set"))
            self.assertEqual(reply["type"], "result", i)

    @defer.inlineCallbacks
    def test_refusedToOneRequesterOnly(self):
        """
        Resources that refuse mallory and bob (mallory's second account)
        alone: alice's requests in that namespace are all served, however
        often the resources refused the two.
        """
        for name in ("a", "b"):
            yield self.connect("svc", name, onRequest=refusing({"mallory", "bob"}))
        yield self.startProxy(resources=2)
        clients = {}
        for user in ("mallory", "bob", "alice"):
            clients[user] = yield self.connect(user, "x")
        for i in range(3):
            for user in ("mallory", "bob"):
                reply = yield withTimeout(clients[user].request(COMPONENT, conference("m")))
                self.assertEqual(errorCondition(reply), "service-unavailable")
            for kind in ("get", "set"):
                reply = yield withTimeout(
                    clients["alice"].request(COMPONENT, conference("a%d" % i), kind=kind)
                )
                self.assertEqual(reply["type"], "result", (i, kind))

    @defer.inlineCallbacks
    def test_idsShapedLikeTheComponentsOwn(self):
        """
        Requests whose ids look like the component's own queries and pings
        (sent while its disco#info queries are in flight) are each answered
        once, with the resource's answer.
        """
        answered = []

        def slowToDescribe(iq):
            query = iq.firstChildElement()
            if query is not None and query.name == "query" and "disco#info" in query.uri:
                # Keep the component's own query in flight for a while.
                return None
            answered.append(iq["id"])
            return resultFor(iq)

        yield self.connect("svc", "a", onRequest=slowToDescribe)
        yield self.startProxy(resources=1)
        alice = yield self.connect("alice", "x")
        ids = ["caps-%d" % i for i in range(1, 6)] + ["keepalive-1", "cp-1", "1"]
        replies = yield withTimeout(
            defer.gatherResults([alice.request(COMPONENT, stanzaID=i) for i in ids])
        )
        self.assertEqual(sorted(r["id"] for r in replies), sorted(ids))
        self.assertEqual({r["type"] for r in replies}, {"result"})
        self.assertEqual(sorted(answered), sorted(ids))

    @defer.inlineCallbacks
    def test_roomsStayOnOneResource(self):
        """
        With --affinity attribute:room, each room stays on one resource over
        many requests, and when a resource leaves only its rooms move.
        """
        clients = {}
        for name in ("f1", "f2", "f3"):
            clients[name] = yield self.connect("svc", name, onRequest=supporting([NS]))
        proxy = yield self.startProxy(resources=3, affinity="attribute:room")
        yield self.waitUntil(
            lambda: all(r.features is not None for r in proxy.dispatcher.resources.available),
            "the resources' features to be learnt",
        )
        alice = yield self.connect("alice", "x")
        rooms = ["room%d" % i for i in range(12)]

        @defer.inlineCallbacks
        def placement():
            where = {}
            for _ in range(3):
                for room in rooms:
                    before = {n: len(proxied(c)) for n, c in clients.items()}
                    reply = yield withTimeout(alice.request(COMPONENT, conference(room)))
                    self.assertEqual(reply["type"], "result")
                    [served] = [n for n, c in clients.items() if len(proxied(c)) > before[n]]
                    where.setdefault(room, set()).add(served)
            self.assertTrue(all(len(s) == 1 for s in where.values()), where)
            return {room: s.pop() for room, s in where.items()}

        first = yield placement()
        self.assertGreater(len(set(first.values())), 1)
        gone = first[rooms[0]]
        yield clients.pop(gone).disconnect()
        yield self.resourcesKnown(proxy, 2)
        second = yield placement()
        moved = {room for room in rooms if first[room] != second[room]}
        self.assertEqual(moved, {room for room in rooms if first[room] == gone})


globals().update(onEveryServer(CapabilityDispatchTests))
