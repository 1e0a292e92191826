"""
Tests for L{clientproxy.handlers.keepalive}: a silent server is pinged, a dead link
is dropped within two intervals, and a live one is left alone. Driven
through the real connection (factory, stream, handshake) on an in-memory
transport and a fake clock.
"""

from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from clientproxy.handlers.keepalive import serverDomain
from clientproxy.assembly import makeProxy
from tests.helpers import stopProxy

HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='proxy.example.org' id='s1'>"
)


class KeepAliveTests(unittest.TestCase):
    """
    The keepalive on a live connection: when it pings, when it drops the
    link, what counts as the pong, and that it stops with the connection.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        # Without the probes for other processes, which are traffic too.
        self.proxy = makeProxy(
            "proxy.example.org",
            "svc@example.org",
            "s",
            reactor=self.reactor,
            keepalive=10,
            probeInstances=False,
        )
        self.proxy.startService()
        self.addCleanup(stopProxy, self.proxy)
        [(_, _, factory, _, _)] = self.reactor.tcpClients
        self.xs = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.xs.makeConnection(self.transport)
        self.xs.dataReceived(HEADER + b"<handshake/>")
        self.transport.clear()

    def test_silenceDrawsAPing(self):
        """
        A full interval of silence from the server, and not less, draws a
        whitespace byte and an XEP-0199 ping to the server's domain, counted in
        the stats.
        """
        self.reactor.advance(9.9)
        self.assertEqual(self.transport.value(), b"")
        self.reactor.advance(0.1)
        sent = self.transport.value()
        self.assertTrue(sent.startswith(b" "))
        self.assertIn(b"<ping xmlns='urn:xmpp:ping'/>", sent)
        self.assertIn(b"to='example.org'", sent)
        self.assertEqual(self.proxy.stats.keepalive["pings"], 1)

    def test_deadLinkDropped(self):
        """
        Nothing at all for two intervals: the connection is aborted (not
        closed politely: a dead peer would never acknowledge).
        """
        self.reactor.advance(10)
        self.reactor.advance(9.9)
        self.assertFalse(getattr(self.transport, "disconnected", False))
        self.reactor.advance(0.1)
        self.assertTrue(self.transport.disconnected)  # set by abortConnection only
        self.assertEqual(self.proxy.stats.keepalive["dead-links"], 1)

    def test_anyAnswerKeepsTheLink(self):
        """
        The pong (claimed by the keepalive, not counted as a stray reply)
        or any other data shows the link alive.
        """
        self.reactor.advance(10)
        pingID = self.transport.value().split(b"id='")[1].split(b"'")[0]
        self.reactor.advance(5)
        self.xs.dataReceived(
            b"<iq type='result' id='%s' from='example.org' to='proxy.example.org'/>" % (pingID,)
        )
        self.assertEqual(self.proxy.stats.dropped["reply-from-outsider"], 0)
        self.reactor.advance(20)
        self.assertFalse(getattr(self.transport, "disconnected", False))
        self.assertEqual(self.proxy.stats.keepalive["pings"], 2)

    def pingID(self):
        """
        Wait for the first ping and return its id.
        """
        self.reactor.advance(10)
        return self.transport.value().split(b"id='")[1].split(b"'")[0]

    def assertNotThePong(self, stanza):
        """
        C{stanza} (bytes) carries the ping's id but is not the pong: the
        keepalive does not claim it (the dispatcher sees it), and the real
        pong, after it, is still taken as the pong.
        """
        pingID = self.pingID()
        self.xs.dataReceived(stanza % (pingID,))
        self.assertEqual(self.proxy.parts.keepalive._pongID, pingID.decode("ascii"))
        dropped = sum(self.proxy.stats.dropped.values())
        self.xs.dataReceived(
            b"<iq type='result' id='%s' from='example.org' to='proxy.example.org'/>" % (pingID,)
        )
        self.assertIsNone(self.proxy.parts.keepalive._pongID)
        self.assertEqual(sum(self.proxy.stats.dropped.values()), dropped)

    def test_pongFromAnotherEntityIgnored(self):
        """
        A peer's reply with the ping's id is not the pong: only the server
        pinged answers it.
        """
        self.assertNotThePong(
            b"<iq type='result' id='%s' from='mallory@example.org/m' to='proxy.example.org'/>"
        )
        self.assertEqual(self.proxy.stats.dropped["reply-from-outsider"], 1)

    def test_requestWithThePingsIDIgnored(self):
        """
        A request with the ping's id is a request, not the pong.
        """
        self.assertNotThePong(
            b"<iq type='get' id='%s' from='example.org' to='proxy.example.org'>"
            b"<q xmlns='urn:x'/></iq>"
        )
        self.assertIn(b"service-unavailable", self.transport.value())

    def test_pongToAnEncodedAddressIgnored(self):
        """
        A reply with the ping's id to an encoded address (a reply to a
        request forwarded for a requester) is not the pong.
        """
        self.assertNotThePong(
            b"<iq type='result' id='%s' from='example.org' "
            b"to='proxy.example.org/alice%%40example.org'/>"
        )

    def test_unansweredPingsDoNotPileUp(self):
        """
        A server that never answers pings but sends other traffic leaves
        at most one route for pongs behind.
        """
        for _ in range(3):
            self.reactor.advance(10)
            self.xs.dataReceived(b" ")
        self.assertEqual(self.proxy.stats.keepalive["pings"], 3)
        keepalive = self.proxy.parts.keepalive
        routes = [handler for _, handler in self.xs._routes["iq"] if handler == keepalive._pong]
        self.assertEqual(len(routes), 1)

    def test_trafficMeansNoPing(self):
        """
        Any traffic from the server, even a single space, within each interval
        keeps it from being pinged: a busy link costs nothing.
        """
        for _ in range(5):
            self.reactor.advance(6)
            self.xs.dataReceived(b" ")
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.proxy.stats.keepalive["pings"], 0)

    def test_timerStopsWithTheConnection(self):
        """
        A lost connection leaves no keepalive check scheduled, so nothing pings
        or aborts a connection that is gone.
        """
        self.transport.loseConnection()
        self.xs.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(
            [c for c in self.reactor.getDelayedCalls() if c.func.__name__ == "_check"], []
        )

    def test_serverDomain(self):
        """
        A component is pinged from its parent domain, or from its own name when
        it has no dot.
        """
        self.assertEqual(serverDomain("proxy.example.org"), "example.org")
        self.assertEqual(serverDomain("localhost"), "localhost")


class KeepAliveOffTests(unittest.TestCase):
    """
    The keepalive turned off with an interval of 0.
    """

    def test_off(self):
        """
        With an interval of 0, a server silent for long is never pinged.
        """
        reactor = MemoryReactorClock()
        proxy = makeProxy(
            "proxy.example.org",
            "svc@example.org",
            "s",
            reactor=reactor,
            keepalive=0,
            probeInstances=False,
        )
        proxy.startService()
        self.addCleanup(stopProxy, proxy)
        [(_, _, factory, _, _)] = reactor.tcpClients
        xs = factory.buildProtocol(None)
        transport = StringTransport()
        xs.makeConnection(transport)
        xs.dataReceived(HEADER + b"<handshake/>")
        transport.clear()
        reactor.advance(1000)
        self.assertNotIn(b"ping", transport.value())
