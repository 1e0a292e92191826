"""
In-memory harness for the stanza handlers: a stream that records what the
handlers send, and a way to feed them stanzas as the server would.
"""

import xml.etree.ElementTree as ElementTree

from twisted.internet import defer, reactor, task
from twisted.internet.testing import StringTransport
from twisted.words.protocols.jabber import xmlstream
from wokkel.generic import parseXml
from wokkel.subprotocols import XMPPHandlerCollection

from clientproxy.assembly import makeHandlers
from clientproxy.state.sqlite import Store
from clientproxy.routing.strategies import RoundRobinStrategy
from clientproxy.xmpp.stream import ProxyXmlStream
from clientproxy.xmpp.writer import STREAM_ROOT

COMPONENT = "proxy.example.org"
TARGET = "svc@example.org"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STREAM = STREAM_ROOT + "%s</stream:stream>"


def inStream(xml):
    """
    Parse a stanza as the component's stream does: its elements default to
    the jabber:component:accept namespace.
    """
    root = parseXml((STREAM % (xml,)).encode("utf-8"))
    stanza = root.firstChildElement()
    stanza.parent = None
    return stanza


def written(data):
    """
    Parse what a stream wrote (bytes) as the server would: a strict,
    namespace-aware parser first (it raises on anything not well-formed),
    then domish, giving the stanzas as elements.
    """
    document = (STREAM % (data.decode("utf-8"),)).encode("utf-8")
    ElementTree.fromstring(document)
    return list(parseXml(document).elements())


class RecordingManager(XMPPHandlerCollection):
    """
    Stands in for the stream manager: what handlers send is written by the
    component's own stream (L{ProxyXmlStream}, so by its real writer) to an
    in-memory transport, and parsed back as the server would see it.
    """

    def __init__(self, clock):
        XMPPHandlerCollection.__init__(self)
        self.xmlstream = ProxyXmlStream(xmlstream.Authenticator(), clock)
        self.transport = StringTransport()
        self.xmlstream.makeConnection(self.transport)
        self.xmlstream.dataReceived(STREAM_ROOT[:-1].encode("utf-8") + b" id='harness'>")
        self.transport.clear()

    def send(self, obj):
        self.xmlstream.send(obj)

    def connect(self):
        for handler in self:
            handler.makeConnection(self.xmlstream)
            handler.connectionInitialized()

    def disconnect(self, reason=None):
        for handler in self:
            handler.connectionLost(reason)

    def receive(self, xml):
        """
        Deliver a stanza (a string of XML) as the server would: as bytes
        read by the component's stream, so its own parser and routes.
        """
        self.xmlstream.dataReceived(xml.encode("utf-8"))

    def takeBytes(self):
        """
        Return the bytes written since the last call, and forget them.
        """
        data = self.transport.value()
        self.transport.clear()
        return data

    def take(self):
        """
        Return the stanzas sent since the last call, and forget them.
        """
        return written(self.takeBytes())


def alone(handler, clock=None):
    """
    Connect C{handler} by itself to a L{RecordingManager} (the stream
    stub: the component's own stream on an in-memory transport), to test
    one handler at a time; return the manager.
    """
    manager = RecordingManager(clock or task.Clock())
    handler.setHandlerParent(manager)
    manager.connect()
    manager.take()
    return manager


