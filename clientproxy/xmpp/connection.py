# -*- test-case-name: tests.test_connection -*-
"""
The component's connection to the server (XEP-0114), as an operator expects
it to behave: back within seconds of the server, and clear about a refused
handshake.

L{wokkel.component.Component} is kept, with two changes:

 - the reconnect back-off is capped at L{MAX_RECONNECT_DELAY} seconds
   (Twisted's default cap is an hour), and restarts only once the handshake
   succeeds, so a server that refuses the component is not hammered;
 - a refused handshake (wrong secret, unknown component) is logged as such
   and retried, instead of stopping the service: the server's configuration
   may be fixed while the component keeps trying.

The link may be direct TLS (L{TLSSettings}): the server's certificate is
verified for a name with Twisted's C{optionsForClientTLS} (service-identity
does the name checks); one it does not accept is logged as such and
retried like a refused handshake.

Every attempt is counted, and every one that fails by why (L{FAILURES}:
refused, timed out, the name not found, TLS, the handshake refused, a
conflict, the connection closed before the handshake); while the server
cannot be reached, one line says why at once and then at most one every
L{clientproxy.ops.throttle.INTERVAL} seconds, with the number of attempts
not logged since. The link's state (L{clientproxy.ops.stats.LINK_STATES})
is kept in the stats for the metrics.
"""

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.application import service
from twisted.internet import defer, error, ssl
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.logger import Logger
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.component import ConnectComponentAuthenticator
from twisted.words.xish.xmlstream import XmlStreamFactoryMixin
from wokkel.component import Component
from wokkel.subprotocols import StreamManager

from clientproxy.ops.stats import CONNECTING, DOWN, HANDSHAKE, STANDBY, UP
from clientproxy.ops.throttle import Throttle
from clientproxy.xmpp.stream import ProxyXmlStream

#: Seconds: the longest wait between two connection attempts.
MAX_RECONNECT_DELAY = 5.0
#: Seconds: the wait before the first new attempt.
INITIAL_RECONNECT_DELAY = 0.5
#: Seconds a process holding the lease may go without a connection to the
#: server before it lets the lease go for a standby that may reach it.
LEASE_UNUSED = 15.0
#: Seconds it then leaves the lease to the others.
LEASE_PAUSE = 3.0

#: Stream error conditions that mean the server refused the handshake, with
#: what an operator should check (C{conflict}, another process connected as
#: the component, is standing by: see L{ProxyComponent._onStreamError}).
HANDSHAKE_REFUSALS = {
    # ejabberd answers an unknown component name this way too.
    "not-authorized": "check the component secret, and that the server has an "
    "external component of that name",
    "host-unknown": "the server has no external component of that name",
}


#: Why an attempt to connect failed, as counted and logged: what each
#: reason says in the log line.
FAILURES = {
    "refused": "connection refused (is the server running, with a component listener on that "
    "port?)",
    "timeout": "timed out (is the host reachable, or a firewall dropping the connection?)",
    "dns": "the host name does not resolve",
    "tls": "TLS failed",
    "handshake": "the server refused the handshake",
    "conflict": "another process is connected as the component",
    "closed": "the server closed the connection before the handshake (is it a component listener?)",
    "silent": "the server accepted the connection but did not finish the handshake in time (is "
    "it hung, or is the port not a component listener?)",
    "other": "the connection failed",
}


#: Seconds from the TCP connection to the end of the handshake, at most: a
#: server that accepts connections but answers nothing (hung, stopped, or
#: not an XMPP listener) would otherwise hold the component silent for ever.
HANDSHAKE_TIMEOUT = 15.0

#: Seconds a stop waits for the connection to close once it has asked it
#: to: what was written last (the answers of a shutdown) is sent by then.
CLOSE_TIMEOUT = 5.0


def failureKind(reason):
    """
    The key of L{FAILURES} for a failed connection's C{reason} (a Failure).
    """
    if reason is None:
        return "closed"
    if reason.check(error.ConnectionRefusedError):
        return "refused"
    if reason.check(error.TimeoutError, error.TCPTimedOutError):
        return "timeout"
    if reason.check(error.DNSLookupError):
        return "dns"
    if reason.check(SSL.Error, VerificationError):
        return "tls"
    if reason.check(error.ConnectionDone, error.ConnectionLost):
        return "closed"
    return "other"


