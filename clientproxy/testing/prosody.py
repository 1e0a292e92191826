"""
A throwaway Prosody (the Debian package) on loopback, for the integration
tests, the demo and the benchmarks.

It runs as an ordinary process from a temporary directory with its own
configuration, data and log, on free loopback ports, and is stopped (and the
directory removed) by L{ThrowawayProsody.stop}. It can be stopped and
started again on the same ports and data, to test a server restart.
"""

import os
import shutil
import socket
import subprocess
import tempfile

from twisted.internet import defer, error, protocol, reactor as globalReactor, task

PROSODY = "prosody"
PROSODYCTL = "prosodyctl"

CONFIG = """\
-- Written by clientproxy.testing.prosody: a throwaway test server.
run_as_root = true
daemonize = false
pidfile = "{directory}/prosody.pid"
data_path = "{directory}/data"
certificates = "{directory}/certs"
log = {{ {loglevel} = "{directory}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2sPort} }}
component_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {componentPort} }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "carbons"; "ping"; }}
modules_disabled = {{ "s2s" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
VirtualHost "{domain}"
{components}
"""

COMPONENT = """\
Component "{name}"
    component_secret = "{secret}"
"""


def freePort():
    """
    Return a TCP port that is free on 127.0.0.1 now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Exit(protocol.ProcessProtocol):
    def __init__(self):
        self.ended = defer.Deferred()

    def processEnded(self, reason):
        self.ended.callback(reason.value)


class ThrowawayProsody:
    """
    One Prosody server in a temporary directory.

    @ivar domain: the virtual host for accounts, C{localhost}.
    @ivar components: component name to secret.
    @ivar c2sPort: the client port on 127.0.0.1.
    @ivar componentPort: the external component port on 127.0.0.1.
    """

    def __init__(self, components, domain="localhost", reactor=globalReactor, loglevel="info"):
        self.domain = domain
        self.components = dict(components)
        self.reactor = reactor
        self.directory = tempfile.mkdtemp(prefix="clientproxy-prosody-")
        self.c2sPort = freePort()
        self.componentPort = freePort()
        self.config = os.path.join(self.directory, "prosody.cfg.lua")
        for sub in ("data", "certs"):
            os.mkdir(os.path.join(self.directory, sub))
        with open(self.config, "w") as f:
            f.write(
                CONFIG.format(
                    directory=self.directory,
                    domain=domain,
                    c2sPort=self.c2sPort,
                    componentPort=self.componentPort,
                    loglevel=loglevel,
                    components="".join(
                        COMPONENT.format(name=name, secret=secret)
                        for name, secret in self.components.items()
                    ),
                )
            )
        self._process = None

    @property
    def pid(self):
        """
        The server's process id while it runs.
        """
        return self._process.pid if self._process is not None else None

    @property
    def log(self):
        """
        The path of the server's log file.
        """
        return os.path.join(self.directory, "prosody.log")

    def register(self, user, password):
        """
        Create an account on the virtual host (synchronous; it takes a few
        milliseconds).
        """
        subprocess.run(
            [PROSODYCTL, "--config", self.config, "register", user, self.domain, password],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )

    @defer.inlineCallbacks
    def start(self, timeout=15):
        """
        Start the server and wait until both of its ports take connections.
        """
        exit = _Exit()
        self._process = self.reactor.spawnProcess(
            exit,
            shutil.which(PROSODY) or PROSODY,
            [PROSODY, "--config", self.config, "-F"],
            env=dict(os.environ),
            path=self.directory,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        self._exit = exit
        deadline = self.reactor.seconds() + timeout
        for port in (self.c2sPort, self.componentPort):
            while True:
                if exit.ended.called:
                    raise RuntimeError("prosody exited at start; see %s" % (self.log,))
                if (yield self._accepts(port)):
                    break
                if self.reactor.seconds() > deadline:
                    raise RuntimeError("prosody did not open port %d in time" % (port,))
                yield task.deferLater(self.reactor, 0.05, lambda: None)

    def _accepts(self, port):
        creator = protocol.ClientCreator(self.reactor, protocol.Protocol)
        d = creator.connectTCP("127.0.0.1", port, timeout=1)

        def connected(p):
            p.transport.loseConnection()
            return True

        d.addCallbacks(connected, lambda f: f.trap(error.ConnectError) and False)
        return d

    @defer.inlineCallbacks
    def stop(self, timeout=10):
        """
        Stop the server (SIGTERM, then SIGKILL after C{timeout} seconds) and
        wait until it has exited. The data stays until L{cleanUp}.
        """
        process, self._process = self._process, None
        if process is None or self._exit.ended.called:
            return
        process.signalProcess("TERM")
        killer = self.reactor.callLater(timeout, self._kill, process)
        yield self._exit.ended
        if killer.active():
            killer.cancel()

    def _kill(self, process):
        try:
            process.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    def cleanUp(self):
        """
        Remove the server's directory.
        """
        shutil.rmtree(self.directory, ignore_errors=True)

    @defer.inlineCallbacks
    def stopAndCleanUp(self):
        yield self.stop()
        self.cleanUp()
