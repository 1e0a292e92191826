"""
Tests for capability-aware dispatch through the real handlers: what
resources advertise is learnt (caps, disco#info, verification), requests
go to those that can serve them, refusals are learnt and the request moves
on, and affinity keeps a key on one resource.
"""

from twisted.trial import unittest

from clientproxy.xmpp.caps import NS_CAPS, NS_DISCO_INFO, DiscoInfo, verString
from clientproxy.handlers.capabilities import CACHE_BYTES, CACHE_SIZE, QUERY_TIMEOUT
from tests.helpers import COMPONENT, TARGET, Harness, errorCondition
from tests.helpers import written as parseWritten

NS = "urn:example:service"
ALICE = "alice@example.org/abc"
NODE = "http://example.org/client"


def verFor(*features):
    return verString(DiscoInfo([("client", "bot", "", "")], frozenset(features), {}))


def discoAnswer(features, identity=("client", "bot")):
    return "<identity category='%s' type='%s'/>%s" % (
        identity[0],
        identity[1],
        "".join("<feature var='%s'/>" % (f,) for f in features),
    )


class Learning:
    """
    Helpers: a resource comes online with caps, the component asks it,
    and it answers.
    """

    def online(self, h, name, ver=None, hash="sha-1"):
        caps = ""
        if ver is not None:
            caps = "<c xmlns='%s' hash='%s' node='%s' ver='%s'/>" % (NS_CAPS, hash, NODE, ver)
        h.receive("<presence from='%s/%s' to='%s'>%s</presence>" % (TARGET, name, COMPONENT, caps))
        return [s for s in h.take() if s.name == "iq"]

    def answer(self, h, query, name, features, kind="result"):
        h.receive(
            "<iq type='%s' id='%s' from='%s/%s' to='%s'><query xmlns='%s'>%s</query></iq>"
            % (kind, query["id"], TARGET, name, COMPONENT, NS_DISCO_INFO, discoAnswer(features))
        )

    def features(self, h, name):
        return h.resources.get("%s/%s" % (TARGET, name)).features

    def cached(self, h):
        """
        The verified answers kept, as a dict by ver, without touching
        their order in the cache.
        """
        verified = h.handlers.capabilities.verified
        return {ver: verified.peek(ver) for ver in verified}