class Harness:
    """
    A component's handlers, assembled by L{makeHandlers} as in the real
    service, on a L{RecordingManager}, with a L{task.Clock}. Keyword
    arguments go to L{makeHandlers}. Unless C{approved} is false, the
    target has approved the component's presence subscription.
    """

    def __init__(self, timeout=30, strategy=None, store=None, approved=True, **options):
        self.clock = task.Clock()
        self.store = store or Store(":memory:")
        options.setdefault("keepalive", 0)
        # Probes for other processes go out every second after connecting:
        # off unless a test is about them.
        options.setdefault("probeInstances", False)
        # Feature matching asks every resource that comes online what it
        # supports: off unless a test is about it, so the others see only
        # the stanzas they are about.
        options.setdefault("matchFeatures", "off")
        self.handlers = makeHandlers(
            COMPONENT,
            TARGET,
            self.clock,
            self.store,
            timeout=timeout,
            strategy=strategy or RoundRobinStrategy(),
            **options,
        )
        self.stats = self.handlers.stats
        self.policy = self.handlers.policy
        self.resources = self.handlers.resources
        self.presence = self.handlers.presence
        self.dispatcher = self.handlers.dispatcher
        self.pending = self.dispatcher.pending
        self.messages = self.handlers.messages
        self.servicePresence = self.handlers.servicePresence
        self.manager = RecordingManager(self.clock)
        for handler in self.handlers.all():
            handler.setHandlerParent(self.manager)
        self.manager.connect()
        if approved:
            # As on a server where the target approved the component once.
            self.receive("<presence type='subscribed' from='%s' to='%s'/>" % (TARGET, COMPONENT))
        self.manager.take()

    def receive(self, xml):
        self.manager.receive(xml)

    def take(self):
        return self.manager.take()

    def online(self, *names, priority=0):
        """
        Make resources of the target available.
        """
        for name in names:
            self.receive(
                "<presence from='%s/%s' to='%s'><priority>%d</priority></presence>"
                % (TARGET, name, COMPONENT, priority)
            )

    def offline(self, name):
        self.receive(
            "<presence type='unavailable' from='%s/%s' to='%s'/>" % (TARGET, name, COMPONENT)
        )

    def request(
        self,
        requester="alice@example.org/abc",
        stanzaID="1",
        kind="get",
        payload="<query xmlns='urn:test'/>",
        to=COMPONENT,
    ):
        self.receive(
            "<iq type='%s' id='%s' from='%s' to='%s'>%s</iq>"
            % (kind, stanzaID, requester, to, payload)
        )

    def reply(
        self,
        resource,
        requester="alice@example.org/abc",
        stanzaID="1",
        kind="result",
        payload="<query xmlns='urn:test'><answer/></query>",
    ):
        self.receive(
            "<iq type='%s' id='%s' from='%s/%s' to='%s/%s'>%s</iq>"
            % (kind, stanzaID, TARGET, resource, COMPONENT, requester, payload)
        )


@defer.inlineCallbacks
def waitFor(condition, what=None, timeout=15.0):
    """
    Wait on the real reactor until C{condition()} (a value, or a Deferred of
    one) is true, checking every 20 ms; fail after C{timeout} seconds,
    saying C{what} was waited for. The one polling helper of the tests:
    what runs on the real reactor (servers, Redis, child processes) is
    waited for with it, with a bound.

    @return: a Deferred that fires with the true value.
    """
    deadline = reactor.seconds() + timeout
    while True:
        value = yield defer.maybeDeferred(condition)
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError("waited %s s for %s" % (timeout, what or condition))
        yield task.deferLater(reactor, 0.02, lambda: None)


def errorCondition(stanza):
    """
    Return C{(condition, type)} of an error stanza.
    """
    error = next(c for c in stanza.elements() if c.name == "error")
    condition = next(c.name for c in error.elements() if c.uri == NS_STANZAS)
    return condition, error.getAttribute("type")


def stopProxy(proxy):
    """
    Stop C{proxy} (a L{clientproxy.xmpp.connection.ProxyComponent}) on its
    fake reactor: its time is advanced, half a second at a time and a
    minute at most, until the stop is done (the grace, the wait for the
    connection to close, which an in-memory transport never does).

    @return: the Deferred of the stop.
    """
    done = []
    d = proxy.stopService().addBoth(lambda result: done.append(True) or result)
    for _ in range(120):
        if done:
            break
        proxy._reactor.advance(0.5)
    return d
