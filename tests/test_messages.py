"""
Tests for L{clientproxy.handlers.messages}: fan-out, routing and mirroring, the
queue for an offline target, and bounces.
"""

from twisted.logger import capturedLogs
from twisted.trial import unittest

from clientproxy.handlers.messages import NS_CARBONS, NS_DELAY, NS_FORWARD, NS_HINTS
from clientproxy.state.sqlite import Store
from clientproxy.ops.throttle import INTERVAL, Throttle
from tests.helpers import COMPONENT, TARGET, Harness, errorCondition

ALICE = "alice@example.org/abc"


def children(stanza):
    return {(c.uri, c.name) for c in stanza.elements()}


def body(stanza):
    return str(next(c for c in stanza.elements() if c.name == "body"))


class IncomingTests(unittest.TestCase):
    """
    Messages from peers to the component: fanned out to every available
    resource of the target, marked so that the server adds no carbon copies;
    errors from the target are dropped, bounces from peers passed on.
    """

    def setUp(self):
        self.h = Harness()
        self.h.online("a", "b")

    def send(self, text="Hi", to=COMPONENT, kind="chat", sender=ALICE):
        self.h.receive(
            "<message type='%s' id='m1' from='%s' to='%s'><body>%s</body></message>"
            % (kind, sender, to, text)
        )

    def test_fannedOutToEveryResource(self):
        """
        A peer's message reaches every available resource, from the peer's
        address under the component, with its body and id, and marked
        <private/> and <no-copy/> so that no client sees it twice.
        """
        self.send()
        out = self.h.take()
        self.assertEqual(sorted(m["to"] for m in out), [TARGET + "/a", TARGET + "/b"])
        for m in out:
            self.assertEqual(m["from"], COMPONENT + "/" + ALICE)
            self.assertEqual(body(m), "Hi")
            self.assertEqual(m["id"], "m1")
            self.assertIn((NS_CARBONS, "private"), children(m))
            self.assertIn((NS_HINTS, "no-copy"), children(m))

    def test_toAnyComponentAddress(self):
        """
        A message to any full JID of the component, not only the bare one, is
        fanned out all the same.
        """
        self.send(to=COMPONENT + "/whatever")
        self.assertEqual(len(self.h.take()), 2)

    def test_filterRespected(self):
        """
        Only the resources that the C{resources} filter admits get a copy: the
        others are no part of the target.
        """
        h = Harness(resources="^a$")
        h.online("a", "b")
        h.receive("<message from='%s' to='%s'><body>x</body></message>" % (ALICE, COMPONENT))
        self.assertEqual([m["to"] for m in h.take()], [TARGET + "/a"])

    def test_errorFromTargetDropped(self):
        """
        An error message from the target is dropped and counted, never relayed
        to the peer: errors are never answered with errors.
        """
        self.h.receive(
            "<message type='error' from='%s/a' to='%s/%s'><error type='cancel'/></message>"
            % (TARGET, COMPONENT, ALICE)
        )
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["error-from-target"], 1)

    def test_bounceFromPeerGoesToResources(self):
        """
        An error message from a peer (a bounce of something sent to it) goes to
        every resource of the target, from the peer's address, never back to
        the peer.
        """
        self.h.receive(
            "<message type='error' id='x' from='%s' to='%s'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
            % (ALICE, COMPONENT)
        )
        out = self.h.take()
        self.assertEqual(sorted(m["to"] for m in out), [TARGET + "/a", TARGET + "/b"])
        for m in out:
            self.assertEqual((m["type"], m["from"]), ("error", COMPONENT + "/" + ALICE))


