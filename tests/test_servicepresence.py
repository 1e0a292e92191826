"""
Tests for L{clientproxy.handlers.servicepresence}: outsiders subscribe to the
service and see it come and go.
"""

from twisted.trial import unittest

from tests.helpers import COMPONENT, TARGET, Harness

BOB = "bob@example.org"


def summary(stanzas):
    return [(s.name, s.getAttribute("type"), s.getAttribute("to")) for s in stanzas]


class ServicePresenceTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness()

    def subscribe(self, who=BOB):
        self.h.receive("<presence type='subscribe' from='%s' to='%s'/>" % (who, COMPONENT))

    def test_subscriptionApprovedAndRemembered(self):
        self.subscribe(BOB + "/phone")
        self.assertEqual(
            summary(self.h.take()),
            [("presence", "subscribed", BOB), ("presence", "unavailable", BOB)],
        )
        self.assertEqual(self.h.store.subscribers(), [BOB])

    def test_availableWhileAnyResourceIs(self):
        self.subscribe()
        self.h.take()
        self.h.online("a")
        self.assertEqual(summary(self.h.take()), [("presence", None, BOB)])
        self.h.online("b")
        self.assertEqual(self.h.take(), [])
        self.h.offline("a")
        self.assertEqual(self.h.take(), [])
        self.h.offline("b")
        self.assertEqual(summary(self.h.take()), [("presence", "unavailable", BOB)])

    def test_subscribeWhileAvailable(self):
        self.h.online("a")
        self.h.take()
        self.subscribe()
        self.assertEqual(
            summary(self.h.take()),
            [("presence", "subscribed", BOB), ("presence", None, BOB)],
        )

    def test_probeAnswered(self):
        self.subscribe()
        self.h.online("a")
        self.h.take()
        self.h.receive("<presence type='probe' from='%s' to='%s'/>" % (BOB, COMPONENT))
        self.assertEqual(summary(self.h.take()), [("presence", None, BOB)])

    def test_probeFromStrangerNotShown(self):
        self.h.online("a")
        self.h.take()
        self.h.receive("<presence type='probe' from='eve@example.org' to='%s'/>" % (COMPONENT,))
        self.assertEqual(summary(self.h.take()), [("presence", "unsubscribed", "eve@example.org")])

    def test_unsubscribe(self):
        self.subscribe()
        self.h.receive("<presence type='unsubscribe' from='%s' to='%s'/>" % (BOB, COMPONENT))
        self.assertEqual(self.h.take()[-1]["type"], "unsubscribed")
        self.assertEqual(self.h.store.subscribers(), [])
        self.h.online("a")
        self.assertEqual(self.h.take(), [])

    def test_errorsAndOthersNeverAnswered(self):
        self.subscribe()
        self.h.take()
        for kind in ("error", "subscribed", "unsubscribed", "unavailable"):
            self.h.receive("<presence type='%s' from='%s' to='%s'/>" % (kind, BOB, COMPONENT))
        self.h.receive("<presence from='%s' to='%s'/>" % (BOB, COMPONENT))
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["presence-from-outsider"], 5)

    def test_targetPresenceNotTakenForOutsiders(self):
        self.h.online("a")
        self.assertEqual(len(self.h.resources), 1)
        self.assertEqual(self.h.store.subscribers(), [])
        self.assertNotIn(TARGET, self.h.store.subscribers())

    def test_shutdownShowsUnavailable(self):
        self.subscribe()
        self.h.online("a")
        self.h.take()
        self.h.servicePresence.shutdown()
        self.assertEqual(summary(self.h.take()), [("presence", "unavailable", BOB)])
        self.h.servicePresence.shutdown()
        self.assertEqual(self.h.take(), [])


class SubscriberBoundTests(unittest.TestCase):
    """
    Subscribers are bounded in all and per domain: a flood of subscribe
    presences from one domain draws two presences per admitted subscriber
    and nothing for the rest.
    """

    def subscribe(self, h, jid):
        h.receive("<presence type='subscribe' from='%s' to='%s'/>" % (jid, COMPONENT))

    def test_perDomain(self):
        h = Harness(maxSubscribersPerDomain=3)
        for i in range(10):
            self.subscribe(h, "u%d@flood.example" % i)
        self.assertEqual(len(h.take()), 6)
        self.assertEqual(h.store.subscriberCount("flood.example"), 3)
        self.assertEqual(h.stats.dropped["subscribers-over-limit"], 7)
        self.subscribe(h, "alice@example.org")
        self.assertEqual(len(h.take()), 2)
        # A subscriber already stored may subscribe again.
        self.subscribe(h, "u0@flood.example")
        self.assertEqual(len(h.take()), 2)

    def test_inAll(self):
        h = Harness(maxSubscribers=2)
        for domain in ("a.example", "b.example", "c.example"):
            self.subscribe(h, "u@" + domain)
        self.assertEqual(h.store.subscribers(), ["u@a.example", "u@b.example"])
        h.receive("<presence type='unsubscribe' from='u@a.example' to='%s'/>" % (COMPONENT,))
        self.subscribe(h, "u@c.example")
        self.assertEqual(h.store.subscriberCount(), 2)
        self.assertTrue(h.store.isSubscriber("u@c.example"))

    def test_countsSurviveRestart(self):
        from clientproxy.state.sqlite import Store

        path = self.mktemp()
        store = Store(path)
        for i in range(3):
            store.addSubscriber("u%d@flood.example" % i)
        store.addSubscriber("u0@flood.example")
        store.close()
        store = Store(path)
        self.assertEqual((store.subscriberCount(), store.subscriberCount("flood.example")), (3, 3))
        store.close()
