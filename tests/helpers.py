"""
In-memory harness for the stanza handlers: a stream that records what the
handlers send, and a way to feed them stanzas as the server would.
"""

from twisted.internet import task
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.error import STANZA_CONDITIONS
from wokkel.generic import parseXml
from wokkel.subprotocols import XMPPHandlerCollection

from clientproxy.dispatch import IQDispatcher
from clientproxy.messages import MessageRouter
from clientproxy.pending import PendingTable
from clientproxy.policy import Policy
from clientproxy.presence import TargetPresence
from clientproxy.resources import ResourceSet
from clientproxy.servicepresence import ServicePresence
from clientproxy.stats import Stats
from clientproxy.store import Store
from clientproxy.strategies import RoundRobinStrategy

COMPONENT = "proxy.example.org"
TARGET = "svc@example.org"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def inStream(xml):
    """
    Parse a stanza as the component's stream does: its elements default to
    the jabber:component:accept namespace.
    """
    root = parseXml(
        ("<stream xmlns='jabber:component:accept'>%s</stream>" % (xml,)).encode("utf-8")
    )
    stanza = root.firstChildElement()
    stanza.parent = None
    return stanza


class RecordingManager(XMPPHandlerCollection):
    """
    Stands in for the stream manager: what handlers send is serialised and
    parsed back (as the peer would see it) into L{sent}.
    """

    def __init__(self):
        XMPPHandlerCollection.__init__(self)
        self.xmlstream = xmlstream.XmlStream(xmlstream.Authenticator())
        self.sent = []

    def send(self, obj):
        if not isinstance(obj, str):
            obj = obj.toXml()
        self.sent.append(parseXml(obj.encode("utf-8")))

    def connect(self):
        for handler in self:
            handler.makeConnection(self.xmlstream)
            handler.connectionInitialized()

    def disconnect(self, reason=None):
        for handler in self:
            handler.connectionLost(reason)

    def receive(self, xml):
        """
        Deliver a stanza (a string of XML) as the server would: parsed in
        the component stream's namespace.
        """
        self.xmlstream.dispatch(inStream(xml))

    def take(self):
        """
        Return what was sent since the last call, and forget it.
        """
        sent, self.sent = self.sent, []
        return sent


class Harness:
    """
    A component's handlers wired together on a L{RecordingManager}, with a
    L{task.Clock}.
    """

    def __init__(
        self,
        timeout=30,
        strategy=None,
        resources=None,
        store=None,
        queuePerSender=100,
        queueSize=10000,
        policy=None,
        **limits,
    ):
        self.clock = task.Clock()
        self.policy = policy or Policy(self.clock)
        self.store = store or Store(":memory:")
        self.stats = Stats()
        self.resources = ResourceSet(resources)
        self.pending = PendingTable(self.clock, timeout)
        self.manager = RecordingManager()
        self.presence = TargetPresence(COMPONENT, TARGET, self.resources, self.stats, self.clock)
        self.presence.setHandlerParent(self.manager)
        self.dispatcher = IQDispatcher(
            COMPONENT,
            TARGET,
            self.resources,
            strategy or RoundRobinStrategy(),
            self.pending,
            self.stats,
            self.policy,
            **limits,
        )
        self.dispatcher.setHandlerParent(self.manager)
        self.messages = MessageRouter(
            COMPONENT,
            TARGET,
            self.resources,
            self.store,
            self.stats,
            self.clock,
            self.policy,
            queuePerSender,
            queueSize,
        )
        self.messages.setHandlerParent(self.manager)
        self.servicePresence = ServicePresence(
            COMPONENT, TARGET, self.resources, self.store, self.stats, self.policy
        )
        self.servicePresence.setHandlerParent(self.manager)
        self.manager.connect()
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


def errorCondition(stanza):
    """
    Return C{(condition, type)} of an error stanza.
    """
    error = next(c for c in stanza.elements() if c.name == "error")
    condition = next(c.name for c in error.elements() if c.uri == NS_STANZAS)
    return condition, error.getAttribute("type")


def expectedType(condition):
    return STANZA_CONDITIONS[condition]["type"]