class OutgoingTests(unittest.TestCase):
    """
    Messages from the target's resources to a peer's address under the
    component: routed to the peer, mirrored to the other resources, and refused
    when the address names no peer.
    """

    def setUp(self):
        self.h = Harness()
        self.h.online("a", "b", "c")

    def send(self, text="Hello", kind="chat", extra="", resource="a", peer=ALICE):
        self.h.receive(
            "<message type='%s' id='o1' from='%s/%s' to='%s/%s'><body>%s</body>%s</message>"
            % (kind, TARGET, resource, COMPONENT, peer, text, extra)
        )

    def test_routedFromBareComponent(self):
        """
        A resource's message reaches the peer from the bare component, with its
        body and id, and without the <private/> marker its client put on it.
        """
        self.send(extra="<private xmlns='%s'/>" % NS_CARBONS)
        out = self.h.take()
        [routed] = [m for m in out if m["to"] == ALICE]
        self.assertEqual(routed["from"], COMPONENT)
        self.assertEqual(body(routed), "Hello")
        self.assertEqual(routed["id"], "o1")
        self.assertNotIn((NS_CARBONS, "private"), children(routed))

    def test_mirroredToTheOtherResources(self):
        """
        The other resources get a mirror of what one sent: marked <private/>, a
        plain body naming sender and peer for clients that do not read the
        wrapper, and the original, in jabber:client, inside a delayed
        <forwarded/>.
        """
        self.send()
        out = self.h.take()
        mirrors = [m for m in out if m["to"] != ALICE]
        self.assertEqual(sorted(m["to"] for m in mirrors), [TARGET + "/b", TARGET + "/c"])
        for m in mirrors:
            self.assertEqual(m["from"], COMPONENT + "/" + ALICE)
            self.assertEqual(body(m), "[%s/a -> %s] Hello" % (TARGET, ALICE))
            self.assertIn((NS_CARBONS, "private"), children(m))
            forwarded = next(
                c for c in m.elements() if (c.uri, c.name) == (NS_FORWARD, "forwarded")
            )
            inner = next(c for c in forwarded.elements() if c.name == "message")
            self.assertEqual(inner.uri, "jabber:client")
            self.assertEqual((inner["from"], inner["to"]), (TARGET + "/a", ALICE))
            self.assertEqual(body(inner), "Hello")
            innerBody = next(c for c in inner.elements() if c.name == "body")
            self.assertEqual(innerBody.uri, "jabber:client")
            self.assertIn((NS_DELAY, "delay"), children(forwarded))

    def test_whatIsMirrored(self):
        """
        Mirrored are the messages XEP-0280 would copy: chat and normal ones;
        not headline or groupchat messages, nor those the client marked
        <no-copy/>.
        """
        cases = [
            ("chat", "", True),
            ("normal", "", True),
            ("headline", "", False),
            ("groupchat", "", False),
            ("chat", "<no-copy xmlns='%s'/>" % NS_HINTS, False),
        ]
        for kind, extra, mirrored in cases:
            self.send(kind=kind, extra=extra)
            out = self.h.take()
            self.assertEqual(len(out), 3 if mirrored else 1, (kind, extra))

    def test_normalWithoutBodyNotMirrored(self):
        """
        A normal message without a body (a payload only) is routed to the peer
        but not mirrored, as carbons would not copy it either.
        """
        self.h.receive(
            "<message from='%s/a' to='%s/%s'><x xmlns='urn:x'/></message>"
            % (TARGET, COMPONENT, ALICE)
        )
        self.assertEqual([m["to"] for m in self.h.take()], [ALICE])

    def test_badPeer(self):
        """
        A message to an address that decodes to no valid peer JID is answered
        jid-malformed (modify) to the resource that sent it.
        """
        self.send(peer="a@b@c")
        [out] = self.h.take()
        self.assertEqual((out["type"], out["to"]), ("error", TARGET + "/a"))
        self.assertEqual(errorCondition(out), ("jid-malformed", "modify"))

    def test_toBareComponentDropped(self):
        """
        A resource's message to the bare component names no peer: it is
        dropped, and not answered.
        """
        self.h.receive(
            "<message from='%s/a' to='%s'><body>x</body></message>" % (TARGET, COMPONENT)
        )
        self.assertEqual(self.h.take(), [])


