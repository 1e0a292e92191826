"""
Tests for L{clientproxy.xmpp.stream.ProxyXmlStream}: routes by stanza name,
the component's address as the default C{from}, oversized stanzas counted.
"""

from twisted.internet import task
from twisted.trial import unittest
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from clientproxy.xmpp import parser
from clientproxy.ops.stats import Stats
from clientproxy.xmpp.stream import ProxyXmlStream
from clientproxy.xmpp.writer import STREAM_ROOT


class WritesCounted:
    """
    A transport that keeps each write apart.
    """

    disconnecting = False

    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(data)

    def loseConnection(self):
        self.disconnecting = True


class StreamTests(unittest.TestCase):
    def setUp(self):
        self.stats = Stats()
        self.xs = ProxyXmlStream(xmlstream.Authenticator(), task.Clock(), self.stats)
        self.transport = WritesCounted()
        self.xs.makeConnection(self.transport)
        self.xs.dataReceived(STREAM_ROOT[:-1].encode("utf-8") + b" id='s'>")
        del self.transport.writes[:]

    def test_routesByPriority(self):
        """
        A stanza goes to the routes for its name, highest priority first;
        a handler sees whether an earlier one took it.
        """
        seen = []

        def first(stanza):
            seen.append(("first", stanza.handled))
            stanza.handled = True

        self.xs.addRoute("iq", lambda stanza: seen.append(("late", stanza.handled)), priority=-1)
        self.xs.addRoute("iq", first, priority=1)
        self.xs.addRoute("message", lambda stanza: seen.append(("message", stanza.handled)))
        self.xs.dataReceived(b"<iq type='get' id='1'/>")
        self.assertEqual(seen, [("first", False), ("late", True)])
        self.xs.removeRoute("iq", first)
        del seen[:]
        self.xs.dataReceived(b"<iq type='get' id='2'/>")
        self.assertEqual(seen, [("late", False)])

    def test_untakenGoesToObservers(self):
        """
        A stanza no route takes, and any other element, still reaches the
        XPath observers (Twisted's stream machinery relies on them).
        """
        observed = []
        self.xs.addObserver("/iq", observed.append)
        self.xs.addObserver("/handshake", observed.append)
        self.xs.addRoute("iq", lambda stanza: None)
        self.xs.dataReceived(b"<iq type='get' id='1'/><handshake/>")
        self.assertEqual([element.name for element in observed], ["iq", "handshake"])
        self.xs.addRoute("iq", lambda stanza: setattr(stanza, "handled", True))
        del observed[:]
        self.xs.dataReceived(b"<iq type='get' id='2'/>")
        self.assertEqual(observed, [])

    def test_defaultFrom(self):
        """
        Once set (when the stream is authenticated), an element sent without
        a C{from} gets the component's address; one with a C{from} keeps it.
        """
        self.xs.defaultFrom = "proxy.example.org"
        self.xs.send(domish.Element((None, "presence")))
        element = domish.Element((None, "presence"))
        element["from"] = "proxy.example.org/x"
        self.xs.send(element)
        self.assertEqual(
            self.transport.writes,
            [b"<presence from='proxy.example.org'/>", b"<presence from='proxy.example.org/x'/>"],
        )

    def test_oversizedStanzaCounted(self):
        """
        A stanza the parser drops (over its bounds) is counted as dropped,
        reaches no handler, and the stream goes on.
        """
        self.patch(parser, "MAX_STANZA_ELEMENTS", 3)
        seen = []
        self.xs.addRoute("iq", seen.append)
        self.xs.dataReceived(b"<iq id='1'><a/><a/><a/><a/></iq><iq id='2'/>")
        self.assertEqual([stanza["id"] for stanza in seen], ["2"])
        self.assertEqual(self.stats.dropped["stanza-too-many-elements"], 1)
