"""
End-to-end tests of direct TLS to the server, on each real server: ejabberd's
ejabberd_service listener with C{tls: true}, and Prosody's multiplex_ssl
port (mod_net_multiplex hands a jabber:component:accept stream on it to
mod_component: Prosody 0.12 has no TLS component port of its own). A
throwaway CA made by the test signs the server's certificate.
"""

import os

from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport

from clientproxy.xmpp.connection import TLSSettings
from clientproxy.testing.ca import ThrowawayCA
from tests.integration import COMPONENT, onEveryServer, withTimeout


class TLSTests:
    def serverArguments(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.caFile = os.path.join(directory, "ca.pem")
        ca = ThrowawayCA(self.caFile)
        certificate = os.path.join(directory, "server.crt")
        key = os.path.join(directory, "server.key")
        ca.issue(["localhost"], certificate, key)
        return {"tls": (certificate, key)}

    @defer.inlineCallbacks
    def test_requestsOverTLS(self):
        """
        With the server's certificate valid for the name asked, the link is
        made and requests are served.
        """
        yield self.connect("svc", "a")
        proxy = yield self.startProxy(
            resources=1,
            port=self.server.componentTLSPort,
            tls=TLSSettings("localhost", self.caFile),
        )
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(alice.request(COMPONENT))
        self.assertEqual(reply["type"], "result")
        self.assertTrue(ISSLTransport.providedBy(proxy.xmlstream.transport))

    @defer.inlineCallbacks
    def test_certificateForAnotherNameRefused(self):
        """
        A certificate that is not valid for the name asked is refused, with
        a clear log line (rate-limited: one for the first two attempts),
        each attempt counted, and the component keeps trying.
        """
        events = self.logEvents()
        proxy = yield self.startProxy(
            port=self.server.componentTLSPort, tls=TLSSettings("other.example", self.caFile)
        )
        yield self.waitUntil(
            lambda: proxy.stats.connectionFailures["tls"] >= 2, "two refused attempts"
        )
        self.assertFalse(proxy.authenticated)
        [line] = [e for e in events if e.get("kind") == "tls"]
        self.assertEqual((line["name"], line["log_level"].name), ("other.example", "error"))
        self.assertIn("certificate is not accepted for other.example", line["why"])
        self.flushLoggedErrors()


globals().update(onEveryServer(TLSTests))
