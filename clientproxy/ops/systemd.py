# -*- test-case-name: tests.test_systemd -*-
"""
systemd's notification protocol (C{Type=notify}): C{READY=1} once every
proxy has completed its first handshake with the server or is standing by
for another process, C{STOPPING=1}
when the service stops, and C{WATCHDOG=1} every half C{WatchdogSec} while
the reactor runs. Inert without C{$NOTIFY_SOCKET}.

The protocol is one datagram per message on the Unix socket systemd names
(a name starting with C{@} is in the abstract namespace): small enough to
speak directly, without a dependency.
"""

import os
import socket

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger
from twisted.words.protocols.jabber import xmlstream


def notifySocket(environ=os.environ):
    """
    The address of systemd's notification socket, or C{None}.
    """
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        address = "\0" + address[1:]
    return address


def watchdogInterval(environ=os.environ):
    """
    Seconds between two watchdog pings (half of C{WatchdogSec}), or
    C{None} when the watchdog is off or meant for another process.
    """
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


class SystemdNotifier(service.Service):
    """
    @ivar proxies: the L{clientproxy.xmpp.connection.ProxyComponent}s to wait
        for before C{READY=1}.
    """

    log = Logger()

    def __init__(self, proxies, clock=None, environ=os.environ):
        if clock is None:
            from twisted.internet import reactor as clock
        self.proxies = proxies
        self.clock = clock
        self.address = notifySocket(environ)
        self.interval = watchdogInterval(environ)
        self._ready = set()
        self._standingBy = set()
        self._sentReady = False
        self._watchdog = None
        for proxy in proxies:
            proxy.factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._onAuthenticated)

    def notify(self, message):
        if self.address is None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.sendto(message.encode("utf-8"), self.address)
        except OSError as e:
            self.log.warn("Cannot notify systemd ({why})", why=e)
        finally:
            sock.close()

    def startService(self):
        service.Service.startService(self)
        # Started after the proxies: those that could not take their
        # store's lock are standing by; a lease in Redis says so when
        # Redis has answered.
        for proxy in self.proxies:
            standby = proxy.standby
            if standby is None:
                continue
            observe = getattr(standby, "whenStandingBy", None)
            if observe is not None:
                observe(lambda factory=proxy.factory: self._onStandingBy(factory))
            elif not standby.held:
                self._standingBy.add(proxy.factory)
        self._check()
        if self.address is not None and self.interval:
            self._watchdog = task.LoopingCall(self.notify, "WATCHDOG=1")
            self._watchdog.clock = self.clock
            self._watchdog.start(self.interval)

    def stopService(self):
        self.notify("STOPPING=1")
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        return service.Service.stopService(self)

    def _onStandingBy(self, factory):
        if factory not in self._ready:
            self._standingBy.add(factory)
            self._check()

    def _onAuthenticated(self, xs):
        self._ready.add(xs.factory)
        self._standingBy.discard(xs.factory)
        self._check()

    def _check(self):
        """
        C{READY=1} once every proxy is connected or standing by for another
        process that holds its store (see L{clientproxy.ops.standby}): a
        standby has started as it should, and must not be failed by systemd
        for never connecting. The status says which is which.
        """
        if self._sentReady or len(self._ready | self._standingBy) < len(self.proxies):
            return
        self._sentReady = True
        status = "connected: %s" % (
            ", ".join(p.jid for p in self.proxies if p.factory in self._ready),
        )
        standing = [p.jid for p in self.proxies if p.factory in self._standingBy]
        if standing:
            status += "; standing by: %s" % (", ".join(standing),)
        self.notify("READY=1\nSTATUS=" + status)
