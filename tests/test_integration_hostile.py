"""
End-to-end tests of the stanza path against hostile input and a dead link,
on each real server: payloads with odd namespace names, prefixes and deep
nesting are delivered intact both ways while the component stays
connected, and a link that stops forwarding without closing is replaced.
"""

from twisted.internet import defer, protocol, reactor
from wokkel.generic import parseXml

from tests.integration import COMPONENT, DOMAIN, onEveryServer, withTimeout
from tests.xmlgen import fromDomish, infoset as readInfoset

#: Payloads that once broke the stream or lost the request: an escaped
#: ampersand in a namespace name (written bare by domish), prefixes
#: declared and rebound with escapes in values, elements named like
#: stanzas and stream elements, and 1,500 levels of nesting (a
#: RecursionError in domish's writer).
ODD_PAYLOADS = [
    "<q xmlns='urn:x:1?q=1&amp;r=2'/>",
    "<a:q xmlns:a='urn:&lt;a&gt;&amp;' a:attr='&apos;&quot;&lt;' xml:lang='de'>"
    "<a:i xmlns:a='urn:rebound'>t&amp;x \U0001f600</a:i>"
    "<b:j xmlns:b='urn:x:1?q=1&amp;r=2' b:k='v'/></a:q>",
    "<q xmlns='urn:x'><iq type='result'/><message><body>b</body></message>"
    "<stream:error xmlns:stream='http://etherx.jabber.org/streams'/></q>",
    "<d xmlns='urn:deep'>" + "<d>" * 1499 + "x" + "</d>" * 1500,
]


def infoset(element):
    """
    Names, namespaces, attributes and text of a payload as a client parsed
    it. Not its prefixes: servers write stanzas with prefixes of their own
    (Prosody names them ns1, ns2, ...); that the component keeps them is
    tested on its own output in tests/test_xml.py.
    """
    return readInfoset(fromDomish(element))


def asClientSees(payload):
    """
    A payload parsed as a client of the server parses it: inside a
    jabber:client stream.
    """
    root = parseXml(("<x xmlns='jabber:client'>%s</x>" % (payload,)).encode("utf-8"))
    return infoset(root.firstChildElement())


class RawAnswer:
    """
    A resource's request handler that answers with C{payload}, as text.
    """

    def __init__(self, payload):
        self.payload = payload
        self.seen = []

    def __call__(self, iq):
        self.seen.append(iq)
        return "<iq type='result' id='%s' to='%s'>%s</iq>" % (
            iq["id"],
            iq["from"],
            self.payload,
        )


class OddPayloadTests:
    @defer.inlineCallbacks
    def assertStillConnected(self, proxy, stream):
        self.assertIs(proxy.xmlstream, stream)
        self.assertEqual(proxy.stats.reconnects, 0)
        with open(self.server.log, encoding="utf-8", errors="replace") as f:
            self.assertNotIn("not-well-formed", f.read())
        yield None

    @defer.inlineCallbacks
    def test_requestsAndReplies(self):
        """
        Each odd payload goes to the resource as a request and comes back
        as its reply, unchanged both ways.
        """
        answers = RawAnswer("")
        yield self.connect("svc", "a", onRequest=answers)
        proxy = yield self.startProxy(resources=1, maxStanzaSize=0)
        stream = proxy.xmlstream
        alice = yield self.connect("alice", "x")
        for number, payload in enumerate(ODD_PAYLOADS):
            answers.payload = payload
            stanzaID = "odd-%d" % (number,)
            reply = yield withTimeout(
                alice.requestRaw(
                    "<iq type='get' id='%s' to='%s'>%s</iq>" % (stanzaID, COMPONENT, payload),
                    stanzaID,
                ),
                what="the reply to request %d" % (number,),
            )
            self.assertEqual(reply["type"], "result")
            expected = asClientSees(payload)
            self.assertTrue(infoset(reply.firstChildElement()) == expected, number)
            self.assertTrue(infoset(answers.seen[-1].firstChildElement()) == expected)
        yield self.assertStillConnected(proxy, stream)

    @defer.inlineCallbacks
    def test_messagesBothWays(self):
        """
        Odd payloads in a message to the service reach its resource; in a
        message from the resource they reach the peer.
        """
        svc = yield self.connect("svc", "a")
        proxy = yield self.startProxy(resources=1, maxStanzaSize=0)
        stream = proxy.xmlstream
        alice = yield self.connect("alice", "x")
        for number, payload in enumerate(ODD_PAYLOADS):
            expected = asClientSees(payload)
            incoming = svc.waitFor(
                lambda s: s.name == "message" and s.getAttribute("id") == "in%d" % number
            )
            alice.send(
                "<message type='chat' id='in%d' to='%s'>%s</message>" % (number, COMPONENT, payload)
            )
            got = yield withTimeout(incoming, what="message %d at the resource" % (number,))
            self.assertTrue(infoset(got.firstChildElement()) == expected, number)
            outgoing = alice.waitFor(
                lambda s: s.name == "message" and s.getAttribute("id") == "out%d" % number
            )
            svc.send(
                "<message type='chat' id='out%d' to='%s/alice@%s/x'>%s</message>"
                % (number, COMPONENT, DOMAIN, payload)
            )
            got = yield withTimeout(outgoing, what="message %d at the peer" % (number,))
            self.assertTrue(infoset(got.firstChildElement()) == expected, number)
        yield self.assertStillConnected(proxy, stream)


