"""
Tests for L{clientproxy.handlers.dispatch}: the IQ flow, the checks on replies, the
errors the component answers with, and requests held by a resource that
leaves.
"""

from twisted.python.failure import Failure
from twisted.internet.error import ConnectionLost
from twisted.trial import unittest
from twisted.words.protocols.jabber import jid

from clientproxy.handlers.dispatch import errorConditionOf
from tests.helpers import COMPONENT, TARGET, Harness, errorCondition, inStream

ALICE = "alice@example.org/abc"


class RequestFlowTests(unittest.TestCase):
    """
    The seed's example: request out with JAT, reply back from the bare JID.
    """

    def setUp(self):
        self.h = Harness()
        self.h.online("a")

    def test_requestForwardedWithEncodedRequester(self):
        """
        A request goes to an available resource with its type, id and payload
        unchanged, from the requester's encoded address, so the resource's reply
        can find its way back.
        """
        self.h.request(stanzaID="1234")
        [out] = self.h.take()
        self.assertEqual(out.name, "iq")
        self.assertEqual(out["type"], "get")
        self.assertEqual(out["id"], "1234")
        self.assertEqual(out["to"], TARGET + "/a")
        self.assertEqual(out["from"], COMPONENT + "/" + ALICE)
        [payload] = list(out.elements())
        self.assertEqual((payload.uri, payload.name), ("urn:test", "query"))

    def test_replyRoutedBackFromBareComponent(self):
        """
        The resource's reply to the encoded address reaches the requester from
        the component's bare JID, payload and id intact; the request leaves the
        pending table, counted answered.
        """
        self.h.request(stanzaID="1234")
        self.h.take()
        self.h.reply("a", stanzaID="1234")
        [out] = self.h.take()
        self.assertEqual(out["type"], "result")
        self.assertEqual(out["id"], "1234")
        self.assertEqual(out["to"], ALICE)
        self.assertEqual(out["from"], COMPONENT)
        [payload] = list(out.elements())
        self.assertEqual(payload.firstChildElement().name, "answer")
        self.assertEqual(len(self.h.pending), 0)
        self.assertEqual(self.h.stats.requests["answered"], 1)

    def test_errorReplyPassesThrough(self):
        """
        An error reply that is not a refusal is the service's answer: it reaches
        the requester with its condition and type unchanged.
        """
        self.h.request()
        self.h.take()
        self.h.reply(
            "a",
            kind="error",
            payload="<error type='cancel'><item-not-found "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
        )
        [out] = self.h.take()
        self.assertEqual(out["to"], ALICE)
        self.assertEqual(errorCondition(out), ("item-not-found", "cancel"))

    def test_requestToComponentResourceIsServed(self):
        """
        A request from outside to a full JID of the component is served like
        one to its bare JID: forwarded to a resource of the target.
        """
        self.h.request(to=COMPONENT + "/anything")
        [out] = self.h.take()
        self.assertEqual(out["to"], TARGET + "/a")

    def test_setIsForwarded(self):
        """
        A C{set} is forwarded as a C{set}: the proxy carries both request types.
        """
        self.h.request(kind="set")
        [out] = self.h.take()
        self.assertEqual(out["type"], "set")

    def test_sameIdFromTwoRequestersAreDistinct(self):
        """
        Two requesters may use the same id: both requests are in flight at once,
        and the reply to one goes to that requester only.
        """
        self.h.request(requester=ALICE, stanzaID="x")
        self.h.request(requester="bob@example.org/b", stanzaID="x")
        self.assertEqual(len(self.h.pending), 2)
        self.h.take()
        self.h.reply("a", requester="bob@example.org/b", stanzaID="x")
        [out] = self.h.take()
        self.assertEqual(out["to"], "bob@example.org/b")

    def test_requestersAreNotInterned(self):
        """
        A distinct requester per request leaves nothing behind in
        twisted.words' JID cache (it would grow for the life of the
        process).
        """
        cache = jid.__dict__["__internJIDs"]
        before = len(cache)
        for i in range(50):
            requester = "user%d@example.org/r%d" % (i, i)
            self.h.request(requester=requester, stanzaID=str(i))
            self.h.reply("a", requester=requester, stanzaID=str(i))
        self.assertEqual(self.h.stats.requests["answered"], 50)
        self.assertEqual(len(cache), before)


