"""
End-to-end tests of messages, the service's presence and requests started
by the implementing client, against each real server.
"""

import os

from twisted.internet import defer
from twisted.words.xish import domish

from clientproxy.xmpp.caps import NS_DISCO_INFO
from clientproxy.handlers.messages import NS_FORWARD
from tests.integration import COMPONENT, TARGET, onEveryServer, withTimeout

ALICE = "alice@localhost/x"


def bodies(client, sender=None):
    """
    The bodies of the messages a client received (from C{sender} only, if
    given), in order.
    """
    return [
        str(body)
        for message in client.messages
        if sender is None or message.getAttribute("from") == sender
        for body in message.elements()
        if body.name == "body"
    ]


class MessageTests:
    """
    Messages between outsiders and the target's resources, through a real
    server.
    """

    @defer.inlineCallbacks
    def test_fannedOutOncePerResourceWithCarbons(self):
        """
        A message to the component reaches every resource exactly once, in
        order, from the sender's encoded address, even with carbons enabled: the
        server adds no copies of its own.
        """
        a = yield self.connect("svc", "a")
        b = yield self.connect("svc", "b")
        for client in (a, b):
            reply = yield withTimeout(client.enableCarbons())
            self.assertEqual(reply["type"], "result")
        yield self.startProxy(resources=2)
        alice = yield self.connect("alice", "x")
        alice.sendMessage(COMPONENT, "hello")
        alice.sendMessage(COMPONENT, "sentinel")
        yield self.waitUntil(
            lambda: "sentinel" in bodies(a) and "sentinel" in bodies(b), "both copies"
        )
        encoded = COMPONENT + "/" + ALICE
        self.assertEqual(bodies(a), ["hello", "sentinel"])
        self.assertEqual(bodies(b), ["hello", "sentinel"])
        self.assertEqual({m["from"] for m in a.messages + b.messages}, {encoded})

    @defer.inlineCallbacks
    def test_replyRoutedAndMirrored(self):
        """
        A resource's message to a peer's encoded address reaches the peer from
        the component's bare JID, and the other resources get a mirror
        (forwarded original and a plain body naming sender and peer); the sender
        gets none.
        """
        a = yield self.connect("svc", "a")
        b = yield self.connect("svc", "b")
        yield self.startProxy(resources=2)
        alice = yield self.connect("alice", "x")
        a.sendMessage(COMPONENT + "/" + ALICE, "answer from a")
        yield self.waitUntil(lambda: alice.messages and b.messages, "the reply and the mirror")
        [reply] = alice.messages
        self.assertEqual(reply["from"], COMPONENT)
        self.assertEqual(bodies(alice), ["answer from a"])
        [mirror] = b.messages
        self.assertEqual(mirror["from"], COMPONENT + "/" + ALICE)
        self.assertEqual(bodies(b), ["[%s/a -> %s] answer from a" % (TARGET, ALICE)])
        forwarded = [c for c in mirror.elements() if (c.uri, c.name) == (NS_FORWARD, "forwarded")]
        inner = [c for c in forwarded[0].elements() if c.name == "message"][0]
        self.assertEqual((inner["from"], inner["to"]), (TARGET + "/a", ALICE))
        self.assertEqual(a.messages, [])

    @defer.inlineCallbacks
    def test_queuedWhileOfflineAcrossRestart(self):
        """
        Messages sent while the target is offline arrive after it comes
        back, across a restart of clientproxy, in order, none twice.
        """
        dataDir = self.mktemp()
        os.makedirs(dataDir)
        first = yield self.startProxy(dataDir=dataDir)
        yield self.waitUntil(lambda: first.xmlstream is not None, "the component to connect")
        alice = yield self.connect("alice", "x")
        alice.sendMessage(COMPONENT, "one")
        alice.sendMessage(COMPONENT, "two")
        yield self.waitUntil(lambda: first.store.queueLength() == 2, "two queued")
        yield self.stopProxy(first)
        first.store.close()
        second = yield self.startProxy(dataDir=dataDir)
        yield self.waitUntil(lambda: second.xmlstream is not None, "the component to connect")
        alice.sendMessage(COMPONENT, "three")
        yield self.waitUntil(lambda: second.store.queueLength() == 3, "three queued")
        a = yield self.connect("svc", "a")
        yield self.waitUntil(lambda: len(bodies(a)) == 3, "the queue delivered")
        self.assertEqual(bodies(a), ["one", "two", "three"])
        self.assertEqual(second.store.queueLength(), 0)
        b = yield self.connect("svc", "b")
        yield self.resourcesKnown(second, 2)
        alice.sendMessage(COMPONENT, "four")
        yield self.waitUntil(lambda: "four" in bodies(b), "a live message")
        self.assertEqual(bodies(b), ["four"])
        self.assertEqual(bodies(a), ["one", "two", "three", "four"])


class TargetRequestTests:
    """
    Requests started by a resource of the target, through a real server.
    """

    @defer.inlineCallbacks
    def test_requestFromTargetToPeer(self):
        """
        A resource's request to C{component/<peer>} reaches the peer from the
        component's bare JID, and the peer's reply comes back to that resource
        with its id from the peer's encoded address; the other resource is not
        involved.
        """
        a = yield self.connect("svc", "a")
        b = yield self.connect("svc", "b")
        yield self.startProxy(resources=2)
        alice = yield self.connect("alice", "x")
        query = domish.Element(("urn:test", "query"))
        reply = yield withTimeout(a.request(COMPONENT + "/" + ALICE, query, stanzaID="own-1"))
        self.assertEqual((reply["type"], reply["id"]), ("result", "own-1"))
        self.assertEqual(reply["from"], COMPONENT + "/" + ALICE)
        [asked] = [iq for iq in alice.requests if iq.getAttribute("from") == COMPONENT]
        self.assertEqual(asked["from"], COMPONENT)
        # b is asked nothing but what it supports (disco#info, for
        # feature matching).
        self.assertEqual(
            [
                iq
                for iq in b.requests
                if iq.getAttribute("from", "").startswith(COMPONENT)
                and iq.firstChildElement().uri != NS_DISCO_INFO
            ],
            [],
        )
        self.assertEqual([m for m in b.messages], [])


class ServicePresenceTests:
    """
    The service's own presence, as a subscriber on a real server sees it.
    """

    @defer.inlineCallbacks
    def test_subscriberSeesServiceComeAndGo(self):
        """
        A subscription to the component is approved, and the subscriber sees the
        service become available when a resource of the target comes online and
        unavailable when it leaves.
        """
        proxy = yield self.startProxy()
        yield self.waitUntil(lambda: proxy.xmlstream is not None, "the component to connect")
        bob = yield self.connect("bob", "phone")

        def fromService(kind):
            return lambda p: (
                p.name == "presence"
                and p.getAttribute("from") == COMPONENT
                and p.getAttribute("type") == kind
            )

        subscribed = bob.waitFor(fromService("subscribed"))
        bob.sendPresence("subscribe", to=COMPONENT)
        yield withTimeout(subscribed, what="the subscription to be approved")
        available = bob.waitFor(fromService(None))
        a = yield self.connect("svc", "a")
        yield withTimeout(available, what="the service to show available")
        unavailable = bob.waitFor(fromService("unavailable"))
        yield a.disconnect()
        yield withTimeout(unavailable, what="the service to show unavailable")


globals().update(onEveryServer(MessageTests, TargetRequestTests, ServicePresenceTests))