class AddressTests:
    @defer.inlineCallbacks
    def test_answeredFromTheAddressAsked(self):
        """
        A request to component/x is answered from component/x (RFC 6120
        8.1.2.1): the reply, and the component's own error.
        """
        yield self.connect("svc", "a")
        yield self.startProxy(resources=1)
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(alice.request(COMPONENT + "/x", stanzaID="r1"))
        self.assertEqual((reply["type"], reply["from"]), ("result", COMPONENT + "/x"))
        reply = yield withTimeout(
            alice.requestRaw("<iq type='get' id='r2' to='%s/y'/>" % (COMPONENT,), "r2")
        )
        self.assertEqual((reply["type"], reply["from"]), ("error", COMPONENT + "/y"))


class _RelaySide(protocol.Protocol):
    """
    One side of a relayed connection: forwards what it reads to the other
    side until the relay is frozen, and closes the other side when it is
    closed.
    """

    def __init__(self, relay, other=None):
        self.relay = relay
        self.other = other
        self.pending = []
        self.frozen = False

    def connectionMade(self):
        self.relay.sides.append(self)
        if self.other is None:
            # The inbound side: open the outbound one to the server.
            protocol.ClientCreator(reactor, _RelaySide, self.relay, self).connectTCP(
                "127.0.0.1", self.relay.port
            ).addCallback(self._outbound)
        else:
            self.other._outbound(self)

    def _outbound(self, other):
        if self.other is None or self.other is other:
            self.other = other
            for data in self.pending:
                other.transport.write(data)
            self.pending = []

    def dataReceived(self, data):
        if self.frozen:
            return
        if self.other is None or self.other.transport is None:
            self.pending.append(data)
        else:
            self.other.transport.write(data)

    def connectionLost(self, reason):
        self.relay.sides.remove(self)
        if self.other is not None and self.other.transport is not None:
            self.other.transport.loseConnection()


class Relay(protocol.Factory):
    """
    A TCP relay on loopback to C{port}, that can be made to stop forwarding
    on its current connections without closing them: a server that
    vanished without a word, as a dead host or a firewall that forgot the
    connection leaves it. New connections are relayed normally.
    """

    def __init__(self, port):
        self.port = port
        self.sides = []

    def buildProtocol(self, addr):
        return _RelaySide(self)

    def freeze(self):
        for side in self.sides:
            side.frozen = True

    def close(self):
        for side in list(self.sides):
            side.transport.abortConnection()


class DeadLinkTests:
    @defer.inlineCallbacks
    def test_silentlyDeadLinkReplaced(self):
        """
        With --keepalive 1, a link that stops forwarding is dropped and
        made again within about two keepalive periods, and requests are
        served again.
        """
        relay = Relay(self.server.componentPort)
        port = reactor.listenTCP(0, relay, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(relay.close)
        yield self.connect("svc", "a")
        proxy = yield self.startProxy(resources=1, port=port.getHost().port, keepalive=1.0)
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(alice.request(COMPONENT, stanzaID="before"))
        self.assertEqual(reply["type"], "result")
        frozenAt = reactor.seconds()
        relay.freeze()
        yield self.waitUntil(
            lambda: proxy.stats.keepalive["dead-links"] == 1, "the dead link to be dropped"
        )
        noticed = reactor.seconds() - frozenAt
        self.assertLess(noticed, 3.5)
        yield self.waitUntil(lambda: proxy.stats.reconnects == 1, "the component to reconnect")
        yield self.resourcesKnown(proxy, 1)
        reply = yield withTimeout(alice.request(COMPONENT, stanzaID="after"))
        self.assertEqual(reply["type"], "result")


globals().update(onEveryServer(OddPayloadTests, AddressTests, DeadLinkTests))
