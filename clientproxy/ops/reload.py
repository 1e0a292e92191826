# -*- test-case-name: tests.test_config -*-
"""
Reloading the configuration file on SIGHUP, without dropping the connection
or a request in flight.

The file is read again with the same command line (so it is checked exactly
as at start). For each running proxy, the settings that can change live are
applied: access lists, rate and size limits, in-flight and subscriber
bounds, the queue bounds, the resource filter, the strategy and the
dispatch options, the timeout of new requests, the hold (for the requests
waiting too) and the idempotent namespaces, the shutdown grace and the
keepalive. What cannot (the component's address, the server, the secret,
the data directory, TLS to the server, proxies added or removed) is named in the log as
needing a restart. A file that does not load leaves the running
configuration as it is, and the log says why.
"""

import signal

from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage

from clientproxy.ops import settings

#: Settings applied to a running proxy, and settings that need a restart.
LIVE = settings.named(settings.LIVE)
RESTART = settings.named(settings.RESTART)


def reconfigure(proxy, old, new):
    """
    Apply to C{proxy} what changed from options C{old} to C{new}
    (L{clientproxy.xmpp.connection.ProxyComponent.reconfigure}).

    @return: C{(applied, needing a restart)}, lists of option names.
    """
    changed = [key for key in LIVE if old[key] != new[key]]
    restart = [key for key in RESTART if old[key] != new[key]]
    proxy.reconfigure(new, changed)
    return changed, restart


class ReloadService(service.Service):
    """
    Reads the configuration again on SIGHUP and applies it.

    @ivar proxies: C{(proxy, the options it runs with)} pairs.
    @ivar config: the process's parsed options; the file is read again by
        a new instance of their class, with the same arguments (so this
        module needs no import of L{clientproxy.tap}).
    """

    log = Logger()

    def __init__(self, config, proxies, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.proxies = proxies
        self.reactor = reactor
        self._previous = None

    def startService(self):
        service.Service.startService(self)
        self._previous = signal.signal(signal.SIGHUP, self._onSignal)

    def stopService(self):
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        return service.Service.stopService(self)

    def _onSignal(self, number, frame):
        self.reactor.callFromThread(self.reload)

    def reload(self):
        """
        Read the file again and apply what can be applied.
        """
        path = self.config["config"]
        fresh = self.config.__class__()
        try:
            fresh.parseOptions(self.config.arguments)
        except usage.UsageError as e:
            self.log.error(
                "Reload of {path} not applied, the running configuration stays: {why}",
                path=path,
                why=str(e),
            )
            return
        byJID = {options["jid"]: options for options in fresh["proxies"]}
        running = []
        for proxy, old in self.proxies:
            new = byJID.pop(proxy.jid, None)
            if new is None:
                self.log.warn(
                    "Reload of {path}: proxy {jid} is no longer in the file; it keeps "
                    "running until a restart",
                    path=path,
                    jid=proxy.jid,
                )
                running.append((proxy, old))
                continue
            applied, restart = reconfigure(proxy, old, new)
            self.log.info(
                "Reload of {path} for {jid}: applied {applied}; needing a restart: {restart}",
                path=path,
                jid=proxy.jid,
                applied=", ".join(applied) or "nothing changed",
                restart=", ".join(restart) or "nothing",
            )
            running.append((proxy, new))
        for jid in byJID:
            self.log.warn("Reload of {path}: new proxy {jid} needs a restart", path=path, jid=jid)
        self.proxies = running