class TLSSettings:
    """
    Direct TLS to the server.

    @ivar name: the name the server's certificate must be valid for.
    @ivar caFile: a PEM file of the certificate authority to trust, or
        C{None} for the system's trust store.
    """

    def __init__(self, name, caFile=None):
        self.name = name
        self.caFile = caFile

    def creator(self):
        """
        The L{IOpenSSLClientConnectionCreator} for one connection.
        """
        if self.caFile is None:
            trust = ssl.platformTrust()
        else:
            with open(self.caFile, "rb") as f:
                trust = ssl.Certificate.loadPEM(f.read())
        return ssl.optionsForClientTLS(self.name, trustRoot=trust)


class ComponentFactory(xmlstream.XmlStreamFactory):
    """
    Reconnecting stream factory whose back-off is reset only by a
    successful handshake (see L{ProxyComponent._authd}), not by a TCP
    connection alone. Its streams are L{ProxyXmlStream}s on its clock,
    counting what their parser drops in its stats.
    """

    noisy = False
    initialDelay = INITIAL_RECONNECT_DELAY
    maxDelay = MAX_RECONNECT_DELAY
    protocol = ProxyXmlStream

    #: Called when an attempt starts, and with the Failure when one fails
    #: before a connection is made (L{ProxyComponent} sets them).
    onAttempt = onFailure = None

    def __init__(self, authenticator, clock, stats=None):
        xmlstream.XmlStreamFactory.__init__(self, authenticator)
        self.clock = clock
        self.kwargs = {"clock": clock, "stats": stats}

    def buildProtocol(self, addr):
        return XmlStreamFactoryMixin.buildProtocol(self, addr)

    def startedConnecting(self, connector):
        if self.onAttempt is not None:
            self.onAttempt()
        xmlstream.XmlStreamFactory.startedConnecting(self, connector)

    def clientConnectionFailed(self, connector, reason):
        if self.onFailure is not None:
            self.onFailure(reason)
        xmlstream.XmlStreamFactory.clientConnectionFailed(self, connector, reason)