class LearningTests(Learning, unittest.TestCase):
    """
    Learning what each resource supports: one disco#info query per C{ver},
    verified before it is cached and shared, and what is believed when an
    answer is wrong, missing or forged.
    """

    def setUp(self):
        self.h = Harness(matchFeatures="auto")

    def test_askedOncePerVer(self):
        """
        The first resource with a ver is asked about node#ver; the answer
        verifies, so a second resource with the same ver is not asked.
        """
        ver = verFor(NS)
        [query] = self.online(self.h, "a", ver)
        self.assertEqual((query["to"], query["from"]), (TARGET + "/a", COMPONENT))
        child = query.firstChildElement()
        self.assertEqual((child.uri, child["node"]), (NS_DISCO_INFO, NODE + "#" + ver))
        self.answer(self.h, query, "a", [NS])
        self.assertEqual(self.features(self.h, "a"), frozenset([NS]))
        self.assertEqual(self.online(self.h, "b", ver), [])
        self.assertEqual(self.features(self.h, "b"), frozenset([NS]))
        self.assertEqual(self.h.stats.capabilities["queries"], 1)

    def test_waitersShareTheAnswer(self):
        """
        A resource that comes online while its C{ver} is being asked about is
        not asked itself: it gets the features of the answer to the query in
        flight, once that verifies.
        """
        ver = verFor(NS)
        [query] = self.online(self.h, "a", ver)
        self.assertEqual(self.online(self.h, "b", ver), [])
        self.answer(self.h, query, "a", [NS])
        self.assertEqual(self.features(self.h, "b"), frozenset([NS]))

    def test_poisoningAttempt(self):
        """
        A resource that answers with features its ver does not hash to is
        believed for itself alone: the next resource with that ver is asked
        itself, and the cache stays clean.
        """
        ver = verFor(NS)
        [query] = self.online(self.h, "evil", ver)
        [second] = [] or self.online(self.h, "good", ver) or [None]
        self.assertIsNone(second)
        self.answer(self.h, query, "evil", [NS, "urn:poison"])
        self.assertEqual(self.features(self.h, "evil"), frozenset([NS, "urn:poison"]))
        self.assertNotIn(ver, self.h.handlers.capabilities.verified)
        [again] = [s for s in self.h.take() if s.name == "iq"]
        self.assertEqual(again["to"], TARGET + "/good")
        self.answer(self.h, again, "good", [NS])
        self.assertEqual(self.features(self.h, "good"), frozenset([NS]))
        self.assertEqual(self.cached(self.h), {ver: frozenset([NS])})
        self.assertEqual(self.h.stats.capabilities["unverified"], 1)

    def test_regroupedAnswerNotCached(self):
        """
        An answer with the verification string of an honest client's ver
        but its features regrouped (a C{<} inside a var) is believed for
        the resource that gave it alone: the next resource with that ver
        is asked itself, and only its answer is cached.
        """
        ver = verFor("urn:b", NS)
        [query] = self.online(self.h, "evil", ver)
        self.online(self.h, "good", ver)
        self.answer(self.h, query, "evil", ["urn:b&lt;" + NS])
        self.assertEqual(self.cached(self.h), {})
        self.assertEqual(self.features(self.h, "evil"), frozenset(["urn:b<" + NS]))
        [again] = [s for s in self.h.take() if s.name == "iq"]
        self.assertEqual(again["to"], TARGET + "/good")
        self.answer(self.h, again, "good", ["urn:b", NS])
        self.assertEqual(self.cached(self.h), {ver: frozenset(["urn:b", NS])})

    def test_legacyCapsPerResource(self):
        """
        A legacy C{<c/>} (no hash) cannot be verified: its answer counts for the
        resource that gave it alone, is not cached, and the next resource with
        that C{ver} is asked itself.
        """
        [query] = self.online(self.h, "a", "1.0", hash=None)
        self.answer(self.h, query, "a", [NS])
        self.assertEqual(self.features(self.h, "a"), frozenset([NS]))
        self.assertEqual(self.cached(self.h), {})
        [other] = self.online(self.h, "b", "1.0", hash=None)
        self.assertEqual(other["to"], TARGET + "/b")

    def test_noCapsAskedDirectly(self):
        """
        A resource without caps is asked disco#info with no node when it comes
        online, and its answer gives its features.
        """
        [query] = self.online(self.h, "a")
        self.assertIsNone(query.firstChildElement().getAttribute("node"))
        self.answer(self.h, query, "a", [NS])
        self.assertEqual(self.features(self.h, "a"), frozenset([NS]))

    def test_errorOrSilenceMeansNothingAdvertised(self):
        """
        A resource that answers the query with an error, or not within
        L{QUERY_TIMEOUT}, is taken to advertise nothing (and the timeout is
        counted), rather than left unknown for ever.
        """
        [query] = self.online(self.h, "a")
        self.h.receive(
            "<iq type='error' id='%s' from='%s/a' to='%s'/>" % (query["id"], TARGET, COMPONENT)
        )
        self.assertEqual(self.features(self.h, "a"), frozenset())
        self.online(self.h, "b")
        self.h.clock.advance(QUERY_TIMEOUT)
        self.assertEqual(self.features(self.h, "b"), frozenset())
        self.assertEqual(self.h.stats.capabilities["timeouts"], 1)

    def test_answerFromAnotherEntityIgnored(self):
        """
        An answer with the query's id from another entity than the resource
        asked sets nothing: nobody can speak for a resource's features.
        """
        [query] = self.online(self.h, "a")
        self.h.receive(
            "<iq type='result' id='%s' from='mallory@example.org/m' to='%s'>"
            "<query xmlns='%s'><feature var='%s'/></query></iq>"
            % (query["id"], COMPONENT, NS_DISCO_INFO, NS)
        )
        self.assertIsNone(self.features(self.h, "a"))

    def test_requesterCannotAnswerForTheComponent(self):
        """
        A requester's id is never taken for the component's own: alice's
        request with the id of the disco#info query in flight to the same
        resource is answered to alice exactly once, and the resource's
        answer to alice (addressed to alice's encoded address) does not set
        its features; the answer to the query itself still does.
        """
        [query] = self.online(self.h, "a")
        self.h.request(requester=ALICE, stanzaID=query["id"], payload="<q xmlns='%s'/>" % (NS,))
        [forwarded] = self.h.take()
        self.assertEqual((forwarded["to"], forwarded["id"]), (TARGET + "/a", query["id"]))
        self.h.receive(
            "<iq type='result' id='%s' from='%s/a' to='%s'><query xmlns='%s'>"
            "<feature var='urn:forged'/></query></iq>"
            % (query["id"], TARGET, forwarded["from"], NS_DISCO_INFO)
        )
        [answer] = self.h.take()
        self.assertEqual((answer["to"], answer["id"]), (ALICE, query["id"]))
        self.assertEqual(answer["type"], "result")
        self.assertIsNone(self.features(self.h, "a"))
        self.answer(self.h, query, "a", [NS])
        self.assertEqual(self.features(self.h, "a"), frozenset([NS]))
        self.assertEqual(self.h.take(), [])

    def test_newVersDoNotFlushTheCache(self):
        """
        2,000 resources with distinct vers and large verified answers (a
        client chooses its features) do not push out a ver in recent use:
        the cache drops the least recently used answers only, and keeps
        its bytes of features under L{CACHE_BYTES}.
        """
        learner = self.h.handlers.capabilities
        kept = verFor(NS)
        [query] = self.online(self.h, "kept", kept)
        self.answer(self.h, query, "kept", [NS])
        big = "urn:x:" + "f" * 6000
        for n in range(2000):
            features = [big + str(n)]
            [query] = self.online(self.h, "r%d" % (n,), verFor(*features))
            self.answer(self.h, query, "r%d" % (n,), features)
            if n % 100 == 0:
                # Another resource with the kept ver: from the cache.
                self.assertEqual(self.online(self.h, "again%d" % (n,), kept), [])
                self.h.offline("again%d" % (n,))
            self.h.offline("r%d" % (n,))
            self.assertLessEqual(learner.verified.weight, CACHE_BYTES)
        self.assertIn(kept, learner.verified)
        self.assertEqual(self.online(self.h, "last", kept), [])
        self.assertEqual(self.features(self.h, "last"), frozenset([NS]))
        self.assertGreater(len(learner.verified), 100)
        self.assertLess(len(learner.verified), CACHE_SIZE)
        self.assertGreater(learner.verified.weight, CACHE_BYTES - 2 * 6100)

    def test_capsChangeFollowed(self):
        """
        A later presence with another C{ver} is followed: the resource's
        features become those of the new answer.
        """
        [query] = self.online(self.h, "a", verFor())
        self.answer(self.h, query, "a", [])
        self.assertEqual(self.features(self.h, "a"), frozenset())
        [query] = self.online(self.h, "a", verFor(NS))
        self.answer(self.h, query, "a", [NS])
        self.assertEqual(self.features(self.h, "a"), frozenset([NS]))

    def test_offAsksNobody(self):
        """
        With C{--match-features off}, a resource coming online with caps is not
        asked anything.
        """
        h = Harness(matchFeatures="off")
        self.assertEqual(self.online(h, "a", verFor(NS)), [])