class QueueTests(unittest.TestCase):
    """
    Messages for a target with no resource available: queued with a delay
    stamp, within bounds per sender and in all, kept across restarts, and
    delivered once a resource comes online.
    """

    def setUp(self):
        self.h = Harness(queuePerSender=3, queueSize=5)

    def send(self, text, sender=ALICE):
        self.h.receive(
            "<message type='chat' from='%s' to='%s'><body>%s</body></message>"
            % (sender, COMPONENT, text)
        )

    def test_storeFailureAnswered(self):
        """
        A message the store cannot keep (here a full disk: SQLite refuses
        to grow) is answered internal-server-error (wait), and the failure
        logged; the stream goes on serving.
        """
        db = self.h.store._db
        db.execute("PRAGMA max_page_count = %d" % db.execute("PRAGMA page_count").fetchone())
        self.send("x" * 20000)
        [answer] = self.h.take()
        self.assertEqual(
            (answer.name, answer["type"], answer["to"], errorCondition(answer)),
            ("message", "error", ALICE, ("internal-server-error", "wait")),
        )
        self.assertEqual(len(self.flushLoggedErrors()), 1)
        self.h.online("a")
        self.h.take()
        self.send("served")
        self.assertEqual([body(m) for m in self.h.take()], ["served"])

    def test_queuedThenDeliveredInOrder(self):
        """
        While no resource is available messages are queued; the first resource
        to come online gets them in order, each with a XEP-0203 delay stamp
        from the component, and a later one gets none again.
        """
        self.h.clock.advance(1000)
        for text in ("one", "two", "three"):
            self.send(text)
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.store.queueLength(), 3)
        self.h.online("a")
        out = [m for m in self.h.take() if m.name == "message"]
        self.assertEqual([body(m) for m in out], ["one", "two", "three"])
        for m in out:
            self.assertEqual((m["to"], m["from"]), (TARGET + "/a", COMPONENT + "/" + ALICE))
            delay = next(c for c in m.elements() if (c.uri, c.name) == (NS_DELAY, "delay"))
            self.assertEqual(delay["stamp"], "1970-01-01T00:16:40.000000Z")
            self.assertEqual(delay["from"], COMPONENT)
        self.assertEqual(self.h.store.queueLength(), 0)
        self.h.online("b")
        self.assertEqual([m for m in self.h.take() if m.name == "message"], [])

    def test_boundPerSender(self):
        """
        One sender may queue at most C{queuePerSender} messages: the next is
        answered resource-constraint (wait), so one peer cannot fill the queue.
        """
        for text in ("1", "2", "3", "4"):
            self.send(text)
        [error] = self.h.take()
        self.assertEqual((error.name, error["type"], error["to"]), ("message", "error", ALICE))
        self.assertEqual(errorCondition(error), ("resource-constraint", "wait"))
        self.assertEqual(self.h.store.queueLength(), 3)

    def test_fullQueueLogThrottled(self):
        """
        A flood of messages refused because the queue is full writes one
        log line per interval (saying how many were not written), while
        every one is answered and counted.
        """
        self.h.stats.throttle = Throttle(self.h.clock.seconds)
        for text in ("1", "2", "3"):
            self.send(text)
        with capturedLogs() as events:
            for _ in range(50):
                self.send("flood")
            self.h.clock.advance(INTERVAL)
            self.send("later")
        self.assertEqual([e["unlogged"] for e in events], [0, 49])
        self.assertEqual(len(self.h.take()), 51)
        self.assertEqual(self.h.stats.messages["error:resource-constraint"], 51)

    def test_boundInAll(self):
        """
        The queue holds at most C{queueSize} messages in all: once it is full,
        a message from a sender with none queued is refused too.
        """
        for i in range(5):
            self.send(str(i), sender="user%d@example.org/r" % i)
        self.send("x", sender="late@example.org/r")
        [error] = self.h.take()
        self.assertEqual(error["to"], "late@example.org/r")
        self.assertEqual(self.h.store.queueLength(), 5)

    def test_survivesRestart(self):
        """
        The queue lives in the SQLite store: a message queued before a restart
        is delivered by the next process once a resource comes online.
        """
        path = self.mktemp()
        first = Harness(store=Store(path))
        first.receive("<message from='%s' to='%s'><body>kept</body></message>" % (ALICE, COMPONENT))
        first.store.close()
        second = Harness(store=Store(path))
        second.online("a")
        [m] = [m for m in second.take() if m.name == "message"]
        self.assertEqual(body(m), "kept")
        self.assertEqual(second.store.queueLength(), 0)


