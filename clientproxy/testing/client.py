# -*- test-case-name: tests.test_integration -*-
"""
A plain XMPP client connection (twisted.words), for the integration tests,
the demo and the benchmarks: a requester, or a resource of the target.

It logs in with SASL over loopback (no TLS: the throwaway server has no
certificate), fetches its roster and optionally sends presence, approves
every subscription request, and answers IQ requests with a handler of the
caller's choosing.
"""

import itertools

from twisted.internet import defer, reactor as globalReactor, task
from twisted.words.protocols.jabber import client, jid, xmlstream
from twisted.words.xish import domish

from clientproxy.xmpp.caps import NS_CAPS, NS_DISCO_INFO, DiscoInfo, verString

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class PlainClientAuthenticator(client.XMPPAuthenticator):
    """
    The standard client authenticator without STARTTLS.
    """

    def associateWithStream(self, xs):
        client.XMPPAuthenticator.associateWithStream(self, xs)
        xs.initializers = [
            i for i in xs.initializers if not isinstance(i, xmlstream.TLSInitiatingInitializer)
        ]


def echo(iq):
    """
    A request handler: answer with a result carrying the request's payload.
    """
    reply = resultFor(iq)
    for child in iq.elements():
        reply.addChild(child)
    return reply


_ids = itertools.count()

#: The caps node of the sample clients.
CAPS_NODE = "https://clientproxy.example/sample-client"


def supporting(features, onRequest=echo, identity=("client", "bot")):
    """
    A request handler for a client that supports C{features}: it answers
    disco#info queries (XEP-0030) with them, and gives other requests to
    C{onRequest}. With L{capsFor}, what a client that advertises its
    features does.
    """

    def handler(iq):
        query = iq.firstChildElement()
        if query is None or (query.uri, query.name) != (NS_DISCO_INFO, "query"):
            return onRequest(iq)
        reply = resultFor(iq)
        answer = reply.addElement((NS_DISCO_INFO, "query"))
        if query.getAttribute("node") is not None:
            answer["node"] = query["node"]
        answer.addElement("identity").attributes.update(
            {"category": identity[0], "type": identity[1]}
        )
        for feature in sorted(features):
            answer.addElement("feature")["var"] = feature
        return reply

    return handler


def capsFor(features, identity=("client", "bot")):
    """
    The XEP-0115 <c/> of a client that supports C{features}.
    """
    info = DiscoInfo([(identity[0], identity[1], "", "")], frozenset(features), {})
    c = domish.Element((NS_CAPS, "c"))
    c["hash"] = "sha-1"
    c["node"] = CAPS_NODE
    c["ver"] = verString(info)
    return c


def requestFor(to, payload=None, kind="get", stanzaID=None):
    """
    Build an IQ request to C{to} with C{payload} (a C{<query
    xmlns='urn:test'/>} by default) and a fresh id unless one is given.
    """
    iq = domish.Element((None, "iq"))
    iq["type"] = kind
    if to is not None:
        iq["to"] = to
    iq["id"] = stanzaID or "r%d" % (next(_ids),)
    if payload is None:
        payload = domish.Element(("urn:test", "query"))
    iq.addChild(payload)
    return iq


def resultFor(iq, kind="result"):
    reply = domish.Element((None, "iq"))
    reply["type"] = kind
    if iq.getAttribute("from") is not None:
        reply["to"] = iq["from"]
    if iq.getAttribute("id") is not None:
        reply["id"] = iq["id"]
    return reply


def errorFor(condition, kind="cancel"):
    """
    Make a request handler that answers with an error of C{condition}.
    """

    def handler(iq):
        reply = resultFor(iq, "error")
        error = reply.addElement("error")
        error["type"] = kind
        error.addElement((NS_STANZAS, condition))
        return reply

    return handler


def hold(iq):
    """
    A request handler that never answers.
    """
    return None


def heldFor(seconds, reactor=globalReactor):
    """
    A request handler that answers each request with a result after
    C{seconds} (the process that forwarded it holds it meanwhile).
    """

    def handler(iq):
        return task.deferLater(reactor, seconds, resultFor, iq)

    return handler