class ReplyCheckTests(unittest.TestCase):
    """
    Only a reply that matches, from the resource asked, in time, is routed.
    """

    def setUp(self):
        self.h = Harness()
        self.h.online("a", "b")
        self.h.request(stanzaID="1")
        [self.out] = self.h.take()
        self.assertEqual(self.out["to"], TARGET + "/a")

    def assertDropped(self, reason):
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped[reason], 1)

    def test_replyFromOtherResourceDropped(self):
        """
        A reply from another resource than the one asked is dropped and counted,
        and the request stays in flight for the real answer.
        """
        self.h.reply("b", stanzaID="1")
        self.assertDropped("reply-from-wrong-resource")
        self.assertEqual(len(self.h.pending), 1)

    def test_replyFromThirdPartyDropped(self):
        """
        A reply to the encoded address from someone outside the target is
        dropped and counted, and the request stays in flight: an outsider cannot
        answer for the service.
        """
        self.h.receive(
            "<iq type='result' id='1' from='mallory@example.org/m' to='%s/%s'/>"
            % (COMPONENT, ALICE)
        )
        self.assertDropped("reply-from-outsider")
        self.assertEqual(len(self.h.pending), 1)

    def test_unsolicitedReplyDropped(self):
        """
        A reply with an id nobody asked is dropped and counted as unknown.
        """
        self.h.reply("a", stanzaID="never-asked")
        self.assertDropped("unknown-reply")

    def test_replyToBareComponentDropped(self):
        """
        A reply to a forwarded request sent to the component's bare JID, not to
        the requester's encoded address, matches nothing and is dropped.
        """
        self.h.receive("<iq type='result' id='1' from='%s/a' to='%s'/>" % (TARGET, COMPONENT))
        self.assertDropped("unknown-reply")

    def test_errorFromWrongResourceNotAnswered(self):
        """
        An error is never answered with an error (RFC 6120 8.2.3).
        """
        self.h.reply("b", stanzaID="1", kind="error", payload="")
        self.assertDropped("reply-from-wrong-resource")

    def test_lateReplyDropped(self):
        """
        Once a request has timed out and its requester been answered, the
        resource's late reply is dropped: the requester gets one answer only.
        """
        self.h.clock.advance(30)
        [timeout] = self.h.take()
        self.assertEqual(errorCondition(timeout), ("remote-server-timeout", "wait"))
        self.h.reply("a", stanzaID="1")
        self.assertDropped("unknown-reply")

    def test_replyRoutedOnlyOnce(self):
        """
        A second reply to the same request is dropped: each request is answered
        once.
        """
        self.h.reply("a", stanzaID="1")
        self.assertEqual(len(self.h.take()), 1)
        self.h.reply("a", stanzaID="1")
        self.assertDropped("unknown-reply")


