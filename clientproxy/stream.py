# -*- test-case-name: tests.test_stream -*-
"""
The component's XML stream: Twisted's, with two changes that every stanza
passes through.

 - Elements are written by L{clientproxy.xml.toXml}, never by domish's
   C{toXml}: one writer for everything the component sends (forwarded
   requests, replies, retries, errors, fan-out, mirrors, queued messages,
   presence), correct for every input (see L{clientproxy.xml}).
 - The time of the last bytes read is kept in L{lastReceived}, so
   L{clientproxy.keepalive.KeepAlive} can tell a quiet link from a dead
   one at the cost of one clock read per read from the socket.
"""

from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from clientproxy.xml import toXml


class ProxyXmlStream(xmlstream.XmlStream):
    """
    @ivar clock: the L{IReactorTime} that stamps L{lastReceived}; the
        factory's clock when built by L{clientproxy.connection.ComponentFactory}.
    @ivar lastReceived: when data last came from the server, by L{clock}.
    """

    def __init__(self, authenticator, clock=None):
        xmlstream.XmlStream.__init__(self, authenticator)
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.lastReceived = clock.seconds()

    def dataReceived(self, data):
        self.lastReceived = self.clock.seconds()
        xmlstream.XmlStream.dataReceived(self, data)

    def send(self, obj):
        if obj.__class__ is not str and domish.IElement.providedBy(obj):
            obj = toXml(obj)
        xmlstream.XmlStream.send(self, obj)
