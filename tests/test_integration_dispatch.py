"""
End-to-end tests of capability-aware dispatch on each real server, with real
client connections: requests go to the resource that advertises their
namespace, a resource that refuses stops getting that namespace, and with
affinity each room stays on one resource.
"""

from twisted.internet import defer
from twisted.words.xish import domish

from clientproxy.testing.client import capsFor, echo, errorFor, supporting
from tests.integration import COMPONENT, onEveryServer, withTimeout

NS = "http://jitsi.org/protocol/focus"


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
        Neither resource advertises anything: the one that refuses gets no
        more of the namespace after its first refusal, and every request
        is answered with a result.
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
        for i in range(10):
            reply = yield withTimeout(alice.request(COMPONENT, conference("r%d" % i)))
            self.assertEqual(reply["type"], "result", i)
        self.assertEqual(len(proxied(bad)), 1)
        self.assertEqual(len(proxied(good)), 10)

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