class BounceAdmissionTests(unittest.TestCase):
    """
    Error messages from peers pass the same admission as other messages,
    and are marked like every copy fanned out; a refusal is a drop, since
    errors are never answered.
    """

    def bounce(self, h, sender=ALICE, text="x"):
        h.receive(
            "<message type='error' id='x' from='%s' to='%s'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>%s</text></error></message>"
            % (sender, COMPONENT, text)
        )

    def test_deniedSenderNeverReachesTheTarget(self):
        """
        A bounce from a denied sender is dropped and counted, not passed to the
        target.
        """
        h = Harness(deny=["example.org"])
        h.online("a")
        h.take()
        self.bounce(h)
        self.assertEqual(h.take(), [])
        self.assertEqual(h.stats.dropped["error-from-peer-refused"], 1)

    def test_rateApplies(self):
        """
        Bounces count against the sender's rate: those over the burst are
        dropped, not answered.
        """
        h = Harness(rate=1, burst=2)
        h.online("a")
        h.take()
        for _ in range(5):
            self.bounce(h)
        self.assertEqual(len(h.take()), 2)
        self.assertEqual(h.stats.dropped["error-from-peer-refused"], 3)

    def test_sizeApplies(self):
        """
        A bounce over the stanza size bound is dropped as too large.
        """
        h = Harness(maxStanzaSize=400)
        h.online("a")
        h.take()
        self.bounce(h, text="y" * 500)
        self.assertEqual(h.take(), [])
        self.assertEqual(h.stats.dropped["error-from-peer-too-large"], 1)

    def test_fannedOutWithMarkers(self):
        """
        A bounce passed to the resources carries <private/> and <no-copy/> like
        every copy fanned out, so the server adds no carbon copies of it.
        """
        h = Harness()
        h.online("a", "b")
        h.take()
        self.bounce(h)
        out = h.take()
        self.assertEqual(len(out), 2)
        for m in out:
            self.assertIn((NS_CARBONS, "private"), children(m))
            self.assertIn((NS_HINTS, "no-copy"), children(m))


class QueueDeliveryTests(unittest.TestCase):
    """
    A long queue is delivered a batch per turn of the reactor, in order,
    with messages that come meanwhile after it.
    """

    def test_deliveredInBatches(self):
        """
        A queue longer than a batch goes out L{DELIVERY_BATCH} messages per
        turn of the reactor, in order; a message that comes meanwhile follows
        the queue instead of overtaking it, and no call is left once done.
        """
        from clientproxy.handlers.messages import DELIVERY_BATCH

        h = Harness(queuePerSender=1000, queueSize=1000)
        count = DELIVERY_BATCH * 2 + 7
        for i in range(count):
            h.receive(
                "<message type='chat' from='%s' to='%s'><body>%d</body></message>"
                % (ALICE, COMPONENT, i)
            )
        h.online("a")
        first = [m for m in h.take() if m.name == "message"]
        self.assertEqual(len(first), DELIVERY_BATCH)
        h.receive(
            "<message type='chat' from='%s' to='%s'><body>late</body></message>"
            % (ALICE, COMPONENT)
        )
        self.assertEqual(h.take(), [])
        h.clock.advance(0)
        h.clock.advance(0)
        h.clock.advance(0)
        rest = [m for m in h.take() if m.name == "message"]
        self.assertEqual([body(m) for m in first + rest], [str(i) for i in range(count)] + ["late"])
        self.assertEqual(h.store.queueLength(), 0)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_resourceLeavesDuringDelivery(self):
        """
        When every resource leaves between two batches, the rest stays queued;
        the next resource to come online gets it from where delivery stopped.
        """
        from clientproxy.handlers.messages import DELIVERY_BATCH

        h = Harness(queuePerSender=1000, queueSize=1000)
        for i in range(DELIVERY_BATCH * 2):
            h.receive(
                "<message from='%s' to='%s'><body>%d</body></message>" % (ALICE, COMPONENT, i)
            )
        h.online("a")
        h.offline("a")
        h.clock.advance(0)
        self.assertEqual(h.store.queueLength(), DELIVERY_BATCH)
        h.take()
        h.online("b")
        h.clock.advance(0)
        rest = [m for m in h.take() if m.name == "message"]
        self.assertEqual(body(rest[0]), str(DELIVERY_BATCH))
        self.assertEqual(h.store.queueLength(), 0)
