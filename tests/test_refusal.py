"""
Tests for L{clientproxy.handlers.refusal}, the one place a refused stanza
becomes an answer or a counted drop, and for the one sort and the one
admission it serves (L{clientproxy.xmpp.stanzas.sort},
L{clientproxy.routing.policy.Policy.admit}). Each runs one small handler
alone over the stream stub (L{tests.helpers.alone}).
"""

from collections import Counter

from twisted.internet import task
from twisted.trial import unittest
from wokkel.subprotocols import XMPPHandler

from clientproxy.handlers.refusal import refuse
from clientproxy.ops.stats import Stats
from clientproxy.routing.errors import DENIED, DROPS, TOO_FAST, TOO_LARGE, dropReason
from clientproxy.routing.policy import Policy
from clientproxy.xmpp.stanzas import FROM_OUTSIDE, FROM_TARGET, NO_ADDRESS, sort
from clientproxy.xmpp.writer import parseStanza
from tests.helpers import COMPONENT, TARGET, alone, errorCondition

OUTSIDER = "alice@example.org/abc"


class Refusing(XMPPHandler):
    """
    A handler that refuses whatever it is given, with C{refusal}.
    """

    def __init__(self):
        XMPPHandler.__init__(self)
        self.stats = Stats()
        self.counters = Counter()

    def refuse(self, xml, refusal):
        stanza = parse(xml)
        refuse(self, stanza, refusal, self.counters, COMPONENT)


def parse(xml):
    """
    One stanza, in the component's stream's namespace context.
    """
    return parseStanza(xml)


class RefuseTests(unittest.TestCase):
    """
    How each kind of stanza is answered when refused.
    """

    def setUp(self):
        self.handler = Refusing()
        self.manager = alone(self.handler)

    def test_requestGetsAnError(self):
        """
        An IQ request is answered with the refusal's condition, type and
        text, from the address it was sent to, with its id, and counted.
        """
        self.handler.refuse(
            "<iq type='get' id='q1' from='%s' to='%s/x'><query xmlns='urn:x'/></iq>"
            % (OUTSIDER, COMPONENT),
            TOO_FAST,
        )
        [answer] = self.manager.take()
        self.assertEqual(
            (answer["type"], answer["id"], answer["from"], answer["to"], errorCondition(answer)),
            ("error", "q1", COMPONENT + "/x", OUTSIDER, ("policy-violation", "wait")),
        )
        self.assertEqual(self.handler.counters["error:policy-violation"], 1)

    def test_messageGetsAnErrorMessage(self):
        """
        A message is answered with an error message.
        """
        self.handler.refuse(
            "<message from='%s' to='%s'><body>hi</body></message>" % (OUTSIDER, COMPONENT), DENIED
        )
        [answer] = self.manager.take()
        self.assertEqual(
            (answer.name, answer["type"], errorCondition(answer)),
            ("message", "error", ("forbidden", "auth")),
        )

    def test_resultMessageAnswered(self):
        """
        A message of type C{result} (no type of RFC 6121's: a normal
        message) is answered like any message, unlike an IQ result.
        """
        self.handler.refuse(
            "<message type='result' from='%s' to='%s'/>" % (OUTSIDER, COMPONENT), DENIED
        )
        [answer] = self.manager.take()
        self.assertEqual((answer.name, answer["type"]), ("message", "error"))

    def test_errorsAndResultsNeverAnswered(self):
        """
        An error or a result is dropped and counted under its name, never
        answered (RFC 6120 8.3.1).
        """
        self.handler.refuse(
            "<iq type='result' id='r' from='%s' to='%s'/>" % (OUTSIDER, COMPONENT), TOO_FAST
        )
        self.handler.refuse(
            "<message type='error' from='%s' to='%s'/>" % (OUTSIDER, COMPONENT), TOO_LARGE
        )
        self.assertEqual(self.manager.take(), [])
        self.assertEqual(
            dict(self.handler.stats.dropped),
            {"reply-too-fast": 1, "error-from-peer-too-large": 1},
        )

    def test_deniedSubscriptionToldUnsubscribed(self):
        """
        A denied subscription request is told C{unsubscribed}, from the
        component's bare JID; one over the rate is dropped (a flood gets no
        answers).
        """
        self.handler.refuse(
            "<presence type='subscribe' from='%s' to='room@%s'/>" % (OUTSIDER, COMPONENT), DENIED
        )
        self.handler.refuse(
            "<presence type='subscribe' from='%s' to='%s'/>" % (OUTSIDER, COMPONENT), TOO_FAST
        )
        [answer] = self.manager.take()
        self.assertEqual(
            (answer["type"], answer["from"], answer["to"]),
            ("unsubscribed", COMPONENT, "alice@example.org"),
        )
        self.assertEqual(self.handler.counters["subscriptions-refused"], 1)
        self.assertEqual(self.handler.stats.dropped["presence-too-fast"], 1)

    def test_everyDropNamed(self):
        """
        Every stanza name has a name for any refusal it gets no error for.
        """
        for name in DROPS:
            for refusal in (TOO_FAST, TOO_LARGE, DENIED):
                self.assertTrue(dropReason(name, refusal))


class SortTests(unittest.TestCase):
    """
    L{sort}: the one sort of every stanza kind.
    """

    def test_sides(self):
        """
        A stanza is sorted by where it comes from, and taken: a second
        sort (another handler) finds it handled.
        """
        cases = [
            ("<iq to='%s'/>" % (COMPONENT,), NO_ADDRESS),
            ("<message from='%s'/>" % (OUTSIDER,), NO_ADDRESS),
            ("<presence from='%s/a' to='%s'/>" % (TARGET, COMPONENT), FROM_TARGET),
            ("<iq from='%s' to='%s' type='get'/>" % (TARGET, COMPONENT), FROM_TARGET),
            ("<iq from='%s' to='%s' type='get'/>" % (OUTSIDER, COMPONENT), FROM_OUTSIDE),
            ("<iq from='%sx/a' to='%s'/>" % (TARGET, COMPONENT), FROM_OUTSIDE),
        ]
        for xml, side in cases:
            stanza = parse(xml)
            self.assertEqual(sort(stanza, TARGET)[0], side, xml)
            self.assertIsNone(sort(stanza, TARGET))


class AdmitTests(unittest.TestCase):
    """
    L{Policy.admit}: the one admission of a stanza from outside.
    """

    def test_order(self):
        """
        The sender is judged first (lists, rate), then the stanza's size as
        it came in; a stanza that passes both is admitted.
        """
        policy = Policy(task.Clock(), deny=["denied.example"], maxStanzaSize=100)
        small = parse("<message from='%s' to='%s'/>" % (OUTSIDER, COMPONENT))
        large = parse("<message from='%s' to='%s'>%s</message>" % (OUTSIDER, COMPONENT, "x" * 200))
        self.assertIsNone(policy.admit(OUTSIDER, small))
        self.assertIs(policy.admit(OUTSIDER, large), TOO_LARGE)
        self.assertIs(policy.admit("eve@denied.example/x", large), DENIED)
