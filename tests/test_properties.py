"""
Property-based tests (hypothesis): the JAT round trip, and a fuzz run of
the stanza handlers with random, often hostile, stanzas. Whatever comes in,
no exception leaves a handler (one would cost the connection), nothing is
sent to an address it should not go to, and no error answers an error.
"""

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest
from twisted.words.xish.domish import escapeToXml

from clientproxy.jat import MAX_PART_BYTES, Translator
from tests.helpers import COMPONENT, TARGET, Harness

OUTSIDERS = ["alice@example.org/abc", "bob@example.org", "example.org", "carol@example.org/c/d"]
RESOURCES = [TARGET + "/a", TARGET + "/b", TARGET + "/unknown", TARGET]
WEIRD = ["", "@x", "a@b@c", "x" * 1100 + "@example.org/r", "\u2603@example.org/s"]
SENDERS = OUTSIDERS + RESOURCES + WEIRD
RECIPIENTS = [
    COMPONENT,
    COMPONENT + "/alice@example.org/abc",
    COMPONENT + "/bob@example.org",
    COMPONENT + "/a@b@c",
    COMPONENT + "/" + COMPONENT,
    COMPONENT + "/",
    "other.example.org",
]
TYPES = [
    None,
    "",
    "get",
    "set",
    "result",
    "error",
    "chat",
    "normal",
    "headline",
    "groupchat",
    "subscribe",
    "subscribed",
    "unsubscribe",
    "unsubscribed",
    "probe",
    "unavailable",
    "bogus",
]
CHILDREN = [
    "<query xmlns='urn:x'/>",
    "<query xmlns='urn:x'><item a='&lt;&amp;'>t</item></query>",
    "<body>hi</body>",
    "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
    "<priority>5</priority>",
    "<private xmlns='urn:xmpp:carbons:2'/>",
    "text",
]


def attribute(name, value):
    return "" if value is None else " %s='%s'" % (name, escapeToXml(value, True))


stanzas = st.builds(
    lambda kind, type_, sender, recipient, ident, children: (
        "<%s%s%s%s%s>%s</%s>"
        % (
            kind,
            attribute("type", type_),
            attribute("from", sender),
            attribute("to", recipient),
            attribute("id", ident),
            "".join(children),
            kind,
        ),
        kind,
        type_,
        sender,
    ),
    st.sampled_from(["iq", "message", "presence", "foo"]),
    st.sampled_from(TYPES),
    st.one_of(st.none(), st.sampled_from(SENDERS)),
    st.one_of(st.none(), st.sampled_from(RECIPIENTS)),
    st.one_of(st.none(), st.sampled_from(["1", "2", "cp1", ""])),
    st.lists(st.sampled_from(CHILDREN), max_size=3),
)


class TranslatorProperties(unittest.TestCase):
    # No deadline: a loaded CI machine must not turn a slow example into a
    # failure; these tests are about correctness, not speed.
    @settings(deadline=None)
    @given(st.text(min_size=1))
    def test_roundTrip(self, requester):
        jat = Translator(COMPONENT)
        encoded = jat.encode(requester)
        if len(requester.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES:
            self.assertIsNone(encoded)
        else:
            self.assertEqual(jat.decode(jat.address(encoded)), encoded)
            self.assertEqual(jat.requester(encoded), requester)


class HandlerFuzz(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(stanzas, st.floats(0, 20)), max_size=25))
    def test_hostileStanzas(self, inputs):
        h = Harness(timeout=10, queuePerSender=3, queueSize=5)
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
