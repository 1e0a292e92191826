# -*- test-case-name: tests.test_instances -*-
"""
Another clientproxy process connected as the same component, told loudly.

ejabberd accepts several connections for one component and spreads the
stanzas for it over all of them, replies and the target's presence
included. Two clientproxy processes that do not share state (see
docs/instances.md) then lose replies: one reaching the process that did
not send the request is dropped as C{unknown-reply}. Nothing in the
stanzas says why, so each process probes: it sends an IQ from
C{component/clientproxy-instance/<its id>} to
C{component/clientproxy-instance/probe}, which the server routes to one of
the component's connections. A process that receives a probe from another
id knows it is not alone: it logs an error (once per other process) and
counts it (C{clientproxy_other_instances_total}). Probes go every
L{FAST_INTERVAL} seconds for the first L{FAST_PROBES} after a connection is
made (a server that picks a connection at random then reaches the other
process with near certainty), then every L{INTERVAL} seconds. The probes
are answered, and never reach the dispatcher.

On Prosody, which keeps one connection per component, probes always come
back to their sender.
"""

import secrets

from twisted.logger import Logger
from wokkel.subprotocols import XMPPHandler

from clientproxy.xmpp.stanzas import REQUEST_TYPES
from clientproxy.xmpp.writer import escapeAttribute

NS_PING = "urn:xmpp:ping"

#: The resource under which instances address each other.
PREFIX = "clientproxy-instance/"

FAST_INTERVAL = 1.0
FAST_PROBES = 10
INTERVAL = 60.0


class InstanceProbe(XMPPHandler):
    """
    @ivar instanceID: this process's id, random.
    @ivar others: the ids of the other processes seen.
    """

    log = Logger()

    def __init__(self, component, stats, clock, enabled=True):
        XMPPHandler.__init__(self)
        self.component = component
        self.stats = stats
        self.clock = clock
        self.enabled = enabled
        self.instanceID = secrets.token_hex(6)
        self.others = set()
        self._prefix = "%s/%s" % (component, PREFIX)
        self._sent = 0
        self._timer = None

    def connectionInitialized(self):
        self.xmlstream.addRoute("iq", self._onIQ, priority=2)
        if self.enabled:
            self._sent = 0
            self._probe()

    def connectionLost(self, reason):
        XMPPHandler.connectionLost(self, reason)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _probe(self):
        self._sent += 1
        self.send(
            "<iq type='get' id='probe-%d' from='%s%s' to='%sprobe'><ping xmlns='%s'/></iq>"
            % (self._sent, self._prefix, self.instanceID, self._prefix, NS_PING)
        )
        delay = FAST_INTERVAL if self._sent < FAST_PROBES else INTERVAL
        self._timer = self.clock.callLater(delay, self._probe)

    def _onIQ(self, iq):
        # On the path of every IQ: one look-up, one comparison.
        recipient = iq.attributes.get("to")
        if recipient is None or not recipient.startswith(self._prefix):
            return
        iq.handled = True
        sender = iq.getAttribute("from", "")
        if not sender.startswith(self._prefix):
            self.stats.drop(iq, "probe-from-outsider")
            return
        if iq.getAttribute("type") not in REQUEST_TYPES:
            return
        other = sender[len(self._prefix) :]
        self.send(
            "<iq type='result' id='%s' from='%s' to='%s'/>"
            % (
                escapeAttribute(iq.getAttribute("id", "")),
                self._prefix + self.instanceID,
                escapeAttribute(sender),
            )
        )
        if other == self.instanceID:
            return
        if other not in self.others:
            self.stats.otherInstances += 1
            self.log.error(
                "Another clientproxy process (instance {other}) is connected as {jid}, and the "
                "server spreads the component's stanzas over both: replies reaching the process "
                "that did not send the request are lost. Run one process, or standbys sharing "
                "its data directory (docs/instances.md).",
                other=other,
                jid=self.component,
            )
        self.others.add(other)