class ErrorAnswerTests(unittest.TestCase):
    """
    The errors the component answers with itself (README's table).
    """

    def setUp(self):
        self.h = Harness(timeout=10)

    def assertAnswer(self, condition, kind, stanzaID="1", to=ALICE):
        [out] = self.h.take()
        self.assertEqual(out["type"], "error")
        self.assertEqual(out["to"], to)
        self.assertEqual(out.getAttribute("id"), stanzaID)
        self.assertEqual(out["from"], COMPONENT)
        self.assertEqual(errorCondition(out), (condition, kind))

    def test_noResource(self):
        """
        A request while no resource of the target is available is answered
        service-unavailable (cancel) at once.
        """
        self.h.request()
        self.assertAnswer("service-unavailable", "cancel")

    def test_timeout(self):
        """
        A request with no reply within the timeout is answered
        remote-server-timeout (wait), and leaves the pending table and the
        resource's load.
        """
        self.h.online("a")
        self.h.request()
        self.h.take()
        self.h.clock.advance(9.9)
        self.assertEqual(self.h.take(), [])
        self.h.clock.advance(0.1)
        self.assertAnswer("remote-server-timeout", "wait")
        self.assertEqual(len(self.h.pending), 0)
        self.assertEqual(self.h.resources.get(TARGET + "/a").pending, 0)

    def test_noChild(self):
        """
        A request without a payload element is answered bad-request (modify),
        never forwarded: RFC 6120 requires exactly one child.
        """
        self.h.online("a")
        self.h.request(payload="")
        self.assertAnswer("bad-request", "modify")

    def test_twoChildren(self):
        """
        A request with two payload elements is answered bad-request (modify),
        never forwarded.
        """
        self.h.online("a")
        self.h.request(payload="<a xmlns='urn:x'/><b xmlns='urn:x'/>")
        self.assertAnswer("bad-request", "modify")

    def test_textIsNotAChild(self):
        """
        Whitespace around a single payload element does not count as a second
        child: the request is forwarded.
        """
        self.h.online("a")
        self.h.request(payload=" <a xmlns='urn:x'/> ")
        [out] = self.h.take()
        self.assertEqual(out["type"], "get")

    def test_duplicateIdInFlight(self):
        """
        A requester's second request with the id of one still in flight is
        answered bad-request (modify), and the first stays in flight alone:
        replies could not tell them apart.
        """
        self.h.online("a")
        self.h.request(stanzaID="dup")
        self.h.take()
        self.h.request(stanzaID="dup")
        self.assertAnswer("bad-request", "modify", stanzaID="dup")
        self.assertEqual(len(self.h.pending), 1)

    def test_missingIdDropped(self):
        """
        A request without an id is dropped and counted, neither forwarded nor
        answered: no answer could name it.
        """
        self.h.online("a")
        self.h.receive(
            "<iq type='get' from='%s' to='%s'><q xmlns='urn:x'/></iq>" % (ALICE, COMPONENT)
        )
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["request-without-id"], 1)

    def test_requesterTooLongToEncode(self):
        """
        A requester whose JID does not fit in a resource of the component is
        answered jid-malformed (modify) rather than forwarded with an address
        the server would reject.
        """
        self.h.online("a")
        requester = "a@example.org/" + "r" * 1020
        self.h.request(requester=requester)
        self.assertAnswer("jid-malformed", "modify", to=requester)

    def test_multibyteRequesterMeasuredInBytes(self):
        """
        The bound on the encoded requester is in UTF-8 bytes: 600 two-byte
        characters are too long though under 1023 characters.
        """
        self.h.online("a")
        requester = "a@example.org/" + "\u00e9" * 600
        self.h.request(requester=requester)
        self.assertAnswer("jid-malformed", "modify", to=requester)

    def test_resultFromOutsiderNotAnswered(self):
        """
        A result or an error to the component's bare JID that answers none of
        its requests is dropped and counted, never answered with an error (RFC
        6120 8.2.3).
        """
        self.h.receive("<iq type='result' id='1' from='%s' to='%s'/>" % (ALICE, COMPONENT))
        self.h.receive(
            "<iq type='error' id='1' from='%s' to='%s'><error type='cancel'/></iq>"
            % (ALICE, COMPONENT)
        )
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["reply-from-outsider"], 2)

    def test_unknownTypeDropped(self):
        """
        An iq with an unknown type, or none, is dropped and counted.
        """
        self.h.receive("<iq type='bogus' id='1' from='%s' to='%s'/>" % (ALICE, COMPONENT))
        self.h.receive("<iq id='2' from='%s' to='%s'/>" % (ALICE, COMPONENT))
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["bad-type"], 2)

    def test_noFromDropped(self):
        """
        An iq without a sender is dropped and counted: there is nobody to
        answer.
        """
        self.h.receive("<iq type='get' id='1' to='%s'><q xmlns='u'/></iq>" % (COMPONENT,))
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["no-address"], 1)


