"""
Tests for L{clientproxy.xmpp.stanzas.StanzaIDs}: the ids of the component's own
requests cannot be guessed by whoever has not seen one, and change with
every connection.
"""

from twisted.trial import unittest

from clientproxy.xmpp.stanzas import StanzaIDs
from tests.helpers import COMPONENT, TARGET, Harness


class StanzaIDsTests(unittest.TestCase):
    def test_notACounterAlone(self):
        """
        The first ids of a process are not C{kind-1, kind-2} (what a
        restart used to start again at), and two processes' differ.
        """
        first, second = StanzaIDs(), StanzaIDs()
        ids = [first("caps"), first("caps")]
        self.assertNotIn("caps-1", ids)
        self.assertNotIn("caps-2", ids)
        self.assertNotEqual(first("caps"), second("caps"))
        self.assertTrue(ids[0].endswith(".caps-1"))
        self.assertGreaterEqual(len(first.prefix), 17)

    def test_renewedWithEachConnection(self):
        """
        L{StanzaIDs.renew} draws a new random prefix; ids stay distinct
        across renewals.
        """
        ids = StanzaIDs()
        seen = set()
        prefixes = set()
        for _ in range(50):
            ids.renew()
            prefixes.add(ids.prefix)
            seen.update(ids("cp") for _ in range(3))
        self.assertEqual(len(prefixes), 50)
        self.assertEqual(len(seen), 150)

    def test_ownedPrefixKept(self):
        """
        A prefix its owner sets (the cluster's instance id, which routes
        replies between processes) is left alone by L{StanzaIDs.renew}.
        """
        ids = StanzaIDs(prefix="")
        ids.prefix = "0123456789ab."
        ids.renew()
        self.assertEqual(ids("caps"), "0123456789ab.caps-1")


class SharedIDsTests(unittest.TestCase):
    def test_oneSourceNewPerConnection(self):
        """
        The handlers draw their ids from one source, whose prefix is new on
        every connection: a disco#info query after a reconnection does
        not reuse the last connection's prefix.
        """
        h = Harness(matchFeatures="auto")
        self.assertIs(h.handlers.capabilities._ids, h.dispatcher._ids)
        self.assertIs(h.handlers.keepalive._ids, h.dispatcher._ids)
        h.receive("<presence from='%s/a' to='%s'/>" % (TARGET, COMPONENT))
        [first] = h.take()
        h.manager.disconnect()
        h.manager.connect()
        h.receive("<presence from='%s/b' to='%s'/>" % (TARGET, COMPONENT))
        [second] = [s for s in h.take() if s.name == "iq"]
        firstPrefix = first["id"].partition(".")[0]
        secondPrefix = second["id"].partition(".")[0]
        self.assertEqual(len(firstPrefix), 16)
        self.assertNotEqual(firstPrefix, secondPrefix)