class DispatchTests(Learning, unittest.TestCase):
    """
    Requests and the pipeline, through the dispatcher.
    """

    def setUp(self):
        self.h = Harness(matchFeatures="auto")
        for name, features in (("focus", [NS]), ("bridge", ["urn:other"])):
            [query] = self.online(self.h, name)
            self.answer(self.h, query, name, features)

    def request(self, h=None, stanzaID="1", kind="get", ns=NS, attrs="", requester=ALICE):
        (h or self.h).request(
            requester=requester,
            stanzaID=stanzaID,
            kind=kind,
            payload="<q xmlns='%s'%s/>" % (ns, attrs),
        )
        return (h or self.h).take()

    def test_onlyAdvertisersGetTheirNamespace(self):
        """
        In C{auto} mode, requests in a namespace some resource advertises go to
        the advertisers only.
        """
        targets = {self.request(stanzaID=str(i))[0]["to"] for i in range(10)}
        self.assertEqual(targets, {TARGET + "/focus"})

    def test_autoFallsBackToEveryone(self):
        """
        In C{auto} mode, requests in a namespace nobody advertises are spread
        over every resource rather than refused: what is advertised orders, it
        does not exclude.
        """
        targets = {self.request(stanzaID=str(i), ns="urn:nobody")[0]["to"] for i in range(10)}
        self.assertEqual(targets, {TARGET + "/focus", TARGET + "/bridge"})

    def test_strictRefusesWithoutAdvertiser(self):
        """
        In C{strict} mode, a request in a namespace no resource advertises is
        answered service-unavailable (cancel) without reaching any resource.
        """
        h = Harness(matchFeatures="strict")
        [query] = self.online(h, "a")
        self.answer(h, query, "a", ["urn:other"])
        [out] = self.request(h, ns="urn:nobody")
        self.assertEqual(errorCondition(out), ("service-unavailable", "cancel"))

    def refuse(self, h, out, condition="feature-not-implemented"):
        h.receive(
            "<iq type='error' id='%s' from='%s' to='%s'><error type='cancel'>"
            "<%s xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            % (out["id"], out["to"], out["from"], condition)
        )

    def refusalHarness(self):
        h = Harness(matchFeatures="auto", timeout=10)
        for name in ("a", "b", "c"):
            [query] = self.online(h, name)
            self.answer(h, query, name, [])
        return h

    def test_refusedGetMovesOn(self, kind="get"):
        """
        A refused request goes to another resource, and its result to the
        requester; once the resource refused a second requester too, it is
        asked after the others for that namespace and type.
        """
        h = self.refusalHarness()
        [first] = self.request(h, kind=kind)
        self.refuse(h, first)
        [second] = h.take()
        self.assertNotEqual(second["to"], first["to"])
        self.assertEqual((second["id"], second["type"]), ("1", kind))
        h.reply(second["to"].rpartition("/")[2], stanzaID="1")
        [answer] = h.take()
        self.assertEqual((answer["type"], answer["to"]), ("result", ALICE))
        self.assertEqual(h.stats.resources[first["to"]]["refusals"], 1)
        self.assertEqual(h.stats.requests["refused"], 1)
        # One requester refused: nobody else's requests change.
        targets = {self.request(h, stanzaID="n%d" % i, kind=kind)[0]["to"] for i in range(6)}
        self.assertIn(first["to"], targets)
        h.pending.failAll("recipient-unavailable")
        h.take()
        # A second requester refused by the same resource: it is asked last.
        bob = "bob@example.net/b"
        out = None
        for i in range(3):
            [out] = self.request(h, stanzaID="b%d" % i, kind=kind, requester=bob)
            if out["to"] == first["to"]:
                break
            h.pending.failAll("recipient-unavailable")
            h.take()
        self.refuse(h, out)
        h.take()
        targets = {self.request(h, stanzaID="m%d" % i, kind=kind)[0]["to"] for i in range(6)}
        self.assertNotIn(first["to"], targets)
        other = "set" if kind == "get" else "get"
        targets = {self.request(h, stanzaID="o%d" % i, kind=other)[0]["to"] for i in range(6)}
        self.assertIn(first["to"], targets)

    def test_refusedSetMovesOn(self):
        """
        A set is repeated on another resource: it was refused, not lost.
        """
        self.test_refusedGetMovesOn(kind="set")

    def test_everyoneRefusesLastRefusalAsItCame(self):
        """
        When every resource refused a request, its requester gets the last
        refusal as it came; and a later request is asked of them all again
        (learnt refusals order the resources, they never refuse).
        """
        h = self.refusalHarness()
        [out] = self.request(h)
        for condition in ("feature-not-implemented", "service-unavailable"):
            self.refuse(h, out, condition)
            [out] = h.take()
        self.refuse(h, out, "feature-not-implemented")
        [answer] = h.take()
        self.assertEqual((answer["to"], answer["id"]), (ALICE, "1"))
        self.assertEqual(errorCondition(answer), ("feature-not-implemented", "cancel"))
        self.assertEqual(len(h.pending), 0)
        [next] = self.request(h, stanzaID="2", requester="bob@example.net/b")
        self.assertEqual(next["type"], "get")

    def test_oneRefusedRequesterTakesNothingAway(self):
        """
        mallory's get in a namespace the resources serve as a set only is
        refused by all of them: alice's set in that namespace still reaches
        a resource, and so does alice's get.
        """
        h = self.refusalHarness()
        [out] = self.request(h, requester="mallory@evil.example/m")
        for _ in range(2):
            self.refuse(h, out)
            [out] = h.take()
        self.refuse(h, out)
        [answer] = h.take()
        self.assertEqual(answer["to"], "mallory@evil.example/m")
        for kind in ("set", "get"):
            [out] = self.request(h, stanzaID=kind, kind=kind)
            self.assertEqual((out["type"], out["id"]), (kind, kind))

    def test_applicationConditionPassedOn(self):
        """
        A refusal with an application-specific condition (as Jitsi's focus
        answers) is the service's answer: it reaches the requester byte for
        byte, is not sent to another resource, and teaches nothing.
        """
        h = self.refusalHarness()
        [out] = self.request(h)
        error = (
            "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<reservation-error xmlns='http://jitsi.org/protocol/focus' error-code='403'>"
            "<text xmlns='urn:x'>no</text></reservation-error></error>"
        )
        h.receive(
            "<iq type='error' id='%s' from='%s' to='%s'>%s</iq>"
            % (out["id"], out["to"], out["from"], error)
        )
        written = h.manager.takeBytes()
        self.assertIn(error.encode("utf-8"), written)
        [answer] = parseWritten(written)
        self.assertEqual((answer["to"], answer["type"]), (ALICE, "error"))
        self.assertEqual(len(h.dispatcher.selector.refusals), 0)
        self.assertEqual(h.stats.requests["refused"], 0)

    def test_freshRefusedNamespacesFewLogLines(self):
        """
        2,000 requests, each in a namespace never seen before and each
        refused by every resource (from two requesters, so refusers are
        learnt), add a few log lines, not thousands, and the refusal table
        stays under its bound.
        """
        from twisted.logger import capturedLogs

        h = Harness(matchFeatures="off", timeout=10)
        h.online("a")
        h.take()
        h.dispatcher.selector.refusals.size = 100
        with capturedLogs() as events:
            for i in range(2000):
                requester = ("m@x/1", "n@y/1")[i % 2]
                [out] = self.request(
                    h, stanzaID=str(i), ns="urn:fresh:%d" % (i // 2,), requester=requester
                )
                self.refuse(h, out)
                [answer] = h.take()
                self.assertEqual(answer["type"], "error")
        self.assertLess(len(events), 30)
        self.assertLessEqual(len(h.dispatcher.selector.refusals), 100)

    def test_resultForgetsTheRefusal(self):
        """
        A result from a resource for a namespace and type it refused forgets
        the refusal at once.
        """
        h = self.refusalHarness()
        resource = h.resources.get(TARGET + "/a")
        h.dispatcher.selector.refusals.refused(resource, (NS, "q", "get"), "m@x/1")
        out = None
        for i in range(3):
            [out] = self.request(h, stanzaID="r%d" % i, requester="x%d@y/z" % i)
            if out["to"] == resource.jid:
                break
        self.assertEqual(out["to"], resource.jid)
        # The request's topic was kept with it: the reply parses nothing
        # again (a refusal record must not make every result cost more).
        described = []
        self.patch(h.dispatcher, "_describe", lambda entry: described.append(entry))
        h.reply("a", requester=out["from"].split("/", 1)[1], stanzaID=out["id"])
        self.assertFalse(h.dispatcher.selector.refusals.concerns(resource))
        self.assertEqual(described, [])

    def test_otherErrorsPassThrough(self):
        """
        An error that is not a refusal (item-not-found) is the service's answer:
        it goes to the requester, and the request is not sent to another
        resource.
        """
        h = self.refusalHarness()
        [out] = self.request(h)
        self.refuse(h, out, "item-not-found")
        [answer] = h.take()
        self.assertEqual(errorCondition(answer), ("item-not-found", "cancel"))

    def test_refusalsPassThroughWhenOff(self):
        """
        With refusal learning off (a TTL of 0), a refusal goes to the requester
        as it came, not to the other resource.
        """
        h = Harness(matchFeatures="off", refusalTTL=0)
        h.online("a", "b")
        h.take()
        [out] = self.request(h)
        self.refuse(h, out)
        [answer] = h.take()
        self.assertEqual(errorCondition(answer), ("feature-not-implemented", "cancel"))

    def test_refusalRetryKeepsTheDeadline(self):
        """
        A request moved on after a refusal keeps its first deadline: it times
        out (remote-server-timeout, wait) the original timeout after it came,
        not after the move.
        """
        h = self.refusalHarness()
        [out] = self.request(h)
        h.clock.advance(6)
        self.refuse(h, out)
        h.take()
        h.clock.advance(4)
        [answer] = h.take()
        self.assertEqual(errorCondition(answer), ("remote-server-timeout", "wait"))

    def test_affinityByAttribute(self):
        """
        With affinity on an attribute, every request with the same value goes to
        one resource, and different values are spread over several.
        """
        h = Harness(matchFeatures="auto", affinity="attribute:room")
        for name in ("a", "b", "c", "d"):
            [query] = self.online(h, name)
            self.answer(h, query, name, [])
        placement = {}
        for i in range(40):
            room = "room%d" % (i % 8)
            [out] = self.request(h, stanzaID=str(i), attrs=" room='%s'" % room)
            placement.setdefault(room, set()).add(out["to"])
        self.assertTrue(all(len(where) == 1 for where in placement.values()))
        self.assertGreater(len(set().union(*placement.values())), 1)

    def test_refusedThenResourceLeaves(self):
        """
        A get moved on after a refusal, whose new resource then leaves, is
        sent once more to the one left: each resend starts from the
        request as last sent.
        """
        h = self.refusalHarness()
        [first] = self.request(h)
        self.refuse(h, first)
        [second] = h.take()
        h.offline(second["to"].rpartition("/")[2])
        [third] = [s for s in h.take() if s.name == "iq"]
        self.assertNotIn(third["to"], (first["to"], second["to"]))
        self.assertEqual(h.stats.requests["retried"], 1)

    def test_countersOfGoneResourcesPruned(self):
        """
        Once more than L{MAX_RESOURCE_STATS} resources have counters, a resource
        leaving forgets those of every resource that is gone: random resources
        cannot grow the stats for ever.
        """
        from clientproxy.handlers.dispatch import MAX_RESOURCE_STATS

        h = Harness()
        for i in range(MAX_RESOURCE_STATS + 5):
            h.stats.resources["%s/old%d" % (TARGET, i)]["requests"] += 1
        h.online("a", "b")
        h.offline("a")
        self.assertEqual(list(h.stats.resources), [])
