"""
Tests for L{clientproxy.xmpp.connection}: reconnect back-off, refused
handshakes, and what the handlers see of the connection's life.
"""

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.trial import unittest
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from clientproxy.xmpp.connection import CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT, MAX_RECONNECT_DELAY
from clientproxy.assembly import makeProxy
from tests.helpers import stopProxy

HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='proxy.example.org' id='s1'>"
)
NOT_AUTHORIZED = (
    b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
)


class ConnectionTests(unittest.TestCase):
    """
    The component's connection to the server, on an in-memory transport and
    a fake clock: reconnect back-off, handshake refused or accepted, and
    reconnects counted.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.proxy = makeProxy(
            "proxy.example.org",
            "svc@example.org",
            "hunter2",
            host="127.0.0.1",
            port=5347,
            reactor=self.reactor,
        )
        self.proxy.startService()
        self.addCleanup(stopProxy, self.proxy)
        [(host, port, factory, _, _)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 5347))
        self.factory = factory

    def connect(self):
        """
        Build the stream on a string transport, as a TCP connection would.
        """
        xs = self.factory.buildProtocol(None)
        transport = StringTransport()
        xs.makeConnection(transport)
        return xs, transport

    def test_backoffCapped(self):
        """
        Failed connection attempts keep being retried, and the wait between them
        never grows past L{MAX_RECONNECT_DELAY}: the component is back within
        seconds of the server.
        """
        connector = self.proxy._connection
        attempts = []
        connector.connect = lambda: attempts.append(self.reactor.seconds())
        for _ in range(20):
            self.factory.clientConnectionFailed(connector, Failure(ConnectionLost()))
            # the delay is capped, then jittered by about 12%: 2x is 8 sigma away
            self.reactor.advance(MAX_RECONNECT_DELAY * 2)
        self.assertEqual(len(attempts), 20)
        self.assertLessEqual(self.factory.delay, MAX_RECONNECT_DELAY)

    def test_tcpConnectionAloneDoesNotResetBackoff(self):
        """
        A TCP connection does not reset the back-off: only a handshake that
        succeeds does, so a server that accepts connections but refuses the
        component is not hammered.
        """
        self.factory.delay = 4.0
        self.connect()
        self.assertEqual(self.factory.delay, 4.0)

    def test_refusedHandshakeLoggedAndRetried(self):
        """
        A handshake refused with not-authorized closes the connection and logs
        one error naming the condition and what to check, without the secret;
        the service keeps running, to retry.
        """
        xs, transport = self.connect()
        with capturedLogs() as events:
            xs.dataReceived(HEADER)
            xs.dataReceived(NOT_AUTHORIZED)
        self.assertTrue(transport.disconnecting)
        [event] = [e for e in events if e.get("log_level").name == "error"]
        self.assertEqual(event["condition"], "not-authorized")
        self.assertIn("secret", event["hint"])
        self.assertIn("component of that name", event["hint"])
        self.assertEqual(self.proxy.stats.connectionFailures["handshake"], 1)
        self.assertTrue(self.proxy.running)
        for e in events:
            self.assertNotIn("hunter2", repr(e))

    def test_silentServerTimesOut(self):
        """
        A server that accepts the connection but never completes the
        handshake (hung, or not a component listener) is dropped after
        L{HANDSHAKE_TIMEOUT} seconds, counted and said in one error line,
        and tried again; a handshake done in time is not.
        """
        xs, transport = self.connect()
        with capturedLogs() as events:
            self.reactor.advance(HANDSHAKE_TIMEOUT)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.proxy.stats.connectionFailures["silent"], 1)
        [event] = [e for e in events if e.get("log_level").name == "error"]
        self.assertEqual(event["kind"], "silent")
        xs, transport = self.connect()
        xs.dataReceived(HEADER)
        xs.dataReceived(b"<handshake/>")
        self.reactor.advance(HANDSHAKE_TIMEOUT)
        self.assertFalse(transport.disconnecting)

    def test_handshakeSuccessStartsHandlers(self):
        """
        The handshake sends a hash, never the secret; once it succeeds the
        back-off is reset and the handlers start (the component subscribes to
        the target's presence).
        """
        xs, transport = self.connect()
        self.factory.delay = 4.0
        xs.dataReceived(HEADER)
        self.assertIn(b"<handshake>", transport.value())
        self.assertNotIn(b"hunter2", transport.value())
        transport.clear()
        xs.dataReceived(b"<handshake/>")
        self.assertEqual(self.factory.delay, self.factory.initialDelay)
        self.assertIn(b"type='subscribe'", transport.value())
        self.assertIn(b"to='svc@example.org'", transport.value())

    def test_stopWaitsForTheConnectionToClose(self):
        """
        A stop fires (and twistd exits) only once the connection is closed,
        so that the last answers written are sent, not lost with the
        process; a connection that does not close is not waited for past
        L{CLOSE_TIMEOUT}.
        """
        xs, transport = self.connect()
        xs.dataReceived(HEADER + b"<handshake/>")
        stopped = []
        self.proxy.stopService().addCallback(stopped.append)
        self.reactor.advance(0)
        self.assertEqual(stopped, [])
        xs.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(stopped, [None])
        self.proxy.startService()
        xs, transport = self.connect()
        xs.dataReceived(HEADER + b"<handshake/>")
        self.proxy.stopService().addCallback(stopped.append)
        self.reactor.advance(CLOSE_TIMEOUT)
        self.assertEqual(stopped, [None, None])

    def test_reconnectCounted(self):
        """
        Only a handshake after the first counts as a reconnect: two connections,
        one reconnect.
        """
        for _ in range(2):
            xs, transport = self.connect()
            xs.dataReceived(HEADER + b"<handshake/>")
            xs.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.proxy.stats.reconnects, 1)

    def test_conflictMeansStandingBy(self):
        """
        A handshake refused with conflict (another process holds the
        component) is said once, as standing by, however often it happens;
        the connection that finally succeeds says it took over, and counts
        the subscribers again from the store another process may have
        changed.
        """
        CONFLICT = (
            b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        )
        with capturedLogs() as events:
            for _ in range(3):
                xs, transport = self.connect()
                xs.dataReceived(HEADER + CONFLICT)
                self.assertTrue(transport.disconnecting)
        self.assertEqual([e for e in events if e["log_level"].name == "error"], [])
        [standing] = [e for e in events if "standing by" in e["log_format"]]
        self.assertEqual(standing["jid"], "proxy.example.org")
        # Meanwhile the process that held the component added a subscriber.
        self.proxy.store._db.execute("INSERT INTO subscribers VALUES ('alice@example.org')")
        with capturedLogs() as events:
            xs, transport = self.connect()
            xs.dataReceived(HEADER + b"<handshake/>")
        self.assertEqual(len([e for e in events if "Took over" in e["log_format"]]), 1)
        self.assertEqual(self.proxy.store.subscriberCount(), 1)
