"""
Tests for the line (C{--hold}) and idempotent namespaces (C{--idempotent}),
through the real handlers (L{tests.helpers.Harness}) on a L{task.Clock}: a
request that no resource can serve waits in line until one comes or the
hold passes, within its own timeout, counted once against the bounds of
requests in flight; a request safe to repeat whose resource leaves goes to
another, or back in line.
"""

from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.trial import unittest

from clientproxy.ops.metrics import readiness, render
from clientproxy.assembly import makeProxy
from clientproxy.xmpp.caps import NS_DISCO_INFO
from tests.helpers import COMPONENT, TARGET, Harness, errorCondition, inStream

ALICE = "alice@example.org/abc"
BOB = "bob@example.org/b"
FOCUS = "http://jitsi.org/protocol/focus"


def texts(stanza):
    error = next(c for c in stanza.elements() if c.name == "error")
    return [str(c) for c in error.elements() if c.name == "text"]


def conference(room):
    return "<conference xmlns='%s' room='%s'/>" % (FOCUS, room)


class HoldTests(unittest.TestCase):
    """
    A request no resource can serve waits in line: sent when one comes, in
    the order they came, or answered as without the hold once the hold (or
    its timeout) passes.
    """

    def setUp(self):
        self.h = Harness(timeout=30, hold=10)

    def test_waitsUntilAResourceComes(self):
        """
        With no resource online, a request is not answered: it waits, in
        flight and in line, and is sent, unchanged, to the first resource
        that comes; its reply reaches the requester.
        """
        self.h.request(stanzaID="1", kind="set", payload=conference("r"))
        self.assertEqual(self.h.take(), [])
        self.assertEqual((len(self.h.pending), self.h.pending.lineLength), (1, 1))
        self.h.clock.advance(3)
        self.h.online("a")
        [out] = self.h.take()
        self.assertEqual(
            (out["type"], out["id"], out["to"], out["from"]),
            ("set", "1", TARGET + "/a", COMPONENT + "/" + ALICE),
        )
        self.assertEqual(out.firstChildElement().getAttribute("room"), "r")
        self.assertEqual(self.h.pending.lineLength, 0)
        self.h.reply("a", stanzaID="1")
        [answer] = self.h.take()
        self.assertEqual((answer["type"], answer["to"]), ("result", ALICE))
        self.assertEqual(self.h.stats.requests["held"], 1)
        self.assertEqual(self.h.stats.requests["sent-from-line"], 1)
        self.assertEqual(self.h.stats.requests["answered"], 1)

    def test_inTheOrderTheyCame(self):
        """
        Requests waiting in line are sent in the order they came.
        """
        for i in range(5):
            self.h.request(requester="user%d@example.org/x" % (i,), stanzaID=str(i))
        self.h.online("a")
        self.assertEqual([o["id"] for o in self.h.take()], ["0", "1", "2", "3", "4"])

    def test_holdPassesServiceUnavailable(self):
        """
        When the hold passes with no resource, the requester gets what it
        would have had at once: service-unavailable (cancel), with a text
        that says why; nothing is left in flight, and no timer.
        """
        self.h.request(stanzaID="1")
        self.h.clock.advance(9.9)
        self.assertEqual(self.h.take(), [])
        self.h.clock.advance(0.1)
        [out] = self.h.take()
        self.assertEqual((out["to"], out["id"]), (ALICE, "1"))
        self.assertEqual(errorCondition(out), ("service-unavailable", "cancel"))
        self.assertEqual(texts(out), ["No resource of the service came in time"])
        self.assertEqual(len(self.h.pending), 0)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])
        self.assertEqual(self.h.stats.requests["held-unserved"], 1)

    def test_timeoutBeforeTheHold(self):
        """
        A hold longer than the timeout ends with the request's own deadline,
        with the hold's answer (service-unavailable), not a timeout.
        """
        h = Harness(timeout=5, hold=20)
        h.request(stanzaID="1")
        h.clock.advance(5)
        [out] = h.take()
        self.assertEqual(errorCondition(out), ("service-unavailable", "cancel"))

    def test_eachWaitsTheHoldFromItsOwnArrival(self):
        """
        Requests that came at different times leave the line at different
        times: each after the hold from when it joined.
        """
        self.h.request(stanzaID="1")
        self.h.clock.advance(4)
        self.h.request(stanzaID="2")
        self.h.clock.advance(6)
        self.assertEqual([o["id"] for o in self.h.take()], ["1"])
        self.h.clock.advance(4)
        self.assertEqual([o["id"] for o in self.h.take()], ["2"])

    def test_noHoldAnswersAtOnce(self):
        """
        Without --hold (0, the default), a request with no resource gets
        service-unavailable at once, as before.
        """
        h = Harness()
        h.request(stanzaID="1")
        [out] = h.take()
        self.assertEqual(errorCondition(out), ("service-unavailable", "cancel"))
        self.assertEqual(texts(out), [])
        self.assertEqual(len(h.pending), 0)

    def test_boundedPerRequester(self):
        """
        Waiting requests count against the bounds of requests in flight, in
        the same table: one requester that holds its share gets
        resource-constraint, another still joins the line.
        """
        h = Harness(hold=10, maxPending=3, maxPendingPerRequester=2)
        for i in range(3):
            h.request(requester="mallory@evil.example/m%d" % (i,), stanzaID=str(i))
        [out] = h.take()
        self.assertEqual((out["id"], errorCondition(out)), ("2", ("resource-constraint", "wait")))
        h.request(requester=ALICE, stanzaID="a")
        self.assertEqual(h.take(), [])
        h.request(requester=BOB, stanzaID="b")
        [out] = h.take()
        self.assertEqual((out["to"], errorCondition(out)[0]), (BOB, "resource-constraint"))
        self.assertEqual(h.pending.lineLength, 3)
        self.assertEqual(h.pending.heldBy("mallory@evil.example"), 2)

    def test_boundedInBytes(self):
        """
        Waiting requests count their bytes too: one over the requester's
        share of --max-pending-bytes is refused.
        """
        h = Harness(hold=10, maxPending=10, maxPendingPerRequester=10, maxPendingBytes=2000)
        payload = "<query xmlns='urn:test'>%s</query>" % ("x" * 900,)
        h.request(stanzaID="1", payload=payload)
        h.request(stanzaID="2", payload=payload)
        [out] = h.take()
        self.assertEqual((out["id"], errorCondition(out)[0]), ("2", "resource-constraint"))
        self.assertEqual(h.pending.lineLength, 1)

    def test_replyToAWaitingRequestDropped(self):
        """
        A reply from the target matching a waiting request (it was never
        sent) is dropped; the request waits on.
        """
        self.h.request(stanzaID="1")
        self.h.reply("a", stanzaID="1")
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["reply-from-wrong-resource"], 1)
        self.assertEqual(self.h.pending.lineLength, 1)

    def test_duplicateIdWhileWaiting(self):
        """
        A second request with the id of one waiting is refused bad-request;
        the first waits on.
        """
        self.h.request(stanzaID="1")
        self.h.request(stanzaID="1")
        [out] = self.h.take()
        self.assertEqual(errorCondition(out), ("bad-request", "modify"))
        self.assertEqual(self.h.pending.lineLength, 1)

    def test_holdReloadedLive(self):
        """
        A new hold applies to the requests waiting too, counted from when
        they joined: shorter, and those past it are answered at once.
        """
        self.h.request(stanzaID="1")
        self.h.clock.advance(3)
        self.h.pending.setHold(2)
        self.h.clock.advance(0)
        [out] = self.h.take()
        self.assertEqual(errorCondition(out)[0], "service-unavailable")

    def test_connectionLostAnswersTheLine(self):
        """
        Losing the connection to the server answers waiting requests like
        any in flight, recipient-unavailable.
        """
        self.h.request(stanzaID="1")
        self.h.manager.disconnect(Failure(ConnectionLost()))
        [out] = self.h.take()
        self.assertEqual(errorCondition(out), ("recipient-unavailable", "wait"))
        self.assertEqual(len(self.h.pending), 0)

    def test_shutdownGivesTheLineItsGrace(self):
        """
        A shutdown gives waiting requests the grace period like those in
        flight: served if a resource comes meanwhile; answered after it.
        """
        self.h.request(stanzaID="1")
        self.h.request(stanzaID="2", requester=BOB)
        done = self.h.dispatcher.shutdown(self.h.clock, 2)
        self.h.online("a")
        [sent1, sent2] = self.h.take()
        self.h.reply("a", stanzaID="1")
        self.assertEqual(self.h.take()[0]["type"], "result")
        self.h.clock.advance(2)
        [out] = self.h.take()
        self.assertEqual((out["to"], errorCondition(out)[0]), (BOB, "recipient-unavailable"))
        self.assertTrue(done.called)

    def test_servedWhenFeaturesBecomeKnown(self):
        """
        With --match-features strict, a resource whose features are not
        known yet serves nothing; once its disco#info answer says it
        supports the namespace, the waiting request goes to it.
        """
        h = Harness(hold=10, matchFeatures="strict")
        h.request(stanzaID="1", payload=conference("r"))
        h.online("a")
        [query] = h.take()
        self.assertEqual(query.firstChildElement().uri, NS_DISCO_INFO)
        h.receive(
            "<iq type='result' id='%s' from='%s/a' to='%s'><query xmlns='%s'>"
            "<identity category='client' type='bot'/><feature var='%s'/></query></iq>"
            % (query["id"], TARGET, COMPONENT, NS_DISCO_INFO, FOCUS)
        )
        [out] = h.take()
        self.assertEqual((out["id"], out["to"]), ("1", TARGET + "/a"))

    def test_madeUpNamespaceDoesNotWait(self):
        """
        With --match-features strict and a resource online whose features
        are known, a request in a namespace it does not advertise (one an
        outsider made up) is answered service-unavailable at once, as
        without --hold: it would wait for nothing, holding room in the
        table; one in an --idempotent namespace still waits.
        """
        h = Harness(hold=10, matchFeatures="strict", idempotent=[FOCUS])
        h.online("a")
        [query] = h.take()
        h.receive(
            "<iq type='result' id='%s' from='%s/a' to='%s'><query xmlns='%s'>"
            "<identity category='client' type='bot'/></query></iq>"
            % (query["id"], TARGET, COMPONENT, NS_DISCO_INFO)
        )
        h.request(stanzaID="junk", payload="<q xmlns='urn:made-up'/>")
        [answer] = h.take()
        self.assertEqual(
            (answer["id"], errorCondition(answer)), ("junk", ("service-unavailable", "cancel"))
        )
        h.request(stanzaID="join", payload=conference("r"))
        self.assertEqual((h.take(), h.pending.lineLength), ([], 1))

    def test_affinityChoosesWhereTheLineGoes(self):
        """
        With --affinity attribute:room, requests leaving the line go where
        the room's requests go: each room to one resource.
        """
        h = Harness(hold=10, affinity="attribute:room")
        rooms = ["room%d" % (i,) for i in range(20)]
        for i, room in enumerate(rooms):
            h.request(
                requester="u%d@example.org/x" % (i,), stanzaID=str(i), payload=conference(room)
            )
        h.receive(
            "<presence from='%s/f1' to='%s'/><presence from='%s/f2' to='%s'/>"
            % (TARGET, COMPONENT, TARGET, COMPONENT)
        )
        first = {o.firstChildElement()["room"]: o["to"] for o in h.take()}
        self.assertEqual(set(first), set(rooms))
        # All went to f1, the one resource when the line was served.
        self.assertEqual(set(first.values()), {TARGET + "/f1"})
        for i, room in enumerate(rooms):
            h.request(
                requester="v%d@example.org/x" % (i,), stanzaID=str(i), payload=conference(room)
            )
        second = {o.firstChildElement()["room"]: o["to"] for o in h.take()}
        self.assertEqual(len(set(second.values())), 2)