class ResourceLeavesTests(unittest.TestCase):
    """
    A resource goes unavailable with requests in flight.
    """

    def setUp(self):
        self.h = Harness(timeout=10)
        self.h.online("a", "b")

    def test_getRetriedOnOtherResource(self):
        """
        A C{get} held by a resource that leaves is sent to another with the same
        id and sender, its payload (escapes and prefixes included) unchanged;
        the other's reply reaches the requester, and the retry is counted.
        """
        self.h.request(
            stanzaID="g",
            payload="<query xmlns='urn:test' a='&lt;&apos;&gt;'><x:item xmlns:x='urn:x'>"
            "t&amp;<b/></x:item></query>",
        )
        [first] = self.h.take()
        self.assertEqual(first["to"], TARGET + "/a")
        self.h.clock.advance(4)
        self.h.offline("a")
        [again] = self.h.take()
        self.assertEqual(again["to"], TARGET + "/b")
        self.assertEqual(again["id"], "g")
        self.assertEqual(again["from"], COMPONENT + "/" + ALICE)
        self.assertEqual(
            [c.toXml() for c in again.elements()], [c.toXml() for c in first.elements()]
        )
        self.h.reply("b", stanzaID="g")
        [out] = self.h.take()
        self.assertEqual((out["type"], out["to"]), ("result", ALICE))
        self.assertEqual(self.h.stats.requests["retried"], 1)

    def test_retryKeepsTheDeadline(self):
        """
        A retried request keeps its first deadline: it times out the original
        timeout after it came, not after the retry.
        """
        self.h.request(stanzaID="g")
        self.h.take()
        self.h.clock.advance(4)
        self.h.offline("a")
        self.h.take()
        self.h.clock.advance(6)
        [out] = self.h.take()
        self.assertEqual(errorCondition(out), ("remote-server-timeout", "wait"))

    def test_replyFromFirstResourceAfterRetryDropped(self):
        """
        Once a request has moved to another resource, a reply from the one that
        left is dropped: only the resource now asked answers.
        """
        self.h.request(stanzaID="g")
        self.h.offline("a")
        self.h.take()
        self.h.reply("a", stanzaID="g")
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["reply-from-wrong-resource"], 1)

    def test_retryRewritesOnlyTheRecipient(self):
        """
        A requester whose address looks like an attribute does not confuse
        the retry: only the request's own recipient changes.
        """
        requester = "alice@example.org/ to='%s/a' x" % (TARGET,)
        self.h.request(requester=requester.replace("'", "&apos;"), stanzaID="g")
        [first] = self.h.take()
        self.assertEqual(first["from"], COMPONENT + "/" + requester)
        self.h.offline("a")
        [again] = self.h.take()
        self.assertEqual(again["to"], TARGET + "/b")
        self.assertEqual(again["from"], COMPONENT + "/" + requester)
        self.assertEqual(again["id"], "g")

    def test_getRetriedOnlyOnce(self):
        """
        A C{get} is sent again once only: if its second resource leaves too, the
        requester gets recipient-unavailable (wait).
        """
        self.h.online("c")
        self.h.request(stanzaID="g")
        self.h.take()
        self.h.offline("a")
        [again] = self.h.take()
        self.h.offline(again["to"].split("/")[1])
        [out] = self.h.take()
        self.assertEqual(out["to"], ALICE)
        self.assertEqual(errorCondition(out), ("recipient-unavailable", "wait"))

    def test_setFailsAtOnce(self):
        """
        A C{set} held by a resource that leaves is not repeated (it may have
        been acted on): the requester gets recipient-unavailable (wait) at once.
        """
        self.h.request(stanzaID="s", kind="set")
        self.h.take()
        self.h.offline("a")
        [out] = self.h.take()
        self.assertEqual(out["to"], ALICE)
        self.assertEqual(out["id"], "s")
        self.assertEqual(errorCondition(out), ("recipient-unavailable", "wait"))
        self.assertEqual(len(self.h.pending), 0)

    def test_getWithNoOtherResource(self):
        """
        A C{get} whose resource leaves with no other available is answered
        recipient-unavailable (wait).
        """
        self.h.offline("b")
        self.h.request(stanzaID="g")
        self.h.take()
        self.h.offline("a")
        [out] = self.h.take()
        self.assertEqual(errorCondition(out), ("recipient-unavailable", "wait"))

    def test_laterRequestsGoToRemainingResources(self):
        """
        Once a resource has left, new requests go only to the resources still
        available.
        """
        self.h.offline("a")
        for i in range(5):
            self.h.request(stanzaID=str(i))
        self.assertEqual({out["to"] for out in self.h.take()}, {TARGET + "/b"})

    def test_connectionLostAnswersEverything(self):
        """
        Losing the connection to the server answers every request in flight (get
        and set) recipient-unavailable (wait) and empties the table; no timeout
        fires afterwards.
        """
        self.h.request(stanzaID="1")
        self.h.request(stanzaID="2", kind="set")
        self.h.take()
        self.h.manager.disconnect(Failure(ConnectionLost()))
        out = self.h.take()
        self.assertEqual(sorted(o["id"] for o in out), ["1", "2"])
        for o in out:
            self.assertEqual(errorCondition(o), ("recipient-unavailable", "wait"))
        self.assertEqual(len(self.h.pending), 0)
        self.h.clock.advance(60)
        self.assertEqual(self.h.take(), [])


