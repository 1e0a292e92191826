"""
clientproxy run as its own process, `twistd -n clientproxy ...`, for the demo
and the benchmarks: it is started the way an operator starts it, and its
log lines tell when it is connected and which resources it knows.
"""

import os
import shutil
import sys

from twisted.internet import defer, protocol, reactor as globalReactor


def twistdPath(python=None):
    """
    The twistd script of the Python environment of C{python} (an
    interpreter's path; this one's by default).
    """
    beside = os.path.join(os.path.dirname(python or sys.executable), "twistd")
    return beside if os.path.exists(beside) else shutil.which("twistd")


class ComponentProcess(protocol.ProcessProtocol):
    """
    A `twistd -n clientproxy` process.

    @ivar pid: the process id, once started.
    @ivar echo: called with each of the component's own log lines (without
        the time stamp), or C{None} for silence.
    @ivar python: the interpreter whose environment's twistd runs it, or
        C{None} for this one's (the benchmarks may run it on another, PyPy).
    """

    def __init__(self, echo=None, reactor=globalReactor, python=None):
        self.echo = echo
        self.python = python
        self.reactor = reactor
        self.ended = defer.Deferred()
        self.pid = None
        self._process = None
        self._waiting = []
        self._buffer = b""

    def start(self, arguments, directory, env=None):
        """
        Start `twistd -n clientproxy ARGUMENTS` in C{directory}, with
        C{env} (this process's environment by default).
        """
        twistd = twistdPath(self.python)
        self.run([twistd, "-n", "--pidfile=", "clientproxy"] + list(arguments), directory, env)

    def run(self, command, directory, env=None):
        """
        Start C{command} (a twistd command line, the program first) in
        C{directory}, with C{env} (this process's environment by default).
        """
        self._process = self.reactor.spawnProcess(
            self,
            command[0],
            command,
            env=dict(os.environ) if env is None else env,
            path=directory,
        )
        self.pid = self._process.pid

    def waitForLine(self, predicate, timeout=15):
        """
        Return a Deferred that fires with the next log line for which
        C{predicate(line)} is true; it fails after C{timeout} seconds.
        """
        d = defer.Deferred()
        self._waiting.append((predicate, d))
        return d.addTimeout(timeout, self.reactor)

    def waitForResources(self, count, timeout=15):
        """
        Wait until the component's log says it knows C{count} resources.
        """
        marks = ("; %d in all" % count, "; %d left" % count)
        return self.waitForLine(lambda line: any(m in line for m in marks), timeout)

    def outReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if self.echo is not None and "[clientproxy." in line:
                self.echo(line.split("] ", 1)[-1])
            for entry in list(self._waiting):
                predicate, d = entry
                if predicate(line):
                    self._waiting.remove(entry)
                    d.callback(line)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(None)

    def signal(self, name):
        """
        Send the process signal C{name} (C{"HUP"}, say).
        """
        self._process.signalProcess(name)

    def stop(self):
        """
        SIGTERM, and wait until the process has exited.
        """
        if self._process is None:
            return defer.succeed(None)
        if not self.ended.called:
            self._process.signalProcess("TERM")
        return self.ended