class LeavingTests(unittest.TestCase):
    """
    A resource that leaves with requests in flight: what is safe to repeat
    (a C{get}, a C{set} in an C{--idempotent} namespace) goes to another
    resource, or waits in line with C{--hold}; a plain C{set} is answered
    recipient-unavailable, as before.
    """

    def test_getWaitsForTheNextResource(self):
        """
        With --hold, a C{get} whose resource leaves with no other waits in
        line and goes to the next resource that comes, keeping its id and
        its first deadline.
        """
        h = Harness(timeout=30, hold=10)
        h.online("a")
        h.request(stanzaID="g")
        h.take()
        h.offline("a")
        self.assertEqual(h.take(), [])
        self.assertEqual(h.stats.requests["held-again"], 1)
        h.online("b")
        [out] = h.take()
        self.assertEqual((out["id"], out["to"]), ("g", TARGET + "/b"))
        h.reply("b", stanzaID="g")
        self.assertEqual(h.take()[0]["type"], "result")

    def test_retriedGetWaitsToo(self):
        """
        A C{get} already sent once to another resource (whose resource then
        left too) waits in line with --hold instead of failing: several
        resources restarting one after the other lose nothing.
        """
        h = Harness(timeout=30, hold=10)
        h.online("a", "b")
        h.request(stanzaID="g")
        [first] = h.take()
        h.offline(first["to"].split("/")[1])
        [again] = h.take()
        h.offline(again["to"].split("/")[1])
        self.assertEqual(h.take(), [])
        h.online("c")
        [out] = h.take()
        self.assertEqual(out["to"], TARGET + "/c")

    def test_leftAndHoldPassedRecipientUnavailable(self):
        """
        A request put back in line whose hold passes gets what it would have
        had at once: recipient-unavailable (wait).
        """
        h = Harness(timeout=30, hold=5)
        h.online("a")
        h.request(stanzaID="g")
        h.take()
        h.clock.advance(1)
        h.offline("a")
        h.clock.advance(5)
        [out] = h.take()
        self.assertEqual(errorCondition(out), ("recipient-unavailable", "wait"))
        self.assertEqual(texts(out), ["The resource left and no other came in time"])

    def test_plainSetNotRepeated(self):
        """
        A plain C{set} whose resource leaves is answered
        recipient-unavailable at once, with --hold and another resource
        online alike: it may have been acted on.
        """
        h = Harness(hold=10)
        h.online("a", "b")
        h.request(stanzaID="s", kind="set", payload=conference("r"))
        [out] = h.take()
        h.offline(out["to"].split("/")[1])
        [answer] = h.take()
        self.assertEqual(answer["to"], ALICE)
        self.assertEqual(errorCondition(answer), ("recipient-unavailable", "wait"))

    def test_idempotentSetSentToAnother(self):
        """
        A C{set} in an --idempotent namespace whose resource leaves is sent
        at once to another, like a C{get}, unchanged.
        """
        h = Harness(idempotent=[FOCUS])
        h.online("a", "b")
        h.request(stanzaID="s", kind="set", payload=conference("r"))
        [first] = h.take()
        h.offline(first["to"].split("/")[1])
        [again] = h.take()
        self.assertNotEqual(again["to"], first["to"])
        self.assertEqual(
            (again["type"], again["id"], again.firstChildElement().toXml()),
            ("set", "s", first.firstChildElement().toXml()),
        )
        self.assertEqual(h.stats.requests["retried"], 1)

    def test_idempotentSetWaitsWithHold(self):
        """
        With --hold too, an idempotent C{set} whose only resource leaves
        waits for the next one.
        """
        h = Harness(hold=10, idempotent=[FOCUS])
        h.online("focus")
        h.request(stanzaID="s", kind="set", payload=conference("r"))
        h.take()
        h.offline("focus")
        self.assertEqual(h.take(), [])
        h.online("focus")
        [out] = h.take()
        self.assertEqual((out["type"], out["id"]), ("set", "s"))

    def test_otherNamespacesNotIdempotent(self):
        """
        Only the namespaces given are idempotent: a C{set} in another
        (even a prefix of one given) is not repeated.
        """
        h = Harness(hold=10, idempotent=[FOCUS])
        h.online("a")
        h.request(stanzaID="s", kind="set", payload="<conference xmlns='http://jitsi.org/'/>")
        h.take()
        h.offline("a")
        [out] = h.take()
        self.assertEqual(errorCondition(out)[0], "recipient-unavailable")

    def test_idempotentReloadedLive(self):
        """
        The idempotent namespaces in force when the resource leaves decide.
        """
        h = Harness(hold=10)
        h.online("a")
        h.request(stanzaID="s", kind="set", payload=conference("r"))
        h.take()
        h.dispatcher.idempotent = frozenset([FOCUS])
        h.offline("a")
        self.assertEqual(h.take(), [])
        self.assertEqual(h.pending.lineLength, 1)


class VisibleTests(unittest.TestCase):
    """
    The line in the metrics and in /readyz's body.
    """

    def test_metricsAndReadiness(self):
        """
        The number of requests waiting is a gauge, and each proxy's entry
        in /readyz's report says it; they count as in flight too.
        """
        from twisted.internet.testing import MemoryReactorClock

        p = makeProxy(
            "proxy.example.org", "svc@example.org", "s", reactor=MemoryReactorClock(), hold=5
        )
        p.dispatcher.onIQ(
            inStream(
                "<iq type='get' id='1' from='%s' to='proxy.example.org'><q xmlns='urn:x'/></iq>"
                % (ALICE,)
            )
        )
        text = render([p])
        self.assertIn('clientproxy_held_requests{component="proxy.example.org"} 1.0', text)
        self.assertIn('clientproxy_pending_requests{component="proxy.example.org"} 1.0', text)
        self.assertIn(
            'clientproxy_requests_held_total{component="proxy.example.org",reason="no-resource"} 1.0',
            text,
        )
        ready, report = readiness([p])
        self.assertFalse(ready)
        self.assertEqual(report["proxies"]["proxy.example.org"]["held"], 1)
