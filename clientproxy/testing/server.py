"""
What every throwaway XMPP server of the tests has in common: a temporary
directory, free loopback ports, a child process that is started, waited
for, and stopped (TERM, then KILL) so that nothing is left running.

Subclasses say how to configure and run their server:
L{clientproxy.testing.prosody.ThrowawayProsody},
L{clientproxy.testing.ejabberd.ThrowawayEjabberd}.
"""

import os
import shutil
import socket
import tempfile

from twisted.internet import defer, error, protocol, reactor as globalReactor, task


def freePort():
    """
    Return a TCP port that is free on 127.0.0.1 now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Exit(protocol.ProcessProtocol):
    """
    Tells when the server process ends, and keeps the end of what it wrote
    (so a server that will not start says why in the test's failure).
    """

    KEEP = 4096

    def __init__(self):
        self.ended = defer.Deferred()
        self.output = b""

    def outReceived(self, data):
        self.output = (self.output + data)[-self.KEEP :]

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)


def accepts(reactor, port):
    """
    Return a Deferred firing with whether 127.0.0.1:C{port} takes a
    connection now.
    """
    creator = protocol.ClientCreator(reactor, protocol.Protocol)
    d = creator.connectTCP("127.0.0.1", port, timeout=1)

    def connected(p):
        p.transport.loseConnection()
        return True

    def refused(failure):
        failure.trap(error.ConnectError)
        return False

    return d.addCallbacks(connected, refused)


class ThrowawayServer:
    """
    One server process in a temporary directory, with a client port and an
    external component port on 127.0.0.1.

    @ivar name: the server's name, for messages and test names.
    @ivar domain: the virtual host for accounts.
    @ivar components: component name to secret.
    @ivar c2sPort: the client port.
    @ivar componentPort: the external component port.
    @ivar componentTLSPort: a port taking the component protocol over
        direct TLS, when the server was given C{tls} (C{(certificate file,
        key file)}); else C{None}.
    """

    name = None
    #: The path of the server's own log file, where it keeps one.
    log = None

    def __init__(self, components, domain="localhost", reactor=globalReactor, tls=None):
        self.domain = domain
        self.components = dict(components)
        self.reactor = reactor
        self.directory = tempfile.mkdtemp(prefix="clientproxy-%s-" % (self.name,))
        self.c2sPort = freePort()
        self.componentPort = freePort()
        self.componentTLSPort = freePort() if tls is not None else None
        self._process = None
        self._exit = None

    @property
    def pid(self):
        """
        The server's process id while it runs.
        """
        return self._process.pid if self._process is not None else None

    def writeConfig(self, filename, template, componentTemplate, **values):
        """
        Write the server's configuration file C{filename} in its directory
        from C{template}, with one C{componentTemplate} per component
        (C{{name}}, C{{secret}}) in C{{components}}, the ports, domain and
        directory, and C{values}.

        @return: the file's path.
        """
        path = os.path.join(self.directory, filename)
        with open(path, "w") as f:
            f.write(
                template.format(
                    directory=self.directory,
                    domain=self.domain,
                    c2sPort=self.c2sPort,
                    componentPort=self.componentPort,
                    components="".join(
                        componentTemplate.format(name=name, secret=secret)
                        for name, secret in self.components.items()
                    ),
                    **values,
                )
            )
        return path

    def command(self):
        """
        Return C{(executable, argv, environment)} to run the server in the
        foreground.
        """
        raise NotImplementedError()

    def started(self):
        """
        Called once the ports take connections; may return a Deferred.
        """

    def register(self, user, password):
        """
        Create an account C{user@domain}.
        """
        raise NotImplementedError()

    @defer.inlineCallbacks
    def start(self, timeout=30):
        """
        Start the server and wait until both of its ports take connections;
        if that fails, the process is stopped before the failure is passed
        on.
        """
        executable, argv, env = self.command()
        self._exit = _Exit()
        self._process = self.reactor.spawnProcess(
            self._exit,
            shutil.which(executable) or executable,
            argv,
            env=env,
            path=self.directory,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        try:
            deadline = self.reactor.seconds() + timeout
            for port in self.ports():
                while not (yield accepts(self.reactor, port)):
                    if self._exit.ended.called:
                        raise RuntimeError(
                            "%s exited at start (%s); it wrote: %s%s"
                            % (
                                self.name,
                                self._exit.ended.result,
                                self._exit.output.decode("utf-8", "replace"),
                                self.startLog(),
                            )
                        )
                    if self.reactor.seconds() > deadline:
                        raise RuntimeError("%s did not open port %d in time" % (self.name, port))
                    yield task.deferLater(self.reactor, 0.05, lambda: None)
            yield self.started()
        except BaseException:
            # Never leave a half-started server behind.
            yield self.stop()
            raise

    def ports(self):
        """
        The ports the server must take connections on before it counts as
        started.
        """
        return (self.c2sPort, self.componentPort)

    def startLog(self):
        """
        The end of the server's own log, if it keeps one (for a failure to
        start: the directory is gone once the test cleans up).
        """
        if self.log is None or not os.path.exists(self.log):
            return ""
        with open(self.log, "rb") as f:
            return "; its log ends: " + f.read()[-4096:].decode("utf-8", "replace")

    @defer.inlineCallbacks
    def stop(self, timeout=15):
        """
        Stop the server (SIGTERM, then SIGKILL after C{timeout} seconds) and
        wait until it has exited. The data stays until L{cleanUp}, so the
        server can be started again as it was.
        """
        process, self._process = self._process, None
        if process is None or self._exit.ended.called:
            return
        process.signalProcess("TERM")
        killer = self.reactor.callLater(timeout, self._kill, process)
        yield self._exit.ended
        if killer.active():
            killer.cancel()

    @staticmethod
    def _kill(process):
        try:
            process.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    def cleanUp(self):
        """
        Remove the server's directory.
        """
        shutil.rmtree(self.directory, ignore_errors=True)
