"""
Tests for L{clientproxy.handlers.targetpresence}: subscription, probing, and the set of
resources kept from the target's presence.
"""

from twisted.internet import task
from twisted.trial import unittest

from clientproxy.handlers.targetpresence import (
    RESUBSCRIBE_INITIAL,
    RESUBSCRIBE_MAX,
    TargetPresence,
    presencePriority,
)
from clientproxy.ops.stats import Stats
from clientproxy.routing.resources import ResourceSet
from tests.helpers import COMPONENT, TARGET, Harness, RecordingManager, alone
from wokkel.generic import parseXml


def summary(stanzas):
    return [(s.name, s.getAttribute("type"), s.getAttribute("to")) for s in stanzas]


class SubscriptionTests(unittest.TestCase):
    """
    The component's subscription to the target: asked on every connection,
    asked again after a bounce, probed once approved; and the target's own
    requests answered.
    """

    def setUp(self):
        self.h = Harness(approved=False)

    def test_subscribeOnConnect(self):
        """
        Once connected, the component asks the target for a presence
        subscription, from its own JID.
        """
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
        """
        Every reconnection asks again, so a subscription lost meanwhile is
        asked for anew.
        """
        self.h.manager.disconnect()
        self.h.manager.connect()
        self.assertEqual(summary(self.h.take()), [("presence", "subscribe", TARGET)])

    def test_probeOnlyOnceApproved(self):
        """
        The target is probed only once it approved: a probe sent earlier makes
        Prosody answer C{unsubscribed} on its behalf, cancelling the request.
        """
        self.assertFalse(self.h.presence.subscribed)
        self.h.receive("<presence type='subscribed' from='%s' to='%s'/>" % (TARGET, COMPONENT))
        self.assertTrue(self.h.presence.subscribed)
        self.assertEqual(summary(self.h.take()), [("presence", "probe", TARGET)])

    def test_bounceRetriedWithBackoff(self):
        """
        A bounced subscription request is sent again after a delay that doubles
        with each bounce, up to L{RESUBSCRIBE_MAX}, so a target whose host is
        not up yet is not flooded.
        """
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
        """
        A retry due when the connection is lost is cancelled: nothing is sent
        on a dead stream, and no call is left.
        """
        self.h.receive("<presence type='error' from='%s'/>" % (TARGET,))
        self.h.manager.disconnect()
        self.h.clock.advance(RESUBSCRIBE_MAX)
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_unsubscribedForgetsResources(self):
        """
        When the target revokes the subscription, its resources are forgotten
        (no presence will say when they go) and the component is no longer
        subscribed.
        """
        self.h.online("a", "b")
        self.h.receive("<presence type='unsubscribed' from='%s'/>" % (TARGET,))
        self.assertEqual(len(self.h.resources), 0)
        self.assertFalse(self.h.presence.subscribed)

    def test_targetSubscriptionApproved(self):
        """
        The target's request to subscribe to the component is approved, and the
        component shows itself available to it.
        """
        self.h.receive("<presence type='subscribe' from='%s' to='%s'/>" % (TARGET, COMPONENT))
        self.assertEqual(
            summary(self.h.take()),
            [("presence", "subscribed", TARGET), ("presence", None, TARGET)],
        )

    def test_targetUnsubscribeAcknowledged(self):
        """
        The target's unsubscribe is acknowledged with C{unsubscribed}.
        """
        self.h.receive("<presence type='unsubscribe' from='%s'/>" % (TARGET,))
        self.assertEqual(summary(self.h.take()), [("presence", "unsubscribed", TARGET)])

    def test_probeFromTargetAnswered(self):
        """
        A probe from a resource of the target is answered with the component's
        available presence, to that resource.
        """
        self.h.receive("<presence type='probe' from='%s/a' to='%s'/>" % (TARGET, COMPONENT))
        self.assertEqual(summary(self.h.take()), [("presence", None, TARGET + "/a")])

    def test_outsidersLeftAlone(self):
        """
        Presence from anyone but the target is left unhandled, for the
        service's presence handler.
        """
        stanza = parseXml(
            b"<presence type='subscribe' from='alice@example.org' to='proxy.example.org'/>"
        )
        self.h.presence.onPresence(stanza)
        self.assertFalse(stanza.handled)
        self.assertEqual(self.h.take(), [])


