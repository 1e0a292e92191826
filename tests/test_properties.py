"""
Property-based tests (hypothesis): the JAT round trip, and a fuzz run of
the stanza handlers with random, often hostile, stanzas. Whatever comes in,
no exception leaves a handler (one would cost the connection), nothing is
sent to an address it should not go to, and no error answers an error.
"""

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from clientproxy.xmpp.jat import MAX_PART_BYTES, Translator
from tests.helpers import COMPONENT, TARGET, Harness
from tests.xmlgen import (
    declaredPrefixes,
    elements,
    infoset,
    payloads,
    readStanzas,
    stanzas,
)


class TranslatorProperties(unittest.TestCase):
    """
    The address translation (JAT) over any requester string.
    """

    # No deadline: a loaded CI machine must not turn a slow example into a
    # failure; these tests are about correctness, not speed.
    @settings(deadline=None)
    @given(st.text(min_size=1))
    def test_roundTrip(self, requester):
        """
        Any requester that fits in a JID part encodes to an address that
        decodes back to it, so a reply finds its requester; one too long is
        refused (C{None}) rather than cut.
        """
        jat = Translator(COMPONENT)
        encoded = jat.encode(requester)
        if len(requester.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES:
            self.assertIsNone(encoded)
        else:
            self.assertEqual(jat.decode(jat.address(encoded)), encoded)
            self.assertEqual(jat.requester(encoded), requester)


class HandlerFuzz(unittest.TestCase):
    """
    Random, often hostile, sequences of stanzas through the handlers, with time
    passing between them.
    """

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(stanzas, st.floats(0, 20)), max_size=25))
    def test_hostileStanzas(self, inputs):
        """
        Whatever comes in, no exception leaves a handler, nothing is sent but
        to the target, its resources and those who wrote, no error answers an
        error, and the in-flight counts agree with the pending table.
        """
        self.checkHostile(inputs, Harness(timeout=10, queuePerSender=3, queueSize=5))

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(stanzas, st.floats(0, 20)), max_size=25))
    def test_hostileStanzasMatchingAndAffinity(self, inputs):
        """
        The same, with feature matching (so disco#info queries and their
        answers in the mix), refusal learning and affinity on.
        """
        h = Harness(
            timeout=10, queuePerSender=3, queueSize=5, matchFeatures="auto", affinity="requester"
        )
        self.checkHostile(inputs, h)

    def checkHostile(self, inputs, h):
        h.online("a", "b")
        h.take()
        allowed = {TARGET + "/a", TARGET + "/b", TARGET}
        for (xml, kind, type_, sender), pause in inputs:
            if sender:
                allowed.add(sender)
                allowed.add(sender.partition("/")[0])
            if kind in ("iq", "message") and sender and sender.startswith(TARGET + "/"):
                # The target may name any valid peer in an encoded address.
                allowed.update(["alice@example.org/abc", "bob@example.org"])
            h.receive(xml)
            h.clock.advance(pause)
            for out in h.take():
                to = out.getAttribute("to")
                self.assertIsNotNone(to, out.toXml())
                self.assertIn(to, allowed, out.toXml())
                self.assertFalse(to.startswith(COMPONENT), out.toXml())
                if type_ == "error" and out.getAttribute("type") == "error":
                    self.assertNotEqual(to, sender, "an error answered an error")
        entries = list(h.pending._entries.values())
        outside = [e for e in entries if not e.fromTarget]
        self.assertEqual(
            sum(r.pending for r in h.resources.available),
            sum(1 for e in outside if e.resource in h.resources.available),
        )
        self.assertEqual(h.pending.fromOutside, len(outside))
        self.assertEqual(h.pending.fromTarget, len(entries) - len(outside))
        self.assertTrue(all(count > 0 for count in h.pending._held.values()))
        self.assertEqual(sum(h.pending._held.values()), len(outside))


NS_CLIENT = "jabber:client"
ALICE = "alice@example.org/abc"


