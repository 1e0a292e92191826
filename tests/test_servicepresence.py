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
    """
    The service's presence for outsiders: subscriptions approved and
    remembered, the service shown available while any resource is, probes
    answered, and nothing answered that could start a loop.
    """

    def setUp(self):
        self.h = Harness()

    def subscribe(self, who=BOB):
        self.h.receive("<presence type='subscribe' from='%s' to='%s'/>" % (who, COMPONENT))

    def test_subscriptionApprovedAndRemembered(self):
        """
        A subscription request from a full JID is approved to the bare JID,
        followed by the current state (unavailable: no resource), and the bare
        JID is stored as a subscriber.
        """
        self.subscribe(BOB + "/phone")
        self.assertEqual(
            summary(self.h.take()),
            [("presence", "subscribed", BOB), ("presence", "unavailable", BOB)],
        )
        self.assertEqual(self.h.store.subscribers(), [BOB])

    def test_availableWhileAnyResourceIs(self):
        """
        Subscribers see the service available when the first resource comes and
        unavailable when the last goes: one presence per change of that state,
        not one per resource.
        """
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
        """
        A subscriber approved while a resource is online is shown the service
        available at once.
        """
        self.h.online("a")
        self.h.take()
        self.subscribe()
        self.assertEqual(
            summary(self.h.take()),
            [("presence", "subscribed", BOB), ("presence", None, BOB)],
        )

    def test_probeAnswered(self):
        """
        A probe from a subscriber is answered with the current state.
        """
        self.subscribe()
        self.h.online("a")
        self.h.take()
        self.h.receive("<presence type='probe' from='%s' to='%s'/>" % (BOB, COMPONENT))
        self.assertEqual(summary(self.h.take()), [("presence", None, BOB)])

    def test_probeFromStrangerNotShown(self):
        """
        A probe from someone who is not a subscriber is answered
        C{unsubscribed}, not with the service's state.
        """
        self.h.online("a")
        self.h.take()
        self.h.receive("<presence type='probe' from='eve@example.org' to='%s'/>" % (COMPONENT,))
        self.assertEqual(summary(self.h.take()), [("presence", "unsubscribed", "eve@example.org")])

    def test_unsubscribe(self):
        """
        An unsubscribe is acknowledged with C{unsubscribed} and forgets the
        subscriber, who is shown no presence afterwards.
        """
        self.subscribe()
        self.h.receive("<presence type='unsubscribe' from='%s' to='%s'/>" % (BOB, COMPONENT))
        self.assertEqual(self.h.take()[-1]["type"], "unsubscribed")
        self.assertEqual(self.h.store.subscribers(), [])
        self.h.online("a")
        self.assertEqual(self.h.take(), [])

    def test_errorsAndOthersNeverAnswered(self):
        """
        Error, subscribed, unsubscribed, unavailable and available presence
        from an outsider are dropped and counted, never answered, so bounces
        cannot start a loop.
        """
        self.subscribe()
        self.h.take()
        for kind in ("error", "subscribed", "unsubscribed", "unavailable"):
            self.h.receive("<presence type='%s' from='%s' to='%s'/>" % (kind, BOB, COMPONENT))
        self.h.receive("<presence from='%s' to='%s'/>" % (BOB, COMPONENT))
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["presence-from-outsider"], 5)

    def test_targetPresenceNotTakenForOutsiders(self):
        """
        The target's own presence makes it a resource, never a subscriber of
        the service.
        """
        self.h.online("a")
        self.assertEqual(len(self.h.resources), 1)
        self.assertEqual(self.h.store.subscribers(), [])
        self.assertNotIn(TARGET, self.h.store.subscribers())

    def test_shutdownShowsUnavailable(self):
        """
        A shutdown shows subscribers the service unavailable, once: a second
        shutdown sends nothing.
        """
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
        """
        One domain gets at most C{maxSubscribersPerDomain} subscribers: the
        rest of a flood is dropped and counted, not answered, while another
        domain, and a subscriber already stored asking again, are approved.
        """
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
        """
        At C{maxSubscribers} a new subscriber is refused; an unsubscribe frees
        a place for the next.
        """
        h = Harness(maxSubscribers=2)
        for domain in ("a.example", "b.example", "c.example"):
            self.subscribe(h, "u@" + domain)
        self.assertEqual(h.store.subscribers(), ["u@a.example", "u@b.example"])
        h.receive("<presence type='unsubscribe' from='u@a.example' to='%s'/>" % (COMPONENT,))
        self.subscribe(h, "u@c.example")
        self.assertEqual(h.store.subscriberCount(), 2)
        self.assertTrue(h.store.isSubscriber("u@c.example"))

    def test_countsSurviveRestart(self):
        """
        The subscriber counts, in all and per domain, are read back from the
        store after a restart (a subscriber added twice counts once), so the
        bounds hold across restarts.
        """
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
