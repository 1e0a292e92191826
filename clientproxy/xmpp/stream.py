# -*- test-case-name: tests.test_stream -*-
"""
The component's XML stream: Twisted's, with four changes that every stanza
passes through.

 - It is read by L{clientproxy.xmpp.parser.StreamParser}: the same elements as
   domish's parser builds, and each stanza keeps the bytes its content came
   in as, so a forwarded payload is written as it came
   (L{clientproxy.xmpp.writer.stanzaBytes}), not rebuilt and serialised again.
 - Stanzas go to routes looked up by name (L{ProxyXmlStream.addRoute}):
   one dictionary look-up per stanza instead of matching every XPath
   observer against it. A stanza no route takes (see
   L{clientproxy.xmpp.stanzas.claim}), and every other element (the handshake,
   stream errors), still goes to the XPath observers, so Twisted's own
   stream machinery works as it always did.
 - Elements are written by L{clientproxy.xmpp.writer.toXml}, never by domish's
   C{toXml}: one writer for everything the component sends (forwarded
   requests, replies, retries, errors, fan-out, mirrors, queued messages,
   presence), correct for every input (see L{clientproxy.xmpp.writer}).
 - The time of the last bytes read is kept in L{lastReceived}, so
   L{clientproxy.handlers.keepalive.KeepAlive} can tell a quiet link from a dead
   one at the cost of one clock read per read from the socket.
"""

from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from clientproxy.xmpp.parser import StreamParser
from clientproxy.xmpp.writer import NS_COMPONENT, toXml


class ProxyXmlStream(xmlstream.XmlStream):
    """
    @ivar clock: the L{IReactorTime} that stamps L{lastReceived}; the
        factory's clock when built by L{clientproxy.xmpp.connection.ComponentFactory}.
    @ivar lastReceived: when data last came from the server, by L{clock}.
    @ivar stats: the L{clientproxy.ops.stats.Stats} stanzas dropped by the
        parser are counted in, or C{None}.
    @ivar defaultFrom: once the stream is authenticated, the component's
        JID, which every element sent without a C{from} gets (as wokkel's
        C{Component} does).
    """

    defaultFrom = None

    def __init__(self, authenticator, clock=None, stats=None):
        xmlstream.XmlStream.__init__(self, authenticator)
        self.stats = stats
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.lastReceived = clock.seconds()
        # Stanza name -> [(priority, handler)], highest priority first, and
        # the handlers alone, in that order (what a stanza is given to).
        self._routes = {}
        self._handlers = {}

    def _initializeStream(self):
        parser = self.stream = StreamParser()
        parser.DocumentStartEvent = self.onDocumentStart
        parser.ElementEvent = self.onElement
        parser.DocumentEndEvent = self.onDocumentEnd
        parser.StanzaDropped = self.onStanzaDropped

    def onStanzaDropped(self, root, reason):
        """
        The parser dropped a stanza over its bounds
        (L{clientproxy.xmpp.parser.MAX_STANZA_BYTES},
        L{clientproxy.xmpp.parser.MAX_STANZA_ELEMENTS}): count it and log it
        (the server bounds what it routes far lower, so this is rare).
        """
        if self.stats is not None:
            self.stats.drop(root, reason)

    def addRoute(self, name, handler, priority=0):
        """
        Give every stanza called C{name} (C{iq}, C{message}, C{presence})
        to C{handler}, after the handlers of a higher C{priority} and those
        of the same priority added before it. A handler that takes a stanza
        says so with L{clientproxy.xmpp.stanzas.claim} (or by setting its
        C{handled}); the later ones see that.
        """
        route = self._routes.setdefault(name, [])
        route.append((priority, handler))
        route.sort(key=lambda entry: -entry[0])
        self._handlers[name] = tuple(handler for _, handler in route)

    def removeRoute(self, name, handler):
        """
        Stop giving stanzas called C{name} to C{handler}.
        """
        route = [entry for entry in self._routes.get(name, ()) if entry[1] != handler]
        self._routes[name] = route
        self._handlers[name] = tuple(handler for _, handler in route)

    def onElement(self, element):
        if element.uri == NS_COMPONENT:
            handlers = self._handlers.get(element.name)
            if handlers:
                for handler in handlers:
                    handler(element)
                if element.handled:
                    return
        self.dispatch(element)

    def dataReceived(self, data):
        self.lastReceived = self.clock.seconds()
        xmlstream.XmlStream.dataReceived(self, data)

    def send(self, obj):
        kind = obj.__class__
        if kind is bytes:
            pass
        elif kind is str:
            obj = obj.encode("utf-8")
        elif domish.IElement.providedBy(obj):
            if self.defaultFrom is not None and not obj.getAttribute("from"):
                obj["from"] = self.defaultFrom
            obj = toXml(obj).encode("utf-8")
        if self.rawDataOutFn:
            self.rawDataOutFn(obj)
        self.transport.write(obj)