class TargetRequestTests(unittest.TestCase):
    """
    Requests started by a resource of the target, to
    C{component/<encoded peer>}.
    """

    def setUp(self):
        self.h = Harness(timeout=10)
        self.h.online("a", "b")

    def ask(self, resource="a", peer=ALICE, stanzaID="t1", payload="<q xmlns='urn:x'/>"):
        self.h.receive(
            "<iq type='get' id='%s' from='%s/%s' to='%s/%s'>%s</iq>"
            % (stanzaID, TARGET, resource, COMPONENT, peer, payload)
        )

    def peerAnswers(self, out, kind="result", sender=ALICE):
        self.h.receive(
            "<iq type='%s' id='%s' from='%s' to='%s'><q xmlns='urn:x'><answer/></q></iq>"
            % (kind, out["id"], sender, COMPONENT)
        )

    def test_forwardedFromBareComponent(self):
        """
        A resource's request to C{component/<peer>} goes to the peer from the
        component's bare JID, with an id of the component's own, payload
        unchanged.
        """
        self.ask()
        [out] = self.h.take()
        self.assertEqual((out["type"], out["from"], out["to"]), ("get", COMPONENT, ALICE))
        self.assertNotEqual(out["id"], "t1")
        self.assertEqual(out.firstChildElement().uri, "urn:x")

    def test_replyGoesBackToTheResourceThatAsked(self):
        """
        The peer's reply goes back to the resource that asked, with its own id,
        from the peer's encoded address, payload intact.
        """
        self.ask()
        [out] = self.h.take()
        self.peerAnswers(out)
        [back] = self.h.take()
        self.assertEqual(back["type"], "result")
        self.assertEqual(back["id"], "t1")
        self.assertEqual(back["to"], TARGET + "/a")
        self.assertEqual(back["from"], COMPONENT + "/" + ALICE)
        self.assertEqual(back.firstChildElement().firstChildElement().name, "answer")

    def test_sameIdFromTwoResources(self):
        """
        Two resources may ask with the same id: each request gets a distinct id
        towards the peer, and each reply goes back to the resource that asked.
        """
        self.ask(resource="a", stanzaID="same")
        self.ask(resource="b", stanzaID="same")
        first, second = self.h.take()
        self.assertNotEqual(first["id"], second["id"])
        self.peerAnswers(second)
        [back] = self.h.take()
        self.assertEqual((back["to"], back["id"]), (TARGET + "/b", "same"))

    def test_replyFromAnotherEntityDropped(self):
        """
        A reply from another entity than the peer asked is dropped and counted;
        the request stays in flight, and the peer's own reply still gets back.
        """
        self.ask()
        [out] = self.h.take()
        self.peerAnswers(out, sender="mallory@example.org/m")
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["reply-from-outsider"], 1)
        self.peerAnswers(out)
        self.assertEqual(len(self.h.take()), 1)

    def test_askingAnotherResourceOfTheTarget(self):
        """
        A resource of the target may ask another resource of the target:
        that one's reply comes from the target's bare JID's resource to the
        component's bare JID, and is the answer to the component's own
        request, not a reply to a forwarded one: it goes back to the
        resource that asked.
        """
        self.ask(resource="a", peer=TARGET + "/b")
        [out] = self.h.take()
        self.assertEqual((out["from"], out["to"]), (COMPONENT, TARGET + "/b"))
        self.peerAnswers(out, sender=TARGET + "/b")
        [back] = self.h.take()
        self.assertEqual((back["type"], back["id"]), ("result", "t1"))
        self.assertEqual(back["to"], TARGET + "/a")
        self.assertEqual(back["from"], COMPONENT + "/" + TARGET + "/b")
        self.assertEqual(len(self.h.pending), 0)

    def test_siblingAnswersDespiteTheAccessLists(self):
        """
        The access lists and the rate are for outsiders: with an allow list
        that does not name the target, another resource of the target asked
        through the component still answers the one that asked.
        """
        self.h = Harness(timeout=10, allow=["alice@example.org"], rate=1, burst=1)
        self.h.online("a", "b")
        self.h.take()
        for stanzaID in ("t1", "t2"):
            self.ask(resource="a", peer=TARGET + "/b", stanzaID=stanzaID)
            [out] = self.h.take()
            self.peerAnswers(out, sender=TARGET + "/b")
            [back] = self.h.take()
            self.assertEqual((back["type"], back["id"]), ("result", stanzaID))

    def test_otherResourceOfTheTargetCannotAnswerForThePeer(self):
        """
        Only the resource asked answers: another resource of the target
        replying with the same id is dropped.
        """
        self.ask(resource="a", peer=TARGET + "/b")
        [out] = self.h.take()
        self.peerAnswers(out, sender=TARGET + "/a")
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["unknown-reply"], 1)
        self.peerAnswers(out, sender=TARGET + "/b")
        self.assertEqual(len(self.h.take()), 1)

    def test_peerRepliesOverTheRateDropped(self):
        """
        Replies from outsiders count against C{--rate} like every other
        stanza they send (otherwise a flood of results or errors costs a
        look-up each, and a Redis round trip each with a shared table);
        one over the rate is dropped and counted, never answered with an
        error (RFC 6120 8.2.3), and the request stays in flight.
        """
        h = self.h = Harness(timeout=10, rate=1, burst=1)
        h.online("a")
        self.ask(stanzaID="t1")
        self.ask(stanzaID="t2")
        first, second = h.take()
        self.peerAnswers(first)
        self.assertEqual([back["id"] for back in h.take()], ["t1"])
        self.peerAnswers(second)
        self.assertEqual(h.take(), [])
        self.assertEqual(h.stats.dropped["reply-too-fast"], 1)
        self.assertEqual(h.pending.fromTarget, 1)
        h.clock.advance(1)
        self.peerAnswers(second)
        self.assertEqual([back["id"] for back in h.take()], ["t2"])

    def test_peerRepliesFromDeniedDropped(self):
        """
        A reply from an outsider the access lists refuse is dropped and
        counted like an error message from one (the rate's bucket is not
        even reached for a denied sender, so letting it through would let
        it skip the rate too).
        """
        h = self.h = Harness(timeout=10, deny=["example.org"])
        h.online("a")
        self.ask()
        [out] = h.take()
        self.peerAnswers(out)
        self.assertEqual(h.take(), [])
        self.assertEqual(h.stats.dropped["reply-from-peer-refused"], 1)

    def test_errorFromPeerPassesBack(self):
        """
        An error from the peer goes back to the resource that asked, as an
        error.
        """
        self.ask()
        [out] = self.h.take()
        self.peerAnswers(out, kind="error")
        [back] = self.h.take()
        self.assertEqual((back["type"], back["to"]), ("error", TARGET + "/a"))

    def test_timeout(self):
        """
        A peer that does not answer in time gets the resource that asked
        remote-server-timeout (wait), with its own id and from the peer's
        encoded address.
        """
        self.ask()
        self.h.take()
        self.h.clock.advance(10)
        [back] = self.h.take()
        self.assertEqual(back["to"], TARGET + "/a")
        self.assertEqual(back["id"], "t1")
        self.assertEqual(back["from"], COMPONENT + "/" + ALICE)
        self.assertEqual(errorCondition(back), ("remote-server-timeout", "wait"))

    def test_askingResourceLeaves(self):
        """
        When the resource that asked leaves, its request is forgotten, and the
        peer's later reply is dropped and counted, never sent to the gone
        resource.
        """
        self.ask()
        [out] = self.h.take()
        self.h.offline("a")
        self.assertEqual(self.h.take(), [])
        self.assertEqual(len(self.h.pending), 0)
        self.peerAnswers(out)
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["answer-to-gone-resource"], 1)

    def test_peerAddressNormalised(self):
        """
        A peer's address is normalised (case of the node and domain) before the
        request is sent, so the peer's reply, from its normalised address, still
        matches.
        """
        self.ask(peer="Alice@Example.ORG/abc")
        [out] = self.h.take()
        self.assertEqual(out["to"], ALICE)
        self.peerAnswers(out)
        self.assertEqual(len(self.h.take()), 1)

    def assertRefused(self, condition, kind):
        [out] = self.h.take()
        self.assertEqual(out["to"], TARGET + "/a")
        self.assertEqual(errorCondition(out), (condition, kind))

    def test_toBareComponent(self):
        """
        A resource's request to the component's bare JID names no peer: it is
        answered service-unavailable (cancel).
        """
        self.h.receive(
            "<iq type='get' id='t' from='%s/a' to='%s'><q xmlns='urn:x'/></iq>"
            % (TARGET, COMPONENT)
        )
        self.assertRefused("service-unavailable", "cancel")

    def test_badPeer(self):
        """
        A request to an encoded address that is not a valid JID is answered
        jid-malformed (modify), never sent.
        """
        self.ask(peer="a@b@c")
        self.assertRefused("jid-malformed", "modify")

    def test_peerIsTheComponent(self):
        """
        A request whose peer is the component itself is answered jid-malformed
        (modify): it would loop.
        """
        self.ask(peer=COMPONENT + "/x")
        self.assertRefused("jid-malformed", "modify")

    def test_noChild(self):
        """
        A resource's request without a payload element is answered bad-request
        (modify), never sent to the peer.
        """
        self.ask(payload="")
        self.assertRefused("bad-request", "modify")

    def test_unknownResource(self):
        """
        A request from a resource of the target that is not available is
        answered service-unavailable (cancel): only available resources may ask
        peers.
        """
        h = self.h
        h.receive(
            "<iq type='get' id='t' from='%s/phone' to='%s/%s'><q xmlns='urn:x'/></iq>"
            % (TARGET, COMPONENT, ALICE)
        )
        [out] = h.take()
        self.assertEqual(out["to"], TARGET + "/phone")
        self.assertEqual(errorCondition(out), ("service-unavailable", "cancel"))


