# -*- test-case-name: tests.test_keepalive -*-
"""
Noticing a dead link to the server.

XEP-0114 has no keepalive of its own, and TCP says nothing while nothing is
sent: a server that vanishes without closing the connection (its host went
down, a firewall forgot the connection) leaves the component "connected"
and deaf, with every request to it lost. So, once nothing has come from the
server for C{interval} seconds, the component sends a whitespace keepalive
and a XEP-0199 ping to the server's domain; any byte that comes back (the
pong, an error for it, any other stanza) shows the link alive. If nothing
at all has come within another C{interval} seconds, the connection is
dropped, so the reconnect logic makes a new one; the requests in flight
get the answer documented for a lost connection.
"""

from twisted.logger import Logger
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from clientproxy.xmpp.stanzas import StanzaIDs, isAnswer

NS_PING = "urn:xmpp:ping"

#: Seconds of silence from the server before it is pinged (C{--keepalive}).
DEFAULT_INTERVAL = 30.0


def serverDomain(component):
    """
    The domain a component is pinged from: its parent domain
    (C{proxy.example.org} -> C{example.org}), or the component itself when
    it has no dot. Any answer will do, an error included: what counts is
    that bytes come back on the link.
    """
    parent = component.partition(".")[2]
    return parent or component


class KeepAlive(XMPPHandler):
    """
    @ivar interval: seconds of silence before a ping, and seconds the ping
        gets before the connection is dropped; 0 turns this off.
    """

    log = Logger()

    def __init__(self, component, stats, clock, interval=DEFAULT_INTERVAL, ids=None):
        XMPPHandler.__init__(self)
        self.component = component
        self.stats = stats
        self.clock = clock
        self.interval = interval
        self._timer = None
        self._pingedAt = None
        self._pongID = None
        self._ids = StanzaIDs() if ids is None else ids

    def connectionInitialized(self):
        if self.interval:
            self._pingedAt = None
            self._pongID = None
            self._schedule(self.interval)

    def setInterval(self, interval):
        """
        Change the interval (a reload); 0 turns the keepalive off.
        """
        if interval == self.interval:
            return
        self.interval = interval
        self._stop()
        if interval and self.xmlstream is not None:
            self._pingedAt = None
            self._schedule(interval)

    def connectionLost(self, reason):
        XMPPHandler.connectionLost(self, reason)
        self._stop()

    def _stop(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self, delay):
        self._timer = self.clock.callLater(max(delay, 0.0), self._check)

    def _check(self):
        self._timer = None
        xs = self.xmlstream
        if xs is None:
            return
        now = self.clock.seconds()
        silent = now - xs.lastReceived
        if self._pingedAt is not None and xs.lastReceived < self._pingedAt:
            if now - self._pingedAt >= self.interval:
                self._dead(xs, silent)
                return
            self._schedule(self._pingedAt + self.interval - now)
        elif silent >= self.interval:
            self._ping(xs)
            self._pingedAt = now
            self._schedule(self.interval)
        else:
            self._pingedAt = None
            self._schedule(self.interval - silent)

    def _ping(self, xs):
        ping = domish.Element((None, "iq"))
        ping["type"] = "get"
        ping["id"] = self._ids("keepalive")
        ping["from"] = self.component
        ping["to"] = serverDomain(self.component)
        ping.addElement((NS_PING, "ping"))
        # Claimed here before the dispatcher sees it: it is no peer's reply.
        # One route at most, for the last ping only: a server that never
        # answers pings (but sends other traffic) must not make them pile up.
        if self._pongID is None:
            xs.addRoute("iq", self._pong, priority=1)
        self._pongID = ping["id"]
        xs.send(" ")
        xs.send(ping)
        self.stats.keepalive["pings"] += 1

    def _pong(self, iq):
        """
        Take the answer to the last ping: a C{result} or C{error} with its
        id, from the server's domain, to the component's bare JID. Another
        IQ with that id (a peer's, a request, a reply to an encoded
        address) is left to the other handlers.
        """
        if iq.getAttribute("id") == self._pongID and isAnswer(
            iq, self.component, serverDomain(self.component)
        ):
            self._pongID = None
            iq.handled = True
            # The server read the ping from this connection and answered;
            # with several processes the answer may have come on another's
            # connection and been passed on here (docs/instances.md).
            self.xmlstream.lastReceived = self.clock.seconds()
            self.xmlstream.removeRoute("iq", self._pong)

    def _dead(self, xs, silent):
        self.stats.keepalive["dead-links"] += 1
        self.log.warn(
            "Nothing from the server for {seconds:.0f} s, a ping included: "
            "dropping the connection and connecting again",
            seconds=silent,
        )
        transport = xs.transport
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.loseConnection()
