"""
Tests for L{clientproxy.routing.policy} and the limits the handlers apply: who may
use the service, how fast, how large, and how many requests in flight.
"""

from twisted.internet import task
from twisted.python.filepath import FilePath
from twisted.trial import unittest
from twisted.words.xish import domish

from clientproxy.handlers import dispatch

from clientproxy.handlers import messages

from clientproxy.routing import policy as policy_module
from clientproxy.routing.policy import Policy, TokenBuckets, normalise, readAccessFile
from tests.helpers import COMPONENT, TARGET, Harness, errorCondition

ALICE = "alice@example.org/abc"


class AccessTests(unittest.TestCase):
    """
    The allow and deny lists: their entries, which list wins, and the access
    file.
    """

    def test_normalise(self):
        """
        An entry is a bare JID or a domain, lower-cased; a full JID, a
        malformed JID or an empty entry is a C{ValueError}.
        """
        self.assertEqual(normalise("Alice@Example.ORG"), "alice@example.org")
        self.assertEqual(normalise("Example.org"), "example.org")
        self.assertRaises(ValueError, normalise, "alice@example.org/r")
        self.assertRaises(ValueError, normalise, "a@b@c")
        self.assertRaises(ValueError, normalise, "")

    def test_denyWins(self):
        """
        A deny entry wins over an allow entry for the sender's domain; with an
        allow list, whoever it does not name is refused.
        """
        policy = Policy(task.Clock(), allow=["example.org"], deny=["mallory@example.org"])
        self.assertTrue(policy.permits("alice@example.org/abc"))
        self.assertFalse(policy.permits("mallory@example.org/m"))
        self.assertFalse(policy.permits("bob@other.org/b"))
        self.assertFalse(policy.permits("other.org"))

    def test_noListsPermitsAll(self):
        """
        With no lists, everyone may use the service.
        """
        self.assertIsNone(Policy(task.Clock()).refusal("anyone@anywhere/x"))

    def test_denyDomain(self):
        """
        A denied domain refuses its users and the domain itself with
        C{forbidden}, and no other domain.
        """
        policy = Policy(task.Clock(), deny=["spam.example"])
        self.assertEqual(policy.refusal("x@spam.example/r")[0], "forbidden")
        self.assertEqual(policy.refusal("spam.example")[0], "forbidden")
        self.assertIsNone(policy.refusal("x@ham.example/r"))

    def test_accessFile(self):
        """
        The access file holds C{allow} and C{deny} lines, with comments and
        blank lines; any other line is a C{ValueError}, so a typo cannot go
        unnoticed.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"# who\nallow example.org\n\ndeny bad@example.org  # no\n")
        self.assertEqual(readAccessFile(path.path), (["example.org"], ["bad@example.org"]))
        path.setContent(b"permit example.org\n")
        self.assertRaises(ValueError, readAccessFile, path.path)


class TokenBucketTests(unittest.TestCase):
    """
    The token buckets that bound the rate per sender.
    """

    def test_rateAndBurst(self):
        """
        A key may take C{burst} tokens at once, then C{rate} a second; each key
        has a bucket of its own.
        """
        clock = task.Clock()
        buckets = TokenBuckets(clock, rate=2, burst=3)
        self.assertEqual([buckets.take("a") for _ in range(4)], [True, True, True, False])
        self.assertTrue(buckets.take("b"))
        clock.advance(0.5)
        self.assertEqual([buckets.take("a") for _ in range(2)], [True, False])

    def test_idleBucketsForgotten(self):
        """
        Buckets that have filled up again are forgotten, so memory follows the
        senders active lately, not every one ever seen.
        """
        clock = task.Clock()
        buckets = TokenBuckets(clock, rate=10, burst=10)
        for i in range(100):
            buckets.take("user%d" % i)
        self.assertEqual(len(buckets), 100)
        clock.advance(2)
        buckets.take("late")
        self.assertEqual(len(buckets), 1)


class LimitTests(unittest.TestCase):
    """
    The limits as the handlers apply them: who is refused, with which error,
    and when a place frees up again.
    """

    def request(self, h, requester=ALICE, stanzaID="1", payload="<q xmlns='urn:x'/>"):
        h.receive(
            "<iq type='get' id='%s' from='%s' to='%s'>%s</iq>"
            % (stanzaID, requester, COMPONENT, payload)
        )

    def test_deniedRequester(self):
        """
        A request from a denied sender is answered C{forbidden} (auth) from the
        component, and not forwarded.
        """
        h = Harness(deny=["example.org"])
        h.online("a")
        h.take()
        self.request(h)
        [out] = h.take()
        self.assertEqual((out["to"], out["from"]), (ALICE, COMPONENT))
        self.assertEqual(errorCondition(out), ("forbidden", "auth"))

    def test_rateLimited(self):
        """
        Requests over a sender's rate are answered C{policy-violation} (wait);
        another sender is not held back by them.
        """
        h = Harness(rate=1, burst=2)
        h.online("a")
        h.take()
        for i in range(3):
            self.request(h, stanzaID=str(i))
        out = h.take()
        self.assertEqual([o["type"] for o in out], ["get", "get", "error"])
        self.assertEqual(errorCondition(out[2]), ("policy-violation", "wait"))
        self.request(h, requester="bob@example.org/b", stanzaID="b")
        self.assertEqual(h.take()[0]["type"], "get")

    def test_tooLarge(self):
        """
        A request over C{--max-stanza-size} is answered C{policy-violation}
        (modify) with its id and is not kept pending; a smaller one from the
        same sender passes.
        """
        h = Harness(maxStanzaSize=300)
        h.online("a")
        h.take()
        self.request(h, payload="<q xmlns='urn:x'>%s</q>" % ("x" * 300,))
        [out] = h.take()
        self.assertEqual((out["to"], out["from"], out["id"]), (ALICE, COMPONENT, "1"))
        self.assertEqual(errorCondition(out), ("policy-violation", "modify"))
        self.assertEqual(len(h.pending), 0)
        self.request(h, stanzaID="2")
        self.assertEqual(h.take()[0]["type"], "get")

    def test_inFlightPerRequester(self):
        """
        An account may have C{maxPendingPerRequester} requests in flight, from
        all its resources together; the next is answered C{resource-constraint}
        (wait), another account is not affected, and an answer frees a place.
        """
        h = Harness(maxPendingPerRequester=2)
        h.online("a")
        h.take()
        for i in range(3):
            self.request(h, stanzaID=str(i))
        out = h.take()
        self.assertEqual([o["type"] for o in out], ["get", "get", "error"])
        self.assertEqual(errorCondition(out[2]), ("resource-constraint", "wait"))
        # Another resource of the same account counts too; another account does not.
        self.request(h, requester="alice@example.org/other", stanzaID="x")
        self.assertEqual(h.take()[0]["type"], "error")
        self.request(h, requester="bob@example.org/b", stanzaID="y")
        self.assertEqual(h.take()[0]["type"], "get")
        # An answer frees a place.
        h.receive("<iq type='result' id='0' from='%s/a' to='%s/%s'/>" % (TARGET, COMPONENT, ALICE))
        h.take()
        self.request(h, stanzaID="3")
        self.assertEqual(h.take()[0]["type"], "get")

    def test_inFlightFreedByTimeout(self):
        """
        A request that timed out frees its place: the requester may send again,
        and the counts hold the new request only.
        """
        h = Harness(timeout=5, maxPendingPerRequester=1)
        h.online("a")
        h.take()
        self.request(h, stanzaID="1")
        h.clock.advance(5)
        h.take()
        self.request(h, stanzaID="2")
        self.assertEqual(h.take()[0]["type"], "get")
        self.assertEqual(h.pending.heldBy("alice@example.org"), 1)
        self.assertEqual(h.pending.fromOutside, 1)

    def test_inFlightInAll(self):
        """
        Over C{maxPending} requests in flight in all, a new request is refused,
        whoever sends it.
        """
        h = Harness(maxPending=2)
        h.online("a")
        h.take()
        for i in range(3):
            self.request(h, requester="u%d@example.org/r" % i, stanzaID=str(i))
        out = h.take()
        self.assertEqual([o["type"] for o in out], ["get", "get", "error"])

    def test_bytesInFlightInAll(self):
        """
        Over C{--max-pending-bytes}, counted on the request as it would be
        kept, a request is refused C{resource-constraint} (wait) from the
        address it was sent to, as over the other bounds; an answer frees
        its bytes, and the count is 0 once nothing is in flight.
        """
        h = Harness(maxPendingBytes=2000, maxPendingPerRequester=0)
        h.online("a")
        h.take()
        payload = "<q xmlns='urn:x'>%s</q>" % ("x" * 700,)
        for i in range(3):
            self.request(h, requester="u%d@example.org/r" % i, stanzaID=str(i), payload=payload)
        out = h.take()
        self.assertEqual([o["type"] for o in out], ["get", "get", "error"])
        self.assertEqual(
            (out[2]["to"], out[2]["from"], out[2]["id"]), ("u2@example.org/r", COMPONENT, "2")
        )
        self.assertEqual(errorCondition(out[2]), ("resource-constraint", "wait"))
        self.assertEqual(len(h.pending), 2)
        self.assertLessEqual(h.pending.bytes, 2000)
        h.receive(
            "<iq type='result' id='0' from='%s/a' to='%s/u0@example.org/r'/>" % (TARGET, COMPONENT)
        )
        h.take()
        self.request(h, requester="u2@example.org/r", stanzaID="2", payload=payload)
        self.assertEqual(h.take()[0]["type"], "get")
        h.clock.advance(30)
        h.take()
        self.assertEqual((len(h.pending), h.pending.bytes), (0, 0))

    def test_bytesInFlightOnRetry(self):
        """
        A request refused by its resource is sent to another; when its new
        address makes it too long for C{--max-pending-bytes}, the requester
        gets C{resource-constraint} (wait) instead, and its bytes are freed.
        """
        h = Harness()
        h.online("a", "b" * 50)
        h.take()
        self.request(h)
        [out] = h.take()
        self.assertEqual(out["to"], TARGET + "/a")
        h.pending.maxPendingBytes = h.pending.bytes
        h.receive(
            "<iq type='error' id='1' from='%s/a' to='%s/%s'><error type='cancel'>"
            "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "</error></iq>" % (TARGET, COMPONENT, ALICE)
        )
        [out] = h.take()
        self.assertEqual((out["type"], out["to"], out["id"]), ("error", ALICE, "1"))
        self.assertEqual(errorCondition(out), ("resource-constraint", "wait"))
        self.assertEqual((len(h.pending), h.pending.bytes), (0, 0))

    def test_messageFromDeniedSender(self):
        """
        A message from a denied sender is answered C{forbidden} (auth), and not
        passed to the target.
        """
        h = Harness(deny=["example.org"])
        h.online("a")
        h.take()
        h.receive("<message from='%s' to='%s'><body>x</body></message>" % (ALICE, COMPONENT))
        [out] = h.take()
        self.assertEqual((out.name, out["type"], out["to"]), ("message", "error", ALICE))
        self.assertEqual(errorCondition(out), ("forbidden", "auth"))

    def test_largeMessageRefused(self):
        """
        A message over the size bound is answered C{policy-violation} (modify)
        from the component, and not passed on.
        """
        h = Harness(maxStanzaSize=200)
        h.online("a")
        h.take()
        h.receive(
            "<message from='%s' to='%s'><body>%s</body></message>" % (ALICE, COMPONENT, "y" * 300)
        )
        [out] = h.take()
        self.assertEqual((out["type"], out["to"], out["from"]), ("error", ALICE, COMPONENT))
        self.assertEqual(errorCondition(out), ("policy-violation", "modify"))

    def test_subscriptionFromDeniedRefused(self):
        """
        A subscription request from a denied sender is answered
        C{unsubscribed}, and the sender is not stored as a subscriber.
        """
        h = Harness(deny=["example.org"])
        h.receive("<presence type='subscribe' from='alice@example.org' to='%s'/>" % (COMPONENT,))
        [out] = h.take()
        self.assertEqual(out["type"], "unsubscribed")
        self.assertEqual(h.store.subscribers(), [])

    def test_subscriptionFloodDropped(self):
        """
        Subscription requests over the rate are dropped and counted, not
        answered: an answer to each stanza of a flood would amplify it.
        """
        h = Harness(rate=1, burst=2)
        for _ in range(5):
            h.receive(
                "<presence type='subscribe' from='alice@example.org' to='%s'/>" % (COMPONENT,)
            )
        self.assertEqual(len(h.take()), 4)
        self.assertEqual(h.stats.dropped["presence-too-fast"], 3)


class SizeBeforeWorkTests(unittest.TestCase):
    """
    A stanza over the size bound is refused by the size it came in as,
    before anything is serialised: a peer's large stanzas cost the reading
    of them, not their writing.
    """

    def setUp(self):
        """
        Count the stanzas serialised by the handlers and the policy.
        """
        self.serialised = []

        def counting(original):
            def serialise(element):
                self.serialised.append(element.name)
                return original(element)

            return serialise

        self.patch(messages, "toXml", counting(messages.toXml))
        self.patch(dispatch, "stanzaBytes", counting(dispatch.stanzaBytes))
        self.patch(policy_module, "stanzaBytes", counting(policy_module.stanzaBytes))

    def test_receivedSize(self):
        """
        A parsed stanza is measured by its received size; an element built
        otherwise, by its serialisation.
        """
        policy = Policy(task.Clock(), maxStanzaSize=100)
        built = domish.Element((None, "message"))
        built.addElement("body", content="x" * 100)
        self.assertTrue(policy.tooLargeStanza(built))
        self.assertEqual(self.serialised, ["message"])
        built.received = 100
        self.assertFalse(policy.tooLargeStanza(built))
        built.received = 101
        self.assertTrue(policy.tooLargeStanza(built))
        self.assertEqual(self.serialised, ["message"])
        self.assertFalse(Policy(task.Clock(), maxStanzaSize=0).tooLargeStanza(built))

    def test_largeMessageNotSerialised(self):
        """
        A 247 KB message (over the default bound of 64 KiB) is refused with
        policy-violation, and neither it nor a copy of it is serialised:
        only the error sent back is.
        """
        h = Harness()
        h.online("a")
        h.take()
        del self.serialised[:]
        body = "<p xmlns='urn:x'>%s</p>" % ("y" * 200,)
        h.receive(
            "<message id='big' from='%s' to='%s'>%s</message>"
            % (ALICE, COMPONENT, body * (247000 // len(body)))
        )
        [out] = h.take()
        self.assertEqual((out["type"], out["to"], out["id"]), ("error", ALICE, "big"))
        self.assertEqual(errorCondition(out), ("policy-violation", "modify"))
        self.assertEqual(self.serialised, [])

    def test_largeRequestNotSerialised(self):
        """
        A request over the bound is refused with policy-violation before it
        is serialised, and nothing of it is kept.
        """
        h = Harness(maxStanzaSize=300)
        h.online("a")
        h.take()
        del self.serialised[:]
        h.receive(
            "<iq type='get' id='1' from='%s' to='%s'><q xmlns='urn:x'>%s</q></iq>"
            % (ALICE, COMPONENT, "x" * 300)
        )
        [out] = h.take()
        self.assertEqual(errorCondition(out), ("policy-violation", "modify"))
        self.assertEqual((self.serialised, len(h.pending)), ([], 0))


class DomainRateTests(unittest.TestCase):
    """
    One domain can mint any number of JIDs: the rate also holds per domain.
    """

    def test_manyJIDsOfOneDomain(self):
        """
        Thirty JIDs of one domain, each within its own rate, get no more than
        the domain's burst through (ten times the per-JID one); another domain
        is not held back.
        """
        policy = Policy(task.Clock(), rate=1, burst=1)
        answers = [policy.refusal("u%d@flood.example/r" % i) for i in range(30)]
        self.assertEqual(answers.count(None), 10)
        self.assertIsNone(policy.refusal("alice@example.org/r"))

    def test_explicitDomainRate(self):
        """
        A domain rate may be set alone, without a per-JID rate: the domain's
        bucket then applies, with its own burst.
        """
        policy = Policy(task.Clock(), domainRate=2, domainBurst=3)
        self.assertIsNone(policy.buckets)
        answers = [policy.refusal("u%d@flood.example" % i) for i in range(5)]
        self.assertEqual(answers.count(None), 3)

    def test_offByDefault(self):
        """
        With no rate set there is no domain bucket either: the check costs
        nothing by default.
        """
        policy = Policy(task.Clock())
        self.assertIsNone(policy.domainBuckets)