class ShutdownTests(unittest.TestCase):
    """
    A graceful stop: no new requests, a grace period, then answers.
    """

    def setUp(self):
        self.h = Harness(timeout=30)
        self.h.online("a")
        self.h.request(stanzaID="1")
        self.h.take()

    def test_newRequestsRefused(self):
        """
        Once shutting down, a new request is answered service-unavailable
        (cancel) rather than forwarded.
        """
        self.h.dispatcher.shutdown(self.h.clock, 5)
        self.h.request(stanzaID="2")
        [out] = self.h.take()
        self.assertEqual(out["id"], "2")
        self.assertEqual(errorCondition(out), ("service-unavailable", "cancel"))

    def test_answeredWithinGrace(self):
        """
        A request answered within the grace period gets its reply, and the
        shutdown completes at once, leaving no timer behind.
        """
        d = self.h.dispatcher.shutdown(self.h.clock, 5)
        self.assertNoResult(d)
        self.h.reply("a", stanzaID="1")
        [out] = self.h.take()
        self.assertEqual(out["type"], "result")
        self.successResultOf(d)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_leftOversAnsweredAfterGrace(self):
        """
        A request still in flight when the grace period ends, and not before, is
        answered recipient-unavailable (wait), and the shutdown completes.
        """
        d = self.h.dispatcher.shutdown(self.h.clock, 5)
        self.h.clock.advance(4.9)
        self.assertEqual(self.h.take(), [])
        self.h.clock.advance(0.1)
        [out] = self.h.take()
        self.assertEqual((out["to"], out["id"]), (ALICE, "1"))
        self.assertEqual(errorCondition(out), ("recipient-unavailable", "wait"))
        self.successResultOf(d)

    def test_nothingInFlight(self):
        """
        With nothing in flight, the shutdown completes at once.
        """
        self.h.reply("a", stanzaID="1")
        self.successResultOf(self.h.dispatcher.shutdown(self.h.clock, 5))