class PayloadsThroughHandlers(unittest.TestCase):
    """
    A differential fuzz run through the real handlers: adversarial but
    well-formed payloads (see L{tests.xmlgen}) go in as a request, a reply,
    a retried request, an incoming message (fanned out, or queued and
    replayed) and an outgoing message (routed and mirrored). Whatever the
    component writes must read with a strict namespace-aware parser and
    carry the same payload as went in, prefix declarations included.
    """

    def harness(self):
        h = Harness(maxStanzaSize=0)
        h.manager.takeBytes()
        return h

    def written(self, h):
        return readStanzas(h.manager.takeBytes())

    def assertCarries(self, stanza, payload, index=0, rename=None):
        """
        The C{index}-th child element of C{stanza} (as read) is the payload
        that went in.
        """
        [expected] = readStanzas(("<x>%s</x>" % (payload,)).encode("utf-8"))
        expected = elements(expected)[0]
        actual = elements(stanza)[index]
        got, wanted = infoset(actual, rename), infoset(expected, rename)
        # Compared without assertEqual's diff, which takes minutes on deep trees.
        if got != wanted:
            first = next(i for i, (g, w) in enumerate(zip(got + [None], wanted + [None])) if g != w)
            self.fail(
                "payload changed at event %d: %r != %r"
                % (first, got[first : first + 3], wanted[first : first + 3])
            )
        for inside, outside in zip(declaredPrefixes(expected), declaredPrefixes(actual)):
            self.assertLessEqual(inside, outside)

    @settings(max_examples=60, deadline=None)
    @given(payloads)
    def test_request(self, payload):
        """
        A request's payload reaches the resource as it went in, prefix
        declarations included.
        """
        h = self.harness()
        h.online("a")
        h.manager.takeBytes()
        h.request(payload=payload)
        [out] = self.written(h)
        self.assertEqual(out[1]["to"], TARGET + "/a")
        self.assertCarries(out, payload)

    @settings(max_examples=60, deadline=None)
    @given(payloads)
    def test_reply(self, payload):
        """
        A reply's payload reaches the requester as the resource sent it.
        """
        h = self.harness()
        h.online("a")
        h.request()
        h.manager.takeBytes()
        h.reply("a", payload=payload)
        [out] = self.written(h)
        self.assertEqual((out[1]["to"], out[1]["type"]), (ALICE, "result"))
        self.assertCarries(out, payload)

    @settings(max_examples=40, deadline=None)
    @given(payloads)
    def test_retry(self, payload):
        """
        A request sent again to another resource, once the first left, carries
        its payload unchanged.
        """
        h = self.harness()
        h.online("a", "b")
        h.request(payload=payload)
        h.manager.takeBytes()
        h.offline("a")
        [out] = [s for s in self.written(h) if s[0].endswith("iq")]
        self.assertEqual(out[1]["to"], TARGET + "/b")
        self.assertCarries(out, payload)

    @settings(max_examples=40, deadline=None)
    @given(payloads)
    def test_incomingMessage(self, payload):
        """
        A peer's message payload reaches each resource unchanged, in every copy
        fanned out.
        """
        h = self.harness()
        h.online("a", "b")
        h.manager.takeBytes()
        h.receive(
            "<message type='chat' from='%s' to='%s'>%s</message>" % (ALICE, COMPONENT, payload)
        )
        out = self.written(h)
        self.assertEqual(len(out), 2)
        for copy in out:
            self.assertCarries(copy, payload)

    @settings(max_examples=40, deadline=None)
    @given(payloads)
    def test_queuedMessage(self, payload):
        """
        A message payload queued for an offline target (written to the store
        and parsed back) is delivered unchanged.
        """
        h = self.harness()
        h.receive(
            "<message type='chat' from='%s' to='%s'>%s</message>" % (ALICE, COMPONENT, payload)
        )
        self.assertEqual(h.store.queueLength(), 1)
        h.online("a")
        [out] = [s for s in self.written(h) if s[0].endswith("message")]
        self.assertCarries(out, payload)

    @settings(max_examples=40, deadline=None)
    @given(payloads)
    def test_outgoingMessage(self, payload):
        """
        A resource's message payload reaches the peer unchanged, and so does
        the original inside the mirror's <forwarded/>, but for the stream's
        namespace, now jabber:client.
        """
        h = self.harness()
        h.online("a", "b")
        h.manager.takeBytes()
        h.receive(
            "<message type='chat' from='%s/a' to='%s/%s'>%s</message>"
            % (TARGET, COMPONENT, ALICE, payload)
        )
        routed, mirror = self.written(h)
        self.assertEqual(routed[1]["to"], ALICE)
        self.assertCarries(routed, payload)
        self.assertEqual(mirror[1]["to"], TARGET + "/b")
        forwarded = [e for e in elements(mirror) if e[0] == "urn:xmpp:forward:0 forwarded"][0]
        original = [e for e in elements(forwarded) if e[0].endswith(" message")][0]
        self.assertCarries(original, payload, rename={"jabber:component:accept": NS_CLIENT})
