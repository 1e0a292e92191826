"""
Tests for L{clientproxy.xmpp.jat}.
"""

from twisted.trial import unittest

from clientproxy.xmpp.jat import Translator


class TranslatorTests(unittest.TestCase):
    """
    Encoding requesters as resources of the component and reading them back.
    """

    def setUp(self):
        self.jat = Translator("proxy.example.org")

    def test_anchorCompatible(self):
        """
        The encoded resource is the requester's full JID, as
        mod_client_proxy's.
        """
        encoded = self.jat.encode("alice@example.org/abc")
        self.assertEqual(self.jat.address(encoded), "proxy.example.org/alice@example.org/abc")

    def test_roundTrip(self):
        """
        Any requester (full, bare, a domain, a resource holding C{/}, non-ASCII)
        comes back as it was from its encoded address, so every reply reaches
        the one who asked.
        """
        for requester in ["alice@example.org/abc", "example.org", "a@b/c/d", "\u00e9@x/\u2603"]:
            address = self.jat.address(self.jat.encode(requester))
            self.assertEqual(self.jat.requester(self.jat.decode(address)), requester)

    def test_decodeOtherAddresses(self):
        """
        The bare component, an empty resource, another domain and a domain that
        merely starts with the component's name are not encoded addresses:
        nothing is decoded from them.
        """
        self.assertIsNone(self.jat.decode("proxy.example.org"))
        self.assertIsNone(self.jat.decode("proxy.example.org/"))
        self.assertIsNone(self.jat.decode("other.example.org/alice@example.org"))
        self.assertIsNone(self.jat.decode("proxy.example.org.evil/x"))

    def test_tooLong(self):
        """
        A requester longer than a resource may be (1023 bytes, counted in UTF-8,
        not in characters) is not encoded, so the request is refused instead of
        sent on to be rejected.
        """
        self.assertIsNotNone(self.jat.encode("a" * 1023))
        self.assertIsNone(self.jat.encode("a" * 1024))
        self.assertIsNotNone(self.jat.encode("\u00e9" * 511))
        self.assertIsNone(self.jat.encode("\u00e9" * 512))