class Client:
    """
    One client connection.

    @ivar jid: the full JID the server bound, once connected.
    @ivar requests: every IQ request received, in order.
    @ivar replies: every IQ reply received, in order.
    @ivar presences: every presence received, in order.
    @ivar messages: every message received, in order.
    @ivar onRequest: called with each IQ get/set received; returns the reply
        element, C{None} to hold it, or a Deferred of either.
    @ivar caps: a XEP-0115 C{<c/>} sent in every available presence (see
        L{capsFor}), or C{None}.
    """

    def __init__(
        self,
        address,
        password,
        host,
        port,
        presence=True,
        priority=None,
        onRequest=echo,
        reactor=globalReactor,
        caps=None,
    ):
        self.jid = jid.JID(address)
        self.password = password
        self.host = host
        self.port = port
        self.presence = presence
        self.priority = priority
        self.onRequest = onRequest
        self.caps = caps
        self.reactor = reactor
        self.xmlstream = None
        self.requests = []
        self.replies = []
        self.presences = []
        self.messages = []
        self._waiting = {}
        self._observers = []
        self._lost = defer.Deferred()

    def connect(self):
        """
        Connect, log in and (if C{presence}) send available presence.

        @return: a Deferred that fires with this client once it is ready.
        """
        ready = defer.Deferred()
        factory = xmlstream.XmlStreamFactory(PlainClientAuthenticator(self.jid, self.password))
        factory.maxRetries = 0
        factory.noisy = False

        def authenticated(xs):
            self.xmlstream = xs
            self.jid = xs.authenticator.jid
            xs.addObserver("/iq[@type='get']", self._onRequest)
            xs.addObserver("/iq[@type='set']", self._onRequest)
            xs.addObserver("/iq[@type='result']", self._onReply)
            xs.addObserver("/iq[@type='error']", self._onReply)
            xs.addObserver("/presence", self._onPresence)
            xs.addObserver("/message", self._onMessage)
            # As a client does (RFC 6121 2.1.3): fetch the roster, then send
            # presence. Servers show subscription answers only to clients
            # that have fetched the roster.
            d = self.request(None, domish.Element(("jabber:iq:roster", "query")))
            d.addCallback(lambda _: self.sendPresence() if self.presence else None)
            d.addCallback(lambda _: self)
            d.chainDeferred(ready)

        def failed(reason):
            if not ready.called:
                ready.errback(reason)

        def lost(reason):
            factory.stopTrying()
            self.xmlstream = None
            for d in list(self._waiting.values()):
                d.errback(reason)
            self._waiting.clear()
            if not ready.called:
                ready.errback(reason)
            self._lost.callback(None)

        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, authenticated)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, failed)
        factory.addBootstrap(xmlstream.STREAM_END_EVENT, lost)
        factory.clientConnectionFailed = lambda connector, reason: failed(reason)
        self.reactor.connectTCP(self.host, self.port, factory)
        return ready

    def sendPresence(self, kind=None, to=None, priority=None):
        presence = domish.Element((None, "presence"))
        if kind is not None:
            presence["type"] = kind
        if to is not None:
            presence["to"] = to
        priority = self.priority if priority is None else priority
        if priority is not None and kind is None:
            presence.addElement("priority", content=str(priority))
        if self.caps is not None and kind is None:
            presence.addChild(self.caps)
        self.send(presence)

    def send(self, stanza):
        self.xmlstream.send(stanza)

    def request(self, to, payload=None, kind="get", stanzaID=None):
        """
        Send an IQ request and wait for its reply.

        @param payload: the child element; a C{<query xmlns='urn:test'/>}
            by default.
        @return: a Deferred that fires with the reply element (a result or
            an error: both are answers).
        """
        return self.sendRequest(requestFor(to, payload, kind, stanzaID))

    def sendRequest(self, iq):
        """
        Send a ready IQ request (with an id) and wait for its reply.
        """
        d = self._waiting[iq["id"]] = defer.Deferred()
        self.send(iq)
        return d

    def requestRaw(self, xml, stanzaID):
        """
        Send an IQ request given as text, with id C{stanzaID}, and wait for
        its reply: for payloads that domish's own writer cannot write
        (namespace names needing escapes, among others).
        """
        d = self._waiting[stanzaID] = defer.Deferred()
        self.send(xml)
        return d

    def enableCarbons(self):
        """
        Ask the server for carbon copies (XEP-0280).
        """
        return self.request(None, domish.Element(("urn:xmpp:carbons:2", "enable")), "set")

    def sendMessage(self, to, text, kind="chat", stanzaID=None):
        message = domish.Element((None, "message"))
        message["to"] = to
        message["type"] = kind
        if stanzaID is not None:
            message["id"] = stanzaID
        message.addElement("body", content=text)
        self.send(message)

    def waitFor(self, predicate):
        """
        Return a Deferred that fires with the next stanza received for
        which C{predicate(stanza)} is true.
        """
        d = defer.Deferred()
        self._observers.append((predicate, d))
        return d

    def _notify(self, stanza):
        for entry in list(self._observers):
            predicate, d = entry
            if predicate(stanza):
                self._observers.remove(entry)
                d.callback(stanza)

    def _isRosterPush(self, iq):
        """
        Whether C{iq} is the server's roster push (RFC 6121 2.1.6): from no
        one or from this account, about the roster. Not a request for the
        sample service: a client acknowledges it, as this one does.
        """
        sender = iq.getAttribute("from")
        if sender is not None and sender != self.jid.userhost():
            return False
        query = iq.firstChildElement()
        return query is not None and query.uri == "jabber:iq:roster"

    def _onRequest(self, iq):
        if self._isRosterPush(iq):
            self.send(resultFor(iq))
            return
        self.requests.append(iq)
        self._notify(iq)
        d = defer.maybeDeferred(self.onRequest, iq)

        def answer(reply):
            if reply is not None and self.xmlstream is not None:
                self.send(reply)

        d.addCallback(answer)

    def _onReply(self, iq):
        self.replies.append(iq)
        d = self._waiting.pop(iq.getAttribute("id"), None)
        if d is not None:
            d.callback(iq)
        self._notify(iq)

    def _onPresence(self, presence):
        self.presences.append(presence)
        if presence.getAttribute("type") == "subscribe":
            reply = domish.Element((None, "presence"))
            reply["to"] = presence["from"]
            reply["type"] = "subscribed"
            self.send(reply)
        self._notify(presence)

    def _onMessage(self, message):
        self.messages.append(message)
        self._notify(message)

    def disconnect(self):
        """
        Close the stream and wait until the connection is gone.
        """
        if self.xmlstream is not None:
            self.xmlstream.sendFooter()
            self.xmlstream.transport.loseConnection()
        return self._lost if not self._lost.called else defer.succeed(None)
