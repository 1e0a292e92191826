"""
Tests for L{clientproxy.handlers.targetpresence}: subscription, probing, and the set of
resources kept from the target's presence.
"""

from twisted.trial import unittest

from clientproxy.handlers.targetpresence import RESUBSCRIBE_INITIAL, RESUBSCRIBE_MAX, presencePriority
from tests.helpers import COMPONENT, TARGET, Harness, RecordingManager
from wokkel.generic import parseXml


def summary(stanzas):
    return [(s.name, s.getAttribute("type"), s.getAttribute("to")) for s in stanzas]


class SubscriptionTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness(approved=False)

    def test_subscribeOnConnect(self):
        manager = RecordingManager(self.h.clock)
        self.h.presence.disownHandlerParent(self.h.manager)
        self.h.presence.setHandlerParent(manager)
        manager.connect()
        [out] = manager.take()
        self.assertEqual(
            (out.name, out["type"], out["to"], out["from"]),
            ("presence", "subscribe", TARGET, COMPONENT),
        )

    def test_subscribeAgainOnEveryReconnect(self):
        self.h.manager.disconnect()
        self.h.manager.connect()
        self.assertEqual(summary(self.h.take()), [("presence", "subscribe", TARGET)])

    def test_probeOnlyOnceApproved(self):
        self.assertFalse(self.h.presence.subscribed)
        self.h.receive("<presence type='subscribed' from='%s' to='%s'/>" % (TARGET, COMPONENT))
        self.assertTrue(self.h.presence.subscribed)
        self.assertEqual(summary(self.h.take()), [("presence", "probe", TARGET)])

    def test_bounceRetriedWithBackoff(self):
        error = "<presence type='error' from='%s' to='%s'><error type='cancel'/></presence>" % (
            TARGET,
            COMPONENT,
        )
        self.h.receive(error)
        self.assertEqual(self.h.take(), [])
        self.h.clock.advance(RESUBSCRIBE_INITIAL)
        self.assertEqual(summary(self.h.take()), [("presence", "subscribe", TARGET)])
        self.h.receive(error)
        self.h.clock.advance(RESUBSCRIBE_INITIAL)
        self.assertEqual(self.h.take(), [])
        self.h.clock.advance(RESUBSCRIBE_INITIAL)
        self.assertEqual(summary(self.h.take()), [("presence", "subscribe", TARGET)])
        for i in range(10):
            self.h.receive(error)
            self.h.clock.advance(RESUBSCRIBE_MAX)
        self.assertEqual(len(self.h.take()), 10)

    def test_bounceRetryCancelledOnDisconnect(self):
        self.h.receive("<presence type='error' from='%s'/>" % (TARGET,))
        self.h.manager.disconnect()
        self.h.clock.advance(RESUBSCRIBE_MAX)
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_unsubscribedForgetsResources(self):
        self.h.online("a", "b")
        self.h.receive("<presence type='unsubscribed' from='%s'/>" % (TARGET,))
        self.assertEqual(len(self.h.resources), 0)
        self.assertFalse(self.h.presence.subscribed)

    def test_targetSubscriptionApproved(self):
        self.h.receive("<presence type='subscribe' from='%s' to='%s'/>" % (TARGET, COMPONENT))
        self.assertEqual(
            summary(self.h.take()),
            [("presence", "subscribed", TARGET), ("presence", None, TARGET)],
        )

    def test_targetUnsubscribeAcknowledged(self):
        self.h.receive("<presence type='unsubscribe' from='%s'/>" % (TARGET,))
        self.assertEqual(summary(self.h.take()), [("presence", "unsubscribed", TARGET)])

    def test_probeFromTargetAnswered(self):
        self.h.receive("<presence type='probe' from='%s/a' to='%s'/>" % (TARGET, COMPONENT))
        self.assertEqual(summary(self.h.take()), [("presence", None, TARGET + "/a")])

    def test_outsidersLeftAlone(self):
        stanza = parseXml(
            b"<presence type='subscribe' from='alice@example.org' to='proxy.example.org'/>"
        )
        self.h.presence.onPresence(stanza)
        self.assertFalse(stanza.handled)
        self.assertEqual(self.h.take(), [])


class ResourceTrackingTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness()

    def test_availableAdds(self):
        self.h.online("a", priority=5)
        resource = self.h.resources.get(TARGET + "/a")
        self.assertEqual((resource.name, resource.priority), ("a", 5))

    def test_priorityUpdated(self):
        self.h.online("a", priority=5)
        self.h.online("a", priority=-1)
        self.assertEqual(len(self.h.resources), 1)
        self.assertEqual(self.h.resources.get(TARGET + "/a").priority, -1)

    def test_unavailableRemoves(self):
        self.h.online("a", "b")
        self.h.offline("a")
        self.assertEqual([r.name for r in self.h.resources.available], ["b"])

    def test_errorFromResourceRemoves(self):
        self.h.online("a")
        self.h.receive("<presence type='error' from='%s/a'/>" % (TARGET,))
        self.assertEqual(len(self.h.resources), 0)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_otherAccountIgnored(self):
        self.h.receive("<presence from='svc2@example.org/a' to='%s'/>" % (COMPONENT,))
        self.assertEqual(len(self.h.resources), 0)

    def test_filter(self):
        h = Harness(resources="^focus")
        h.online("focus-1", "phone", "focus")
        self.assertEqual(sorted(r.name for r in h.resources.available), ["focus", "focus-1"])

    def test_connectionLostForgetsResources(self):
        self.h.online("a")
        self.h.manager.disconnect()
        self.assertEqual(len(self.h.resources), 0)

    def test_priorityParsing(self):
        def priority(xml):
            return presencePriority(parseXml(xml.encode()))

        self.assertEqual(priority("<presence/>"), 0)
        self.assertEqual(priority("<presence><priority> 7 </priority></presence>"), 7)
        self.assertEqual(priority("<presence><priority>x</priority></presence>"), 0)
        self.assertEqual(priority("<presence><priority>1000</priority></presence>"), 127)
        self.assertEqual(priority("<presence><priority>-1000</priority></presence>"), -128)


class SubscriptionStateTests(unittest.TestCase):
    """
    The subscription to the target is a named state, and an unapproved one
    is warned about, with the fix, until it is approved.
    """

    def test_states(self):
        from clientproxy.handlers.targetpresence import APPROVED, PENDING, REVOKED

        h = Harness(approved=False)
        self.assertEqual(h.presence.subscription, PENDING)
        h.receive("<presence type='subscribed' from='%s' to='%s'/>" % (TARGET, COMPONENT))
        self.assertEqual(h.presence.subscription, APPROVED)
        h.receive("<presence type='unsubscribed' from='%s' to='%s'/>" % (TARGET, COMPONENT))
        self.assertEqual(h.presence.subscription, REVOKED)
        h.manager.disconnect()
        self.assertEqual(h.presence.subscription, "none")

    def test_warnedUntilApproved(self):
        from twisted.logger import capturedLogs

        from clientproxy.handlers.targetpresence import FIRST_PENDING_WARNING, PENDING_WARNING_INTERVAL

        h = Harness(approved=False)
        with capturedLogs() as events:
            h.clock.advance(FIRST_PENDING_WARNING)
            h.clock.advance(PENDING_WARNING_INTERVAL)
            h.receive("<presence type='subscribed' from='%s' to='%s'/>" % (TARGET, COMPONENT))
            h.clock.advance(PENDING_WARNING_INTERVAL * 3)
        warnings = [e for e in events if e["log_level"].name == "warn"]
        self.assertEqual(len(warnings), 2)
        text = warnings[0]["log_format"].format(**warnings[0])
        self.assertIn("<presence type='subscribed' to='%s'/>" % (COMPONENT,), text)
        self.assertIn("prosodyctl", text)
        self.assertIn("ejabberdctl add_rosteritem", text)
        self.assertEqual(h.clock.getDelayedCalls(), [])