class DropLogTests(unittest.TestCase):
    """
    Logging of dropped stanzas under a flood.
    """

    def test_floodLoggedOncePerInterval(self):
        """
        A flood of drops writes one log line per interval, which says how many
        went unlogged, while every drop is still counted.
        """
        from twisted.logger import capturedLogs

        from clientproxy.ops.stats import Stats
        from clientproxy.ops.throttle import INTERVAL as DROP_LOG_INTERVAL

        now = [0.0]
        stats = Stats(now=lambda: now[0])
        stanza = inStream("<iq type='result' id='1' from='x@y/z'/>")
        with capturedLogs() as events:
            for _ in range(100):
                stats.drop(stanza, "unknown-reply")
            now[0] += DROP_LOG_INTERVAL
            stats.drop(stanza, "unknown-reply")
        self.assertEqual(stats.dropped["unknown-reply"], 101)
        self.assertEqual([e["unlogged"] for e in events], [0, 99])


class DropLogQuotingTests(unittest.TestCase):
    """
    What a peer chose, in the drop log lines.
    """

    def test_peersValuesQuoted(self):
        """
        What a peer chose (the type, the sender) appears in the drop line
        quoted: a carriage return or newline in it cannot start a forged
        line.
        """
        from twisted.logger import capturedLogs, formatEvent

        from clientproxy.ops.stats import Stats

        stats = Stats(now=lambda: 0.0)
        stanza = inStream("<iq type='x&#13;2030-01-01 [clientproxy#info] forged&#10;' id='1'/>")
        with capturedLogs() as events:
            stats.drop(stanza, "bad-type")
        [line] = [formatEvent(e) for e in events]
        self.assertNotIn("\r", line)
        self.assertNotIn("\n", line)


class RefusalShapeTests(unittest.TestCase):
    """
    Which errors are refusals: read from the resource's own C{<error/>}, not
    from anything the requester put in the payload it may echo.
    """

    def test_echoedPayloadIsNoRefusal(self):
        """
        A requester's payload holding C{<error xmlns='urn:svc'>} with a
        refusal condition, echoed by the resource before its own error
        (as Twisted's C{StanzaError.toResponse} does): the resource's
        C{not-authorized} is the answer; nothing is learnt or resent.
        """
        h = Harness(timeout=10)
        h.online("a", "b")
        h.take()
        forged = (
            "<error xmlns='urn:svc'><service-unavailable "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        )
        h.request(kind="set", payload=forged)
        [out] = h.take()
        h.receive(
            "<iq type='error' id='1' from='%s' to='%s'>%s<error type='auth'>"
            "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            % (out["to"], out["from"], forged)
        )
        [answer] = h.take()
        self.assertEqual(answer["to"], ALICE)
        self.assertEqual(errorConditionOf(answer), ("not-authorized", False))
        self.assertEqual(h.stats.requests["refused"], 0)
        self.assertEqual(len(h.dispatcher.selector.refusals), 0)