class ResourceTrackingTests(unittest.TestCase):
    """
    The set of resources kept from the target's presence.
    """

    def setUp(self):
        self.h = Harness()

    def test_availableAdds(self):
        """
        An available presence of a resource adds it, with its name and
        priority.
        """
        self.h.online("a", priority=5)
        resource = self.h.resources.get(TARGET + "/a")
        self.assertEqual((resource.name, resource.priority), ("a", 5))

    def test_priorityUpdated(self):
        """
        A new available presence of a known resource updates its priority,
        without adding it twice.
        """
        self.h.online("a", priority=5)
        self.h.online("a", priority=-1)
        self.assertEqual(len(self.h.resources), 1)
        self.assertEqual(self.h.resources.get(TARGET + "/a").priority, -1)

    def test_unavailableRemoves(self):
        """
        An unavailable presence removes that resource, and only that one.
        """
        self.h.online("a", "b")
        self.h.offline("a")
        self.assertEqual([r.name for r in self.h.resources.available], ["b"])

    def test_errorFromResourceRemoves(self):
        """
        An error presence from a resource removes it, and schedules no new
        subscription request: that is for bounces from the bare target.
        """
        self.h.online("a")
        self.h.receive("<presence type='error' from='%s/a'/>" % (TARGET,))
        self.assertEqual(len(self.h.resources), 0)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_otherAccountIgnored(self):
        """
        Presence of another account's resources adds nothing.
        """
        self.h.receive("<presence from='svc2@example.org/a' to='%s'/>" % (COMPONENT,))
        self.assertEqual(len(self.h.resources), 0)

    def test_filter(self):
        """
        Only the resources whose names the C{--resources} filter matches are
        kept.
        """
        h = Harness(resources="^focus")
        h.online("focus-1", "phone", "focus")
        self.assertEqual(sorted(r.name for r in h.resources.available), ["focus", "focus-1"])

    def test_connectionLostForgetsResources(self):
        """
        A lost connection forgets every resource: no presence will say whether
        they are still there.
        """
        self.h.online("a")
        self.h.manager.disconnect()
        self.assertEqual(len(self.h.resources), 0)

    def test_priorityParsing(self):
        """
        A priority is read with spaces around it, is 0 when absent or not a
        number, and is clamped to -128..127 (RFC 6121 4.7.2.3).
        """

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
        """
        The subscription is C{pending} once asked, C{approved} on
        C{subscribed}, C{revoked} on C{unsubscribed}, and C{none} again after a
        disconnection.
        """
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
        """
        While the target has not approved, a warning saying how to fix it (the
        presence to send, or the Prosody and ejabberd commands) is logged after
        a first delay and then at intervals; the approval ends them, and leaves
        no call.
        """
        from twisted.logger import capturedLogs

        from clientproxy.handlers.targetpresence import (
            FIRST_PENDING_WARNING,
            PENDING_WARNING_INTERVAL,
        )

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


class RecordedFacts:
    """
    An L{clientproxy.state.interfaces.IFacts} that keeps what it is told,
    in C{told}.
    """

    def __init__(self):
        self.told = []

    def learnt(self, fact):
        self.told.append(fact)

    def observe(self, observer):
        pass


class FactTests(unittest.TestCase):
    """
    L{TargetPresence} alone over the stream stub: what a presence of the
    target says is acted on here and told to the other processes as a
    fact; a fact another process learnt is acted on without a stanza.
    """

    def setUp(self):
        self.resources = ResourceSet()
        self.facts = RecordedFacts()
        self.presence = TargetPresence(
            COMPONENT, TARGET, self.resources, Stats(), task.Clock(), self.facts
        )
        self.manager = alone(self.presence)

    def test_presenceToldAsFacts(self):
        """
        Each presence of the target that changes what a process believes is
        told as the fact it says, once acted on here; subscription requests
        and probes are answered, not told.
        """
        for xml in (
            "<presence from='%s/a' to='%s'><priority>3</priority></presence>",
            "<presence type='unavailable' from='%s/a' to='%s'/>",
            "<presence type='subscribed' from='%s' to='%s'/>",
            "<presence type='error' from='%s' to='%s'/>",
            "<presence type='probe' from='%s' to='%s'/>",
        ):
            self.manager.receive(xml % (TARGET, COMPONENT))
        self.assertEqual(
            self.facts.told,
            [
                ("available", TARGET + "/a", "a", 3, None),
                ("unavailable", TARGET + "/a"),
                ("subscribed",),
                ("bounced",),
            ],
        )

    def test_factFromElsewhere(self):
        """
        A resource another process saw come is available here too, its
        observers told the other process's id as the origin; nothing is
        told back.
        """
        seen = []
        self.resources.whenAdded(lambda resource, origin: seen.append((resource.jid, origin)))
        self.presence.apply(("available", TARGET + "/b", "b", 0, None), "other")
        self.assertEqual((seen, self.facts.told), ([(TARGET + "/b", "other")], []))