class Status:
    """
    What the HTTP endpoints show of one proxy (L{ProxyComponent.status}),
    read in one place.

    @ivar jid: the component's JID.
    @ivar target: the target's bare JID.
    @ivar stats: its L{clientproxy.ops.stats.Stats}.
    @ivar standingBy: whether another process holds the store's lock or
        the lease, so this one waits.
    @ivar standbyWhat: what it waits for (C{"the store's lock"}), or
        C{None}.
    @ivar connected: whether a connection to the server is up.
    @ivar authenticated: whether its handshake is done.
    @ivar subscription: the state of the presence subscription to the
        target (L{clientproxy.handlers.targetpresence}).
    @ivar resources: the usable resources of the target (a list).
    @ivar pending: the requests in flight (those waiting in line included).
    @ivar held: the requests waiting in line for a resource (C{--hold}).
    @ivar queued: the messages queued.
    @ivar subscribers: the subscribers to the service's presence.
    @ivar sharedReachable: with state shared by several processes,
        whether it can be reached; C{None} for a process alone.
    @ivar sharedProblem: why the shared state refuses this process (a
        wrong password, say), or C{None}.
    @ivar sharedSynced: whether what was published while this process was
        not listening has been read back.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)


class ProxyComponent(Component):
    """
    The external component: a wokkel stream manager, connected to the server
    with L{ComponentFactory}, carrying the handlers of one proxy.

    @ivar parts: its L{clientproxy.assembly.Handlers}, and what they share.
    @ivar stats: the L{clientproxy.ops.stats.Stats} of this component.
    @ivar dispatcher: its L{clientproxy.handlers.dispatch.IQDispatcher}, drained on
        stop.
    @ivar store: its L{clientproxy.state.sqlite.Store}.
    @ivar grace: seconds requests in flight get to be answered when the
        service stops.
    @ivar authenticated: whether the current connection has completed its
        handshake (what the health endpoints and the readiness report read).
    @ivar standby: the L{clientproxy.ops.standby.StandbyLock} on the store,
        taken before connecting (a second process for the same store stands
        by), the L{clientproxy.state.redis.lease.Lease} in Redis
        (C{--lease}: this process connects only while it holds it, and
        disconnects at once when it loses it), or C{None}.
    """

    log = Logger()

    def __init__(
        self, host, port, jid, secret, handlers, reactor=None, grace=5.0, tls=None, standby=None
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.host = host
        self.port = port
        self.jid = jid
        self.grace = grace
        # Fired once the connection a stop closes is closed.
        self._closed = None
        self.tls = tls
        self.parts = handlers
        self.stats = handlers.stats
        self.dispatcher = handlers.dispatcher
        self.store = handlers.store
        self.standby = standby
        self._connection = None
        factory = ComponentFactory(
            ConnectComponentAuthenticator(jid, secret), reactor, handlers.stats
        )
        factory.addBootstrap(xmlstream.STREAM_ERROR_EVENT, self._onStreamError)
        factory.onAttempt = self._attempt
        factory.onFailure = self._failed
        StreamManager.__init__(self, factory, reactor)
        self.authenticated = False
        self._unused = None
        self._everConnected = False
        self._standingBy = False
        # Why the current connection is failing, once the server said so
        # (a stream error) before it closes it.
        self._failure = None
        self._handshakeTimer = None
        self._unreachable = Throttle(self._reactor.seconds)
        whenLost = getattr(standby, "whenLost", None)
        if whenLost is not None:
            whenLost(self._standDown)
        for handler in handlers.all():
            handler.setHandlerParent(self)

    def startService(self):
        """
        Connect to the server, once this process holds the store's lock
        (at once, unless another process does: then when it is gone).
        """
        if self.standby is None:
            Component.startService(self)
            return
        service.Service.startService(self)
        self.stats.link = STANDBY
        self.standby.acquire(self._connect)

    def _connect(self):
        if not self.running:
            return
        if self._connection is not None:
            # Again, after the lease was lost (L{_standDown}) and taken.
            self.factory.continueTrying = True
            self.factory.resetDelay()
        self._connection = self._getConnection()
        self._watchUnused()

    def _watchUnused(self):
        """
        With a lease: hand it back if no handshake with the server is done
        within L{LEASE_UNUSED} seconds (this process may be cut off from the
        server while another is not).
        """
        if getattr(self.standby, "handBack", None) is None or not self.standby.held:
            return
        if self._unused is None or not self._unused.active():
            self._unused = self._reactor.callLater(LEASE_UNUSED, self._leaseUnused)

    def _unwatchUnused(self):
        if self._unused is not None and self._unused.active():
            self._unused.cancel()
        self._unused = None

    def _leaseUnused(self):
        self._unused = None
        if self.running and not self.authenticated and self.standby.held:
            self.standby.handBack(
                "no connection to the server for %g s: leaving it to another process for %g s"
                % (LEASE_UNUSED, LEASE_PAUSE),
                LEASE_PAUSE,
            )

    def _standDown(self):
        """
        The lease was lost (L{clientproxy.state.redis.lease}): another
        process may hold the component now. Drop the connection at once,
        try no more, and stand by until the lease is this process's again.
        """
        self.stats.link = STANDBY
        self._unwatchUnused()
        if not self.running or self._connection is None:
            return
        self.factory.stopTrying()
        connector = self._connection
        if getattr(connector, "state", None) == "connected" and connector.transport is not None:
            connector.transport.abortConnection()
        else:
            connector.disconnect()

    def status(self):
        """
        What the HTTP endpoints show of this proxy, as a L{Status}.
        """
        parts = self.parts
        cluster = parts.cluster
        return Status(
            jid=self.jid,
            target=parts.presence.target,
            stats=parts.stats,
            standingBy=self.standby is not None and not self.standby.held,
            standbyWhat=getattr(self.standby, "what", None),
            connected=self.xmlstream is not None,
            authenticated=self.authenticated,
            subscription=parts.presence.subscription,
            resources=list(parts.resources.available),
            pending=len(parts.dispatcher.pending),
            held=parts.dispatcher.pending.lineLength,
            queued=parts.store.queueLength(),
            subscribers=parts.store.subscriberCount(),
            sharedReachable=None if cluster is None else cluster.reachable,
            sharedProblem=None if cluster is None else getattr(cluster.redis, "problem", None),
            sharedSynced=cluster is None or cluster.synced,
        )

    def reconfigure(self, settings, changed):
        """
        Apply the live settings (a reload): C{settings} by option name,
        C{changed} the names of those that changed.
        """
        self.grace = settings["grace"]
        self.parts.reconfigure(settings, changed)

    def stopService(self):
        """
        Stop gracefully: take no new requests, give those in flight
        L{grace} seconds, answer what is left, show the service unavailable
        to its subscribers, then close the connection. Queued messages stay
        in the store.

        @return: a Deferred that fires once the connection is closed, or
            has had L{CLOSE_TIMEOUT} seconds to (twistd waits for it before
            it exits).
        """
        if self.xmlstream is None:
            drained = defer.succeed(None)
        else:
            drained = self.dispatcher.shutdown(self._reactor, self.grace)

        def close(_):
            self._unwatchUnused()
            if self.xmlstream is not None:
                self.parts.servicePresence.shutdown()
            waits = []
            if self._connection is None:
                # Standing by: never connected.
                service.Service.stopService(self)
            else:
                if self.xmlstream is not None:
                    # The last answers are written once the transport is
                    # writable: the process must not exit before (twistd
                    # stops the reactor once this Deferred fires).
                    closed = self._closed = defer.Deferred()
                    waits.append(closed.addTimeout(CLOSE_TIMEOUT, self._reactor))
                Component.stopService(self)
            if self.standby is not None:
                # A lease is deleted at once, for a standby to take.
                waits.append(defer.maybeDeferred(self.standby.release))
            if self.parts.cluster is not None:
                waits.append(self.parts.cluster.stop())
            d = defer.gatherResults(waits, consumeErrors=True)
            return d.addCallbacks(lambda _: None, lambda _: None)

        return drained.addBoth(close)

    def _getConnection(self):
        factory = self.factory
        if self.tls is not None:
            factory = TLSMemoryBIOFactory(self.tls.creator(), True, factory)
        return self._reactor.connectTCP(self.host, self.port, factory)

    def _attempt(self):
        self.stats.connectionAttempts += 1
        self.stats.link = CONNECTING
        self._failure = None

    def _connected(self, xs):
        self.stats.link = HANDSHAKE
        self._handshakeTimer = self._reactor.callLater(
            HANDSHAKE_TIMEOUT, self._handshakeTimedOut, xs
        )
        StreamManager._connected(self, xs)

    def _handshakeTimedOut(self, xs):
        """
        The server took the connection but not the handshake within
        L{HANDSHAKE_TIMEOUT}: count it, say it, drop the connection (the
        factory tries again).
        """
        self._handshakeTimer = None
        self._failure = "silent"
        self._failed(None, "silent")
        xs.transport.abortConnection()

    def _cancelHandshakeTimer(self):
        if self._handshakeTimer is not None and self._handshakeTimer.active():
            self._handshakeTimer.cancel()
        self._handshakeTimer = None

    def _failed(self, reason, kind=None, **fields):
        """
        An attempt failed (C{kind}, a key of L{FAILURES}, else worked out
        from C{reason}): count it, and say why unless a line was written
        less than an interval ago (C{fields} go with the line). A conflict
        is standing by, said once by L{_onStreamError}.
        """
        kind = kind or failureKind(reason)
        self.stats.connectionFailures[kind] += 1
        self.stats.link = STANDBY if self._standingBy else DOWN
        if kind == "conflict":
            return
        unlogged = self._unreachable("unreachable")
        if unlogged is None:
            return
        why = FAILURES[kind]
        if kind == "tls":
            fields["name"] = self.tls.name if self.tls is not None else self.host
            message = reason.getErrorMessage()
            if "wrong version number" in message:
                # What OpenSSL says when the other side does not speak TLS.
                why = "TLS failed: the port does not speak TLS (is it the plain component port?)"
            else:
                why = "TLS failed: the server's certificate is not accepted for %s (%s)" % (
                    fields["name"],
                    message,
                )
        elif kind == "handshake":
            why = "the server refused the handshake (%s): %s" % (
                fields["condition"] or "no stream error condition",
                fields["hint"],
            )
        elif kind == "other" and reason is not None:
            why = "%s (%s)" % (why, reason.getErrorMessage())
        self.log.error(
            "Cannot connect to the server at {host}:{port} as {jid}: {why}; trying again "
            "every {delay:.0f} s at most ({unlogged} more failed attempts since the last "
            "such line)",
            host=self.host,
            port=self.port,
            jid=self.jid,
            why=why,
            kind=kind,
            delay=self.factory.maxDelay,
            unlogged=unlogged,
            **fields,
        )

    def _authd(self, xs):
        self._cancelHandshakeTimer()
        self._unwatchUnused()
        self.factory.resetDelay()
        self.authenticated = True
        self.stats.link = UP
        self._failure = None
        if self._everConnected:
            self.stats.reconnects += 1
        self._everConnected = True
        self.log.info(
            "Connected to {host}:{port} as {jid}",
            host=self.host,
            port=self.port,
            jid=self.jid,
        )
        if self._standingBy:
            self._standingBy = False
            self.log.info("Took over component {jid} from the process that held it", jid=self.jid)
        # Another process sharing the store (the one this one stood by for)
        # may have changed the queue and the subscribers since they were
        # read: read back, the queue is delivered.
        self.store.recount().addCallback(lambda _: self.parts.messages.deliverQueued())
        # wokkel's Component._authd wraps the stream's send in a function
        # that gives every element without a from the component's; the
        # stream does the same itself, without a call more per stanza.
        xs.defaultFrom = self.jid
        StreamManager._authd(self, xs)
        # The stream manager's own IQ response tracking (for
        # StreamManager.request) is unused: replies are matched by the
        # dispatcher's pending table. Two XPath checks less per stanza.
        xs.removeObserver('/iq[@type="result"]', self._onIQResponse)
        xs.removeObserver('/iq[@type="error"]', self._onIQResponse)

    def _disconnected(self, reason):
        self._cancelHandshakeTimer()
        closed, self._closed = self._closed, None
        if closed is not None and not closed.called:
            closed.callback(None)
        # Dropped on purpose: the lease was lost (said by the lease).
        dropped = self.running and self.standby is not None and not self.standby.held
        if self.authenticated:
            if self.running and not dropped:
                self.log.warn(
                    "Connection to the server lost ({reason}); reconnecting",
                    reason=reason.getErrorMessage(),
                )
            self.stats.link = STANDBY if dropped else DOWN
        elif self._failure is not None:
            # Counted and said when the server refused the handshake.
            self.stats.link = STANDBY if self._standingBy else DOWN
        elif self.running:
            # Connected, but never authenticated: a failed attempt.
            tls = reason is not None and reason.check(SSL.Error, VerificationError)
            self._failed(reason, "tls" if tls else "closed")
        else:
            self.stats.link = DOWN
        self._failure = None
        self.authenticated = False
        if self.running:
            self._watchUnused()
        Component._disconnected(self, reason)

    def _onStreamError(self, reason):
        condition = getattr(reason.value, "condition", None)
        if not self.authenticated and condition == "conflict":
            self._failure = "conflict"
            # Another process holds the component (Prosody keeps one
            # connection per component and refuses a second): stand by,
            # and take over when it goes. Said once, not at every attempt.
            if not self._standingBy:
                self._standingBy = True
                self.log.info(
                    "Another process is connected as component {jid} (the server refused "
                    "this one with conflict): standing by, trying again every {delay:.0f} s "
                    "at most",
                    jid=self.jid,
                    delay=self.factory.maxDelay,
                )
            self._failed(reason, "conflict")
        elif not self.authenticated:
            self._failure = "handshake"
            self._failed(
                reason,
                "handshake",
                condition=condition,
                hint=HANDSHAKE_REFUSALS.get(condition, "see the server's log"),
            )
        elif condition == "conflict":
            # Another process connected as the component, and the server
            # (Prosody with component_conflict_resolve = "kick_old") closes
            # this connection for it.
            self.log.warn(
                "The server closed this connection: another process connected as component "
                "{jid} (conflict)",
                jid=self.jid,
            )
        else:
            self.log.error("Stream error from the server: {condition}", condition=condition)

    def initializationFailed(self, reason):
        """
        Stream initialisation failed: log it and drop the connection, so the
        factory tries again (wokkel would stop the service for good).
        """
        self.log.failure("Stream initialisation failed", reason)
        if self.xmlstream is not None:
            self.xmlstream.transport.loseConnection()