class HardeningTests(unittest.TestCase):
    """
    Defects found by reading the stanza path, each with the behaviour that
    was missing.
    """

    def setUp(self):
        self.h = Harness(timeout=10, maxPendingFromTarget=1)
        self.h.online("a", "b")

    def askPeer(self, stanzaID="t1", resource="a"):
        self.h.receive(
            "<iq type='get' id='%s' from='%s/%s' to='%s/%s'><q xmlns='urn:x'/></iq>"
            % (stanzaID, TARGET, resource, COMPONENT, ALICE)
        )

    def test_targetRequestsCountedApart(self):
        """
        Requests started by the target do not count in the load of the
        resource that asked (least-pending would steer away from it), nor
        against the outsiders' bounds; they have a bound of their own.
        """
        self.askPeer()
        self.h.take()
        self.assertEqual([r.pending for r in self.h.resources.available], [0, 0])
        self.assertEqual(self.h.pending.fromOutside, 0)
        self.askPeer(stanzaID="t2")
        [refused] = self.h.take()
        self.assertEqual(refused["to"], TARGET + "/a")
        self.assertEqual(errorCondition(refused), ("resource-constraint", "wait"))
        self.h.request()
        [forwarded] = self.h.take()
        self.assertEqual(forwarded["type"], "get")

    def test_shutdownWaitsForTheLastAnswer(self):
        """
        The shutdown's Deferred fires only once the last answer has been
        written (the connection is closed when it fires).
        """
        self.h.request(stanzaID="1")
        self.h.take()
        d = self.h.dispatcher.shutdown(self.h.clock, 5)
        written = []
        d.addCallback(lambda _: written.extend(self.h.take()))
        self.h.reply("a", stanzaID="1")
        [answer] = written
        self.assertEqual((answer["id"], answer["type"]), ("1", "result"))

    def test_retryKeepsEveryAttribute(self):
        """
        A retried get is the request as first forwarded, xml:lang and all,
        with only its recipient changed.
        """
        self.h.receive(
            "<iq type='get' id='g' xml:lang='de' from='%s' to='%s'><q xmlns='urn:x'/></iq>"
            % (ALICE, COMPONENT)
        )
        [first] = self.h.take()
        self.h.offline(first["to"].rpartition("/")[2])
        [again] = self.h.take()
        self.assertNotEqual(again["to"], first["to"])
        del first.attributes["to"], again.attributes["to"]
        self.assertEqual(again.attributes, first.attributes)
        self.assertEqual(again.attributes[("http://www.w3.org/XML/1998/namespace", "lang")], "de")

    def test_answerFromTheAddressAsked(self):
        """
        A request sent to component/x is answered from component/x (RFC
        6120 8.1.2.1), be it the reply or the component's own error.
        """
        self.h.request(stanzaID="1", to=COMPONENT + "/x")
        self.h.request(stanzaID="2", to=COMPONENT + "/y")
        [one, two] = self.h.take()
        self.h.reply(one["to"].rpartition("/")[2], stanzaID="1")
        [reply] = self.h.take()
        self.assertEqual((reply["from"], reply["type"]), (COMPONENT + "/x", "result"))
        self.h.clock.advance(10)
        [timeout] = self.h.take()
        self.assertEqual(timeout["from"], COMPONENT + "/y")
        self.assertEqual(errorCondition(timeout), ("remote-server-timeout", "wait"))

    def test_replyToResourceThatLeftWithoutTelling(self):
        """
        An answer for a resource that is no longer available is dropped and
        counted, never sent to it. (A resource that leaves normally has its
        requests failed first; this guards the one check every answer to
        the target passes, should a resource vanish otherwise.)
        """
        self.askPeer(resource="a")
        [out] = self.h.take()
        resources = self.h.resources
        resource = resources._byJID.pop(TARGET + "/a")
        resources.available.remove(resource)
        self.h.receive(
            "<iq type='result' id='%s' from='%s' to='%s'/>" % (out["id"], ALICE, COMPONENT)
        )
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["answer-to-gone-resource"], 1)

    def test_failureWhileAnsweringGivesInternalServerError(self):
        """
        If routing a reply fails, the failure is logged at once with its
        traceback and counted, and the requester still gets exactly one
        answer: internal-server-error (wait).
        """
        from twisted.logger import capturedLogs

        import clientproxy.handlers.dispatch

        self.h.request(stanzaID="1")
        self.h.take()
        original = clientproxy.handlers.dispatch.stanzaBytes

        def broken(element):
            raise RuntimeError("injected")

        self.patch(clientproxy.handlers.dispatch, "stanzaBytes", broken)
        with capturedLogs() as events:
            self.h.reply("a", stanzaID="1")
        self.patch(clientproxy.handlers.dispatch, "stanzaBytes", original)
        [answer] = self.h.take()
        self.assertEqual((answer["to"], answer["id"]), (ALICE, "1"))
        self.assertEqual(errorCondition(answer), ("internal-server-error", "wait"))
        [failure] = [e["log_failure"] for e in events if "log_failure" in e]
        self.assertIsInstance(failure.value, RuntimeError)
        self.assertEqual(self.h.stats.requests["error:internal-server-error"], 1)
        self.assertEqual(len(self.h.pending), 0)
        self.flushLoggedErrors(RuntimeError)

    def test_handlersForgetTheStream(self):
        """
        Every handler's connectionLost runs XMPPHandler's, which forgets the
        stream.
        """
        self.h.manager.disconnect(Failure(ConnectionLost()))
        for handler in self.h.handlers.all():
            self.assertIsNone(handler.xmlstream, handler)
