"""
Tests for L{clientproxy.ops.logs} and the log lines operators rely on:
levels, the JSON format, journald priorities, where twistd's options send
the log, and the rate-limited line of a server that cannot be reached.
"""

import io
import json
import os
import signal
import sys

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import (
    ConnectionDone,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
)
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, Logger, LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.trial import unittest

from clientproxy.assembly import makeProxy
from clientproxy.ops import logs
from clientproxy.ops.stats import CONNECTING, DOWN, HANDSHAKE, UP
from clientproxy.ops.throttle import INTERVAL
from clientproxy.tap import Options, ProcessService, makeProcessService
from clientproxy.testing.server import freePort
from clientproxy.testing.twistd import ComponentProcess

HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='proxy.example.org' id='s1'>"
)


def event(level=LogLevel.info, format="Hello {name}", **fields):
    return dict(
        log_level=level,
        log_format=format,
        log_namespace="clientproxy.test",
        log_time=1700000000.0,
        **dict({"name": "world"}, **fields),
    )


class FormatTests(unittest.TestCase):
    """
    The text and JSON formats, for a file and for the journal.
    """

    def test_text(self):
        """
        The text format is twistd's: time, system, text.
        """
        line = logs.textFormatter()(event())
        self.assertTrue(line.endswith(" [clientproxy.test#info] Hello world\n"), line)
        self.assertTrue(line[0].isdigit())

    def test_textForTheJournal(self):
        """
        For the journal, each line starts with its syslog priority (so
        C{journalctl -p} filters), has no time stamp (the journal has its
        own), and every line of a traceback carries the priority too.
        """
        self.assertEqual(
            logs.textFormatter(journal=True)(event(LogLevel.warn)),
            "<4>[clientproxy.test#warn] Hello world\n",
        )
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        lines = logs.textFormatter(journal=True)(
            event(LogLevel.critical, log_failure=failure)
        ).splitlines()
        self.assertGreater(len(lines), 2)
        self.assertEqual([line[:3] for line in lines], ["<2>"] * len(lines))

    def test_json(self):
        """
        The JSON format is one object a line: twisted.logger's fields (the
        format, namespace, time and the event's own fields), the level by
        name and the text.
        """
        line = logs.jsonFormatter()(event(LogLevel.error, sender="alice@example.org"))
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertEqual(record["log_level"], "error")
        self.assertEqual(record["log_text"], "Hello world")
        self.assertEqual(record["log_namespace"], "clientproxy.test")
        self.assertEqual(record["log_format"], "Hello {name}")
        self.assertEqual(record["log_time"], 1700000000.0)
        self.assertEqual(record["sender"], "alice@example.org")

    def test_jsonForTheJournal(self):
        """
        For the journal, a JSON line starts with its priority too.
        """
        line = logs.jsonFormatter(journal=True)(event(LogLevel.debug))
        self.assertTrue(line.startswith("<7>{"))
        self.assertEqual(json.loads(line[3:])["log_level"], "debug")

    def test_jsonOfAnyValue(self):
        """
        A field that is no JSON type (an object, bytes) does not lose the
        line.
        """
        line = logs.jsonFormatter()(event(format="{thing}", thing=object(), raw=b"\xff"))
        self.assertIn("object object", json.loads(line)["log_text"])


class ObserverTests(unittest.TestCase):
    """
    The observer: levels, and the journal recognised by its stream.
    """

    def lines(self, level, format="text"):
        out = io.StringIO()
        observer = logs.observer(out, level, format, environ={})
        log = Logger(observer=observer, namespace="clientproxy.test")
        log.debug("a debug line")
        log.info("an info line")
        log.warn("a warning")
        return out.getvalue()

    def test_infoByDefault(self):
        """
        At the default level, info, debug lines are not written; info and
        above are.
        """
        text = self.lines("info")
        self.assertNotIn("a debug line", text)
        self.assertIn("an info line", text)
        self.assertIn("a warning", text)

    def test_levels(self):
        """
        At debug every line is written; at warn only warnings and above.
        """
        self.assertIn("a debug line", self.lines("debug"))
        text = self.lines("warn", "json")
        self.assertEqual(
            [json.loads(line)["log_text"] for line in text.splitlines()], ["a warning"]
        )

    def test_journalStream(self):
        """
        A stream is the journal when C{$JOURNAL_STREAM} names its device and
        inode, as systemd sets it; not when the variable is absent or names
        another stream (a child whose output goes elsewhere inherits it).
        """
        path = self.mktemp()
        with open(path, "w") as stream:
            status = os.fstat(stream.fileno())
            mine = "%d:%d" % (status.st_dev, status.st_ino)
            self.assertTrue(logs.isJournal(stream, {"JOURNAL_STREAM": mine}))
            self.assertFalse(logs.isJournal(stream, {"JOURNAL_STREAM": "1:2"}))
            self.assertFalse(logs.isJournal(stream, {}))
            self.assertFalse(logs.isJournal(io.StringIO(), {"JOURNAL_STREAM": mine}))
            observer = logs.observer(stream, environ={"JOURNAL_STREAM": mine})
            Logger(observer=observer, namespace="x").warn("to the journal")
        with open(path) as f:
            self.assertEqual(f.read(), "<4>[x#warn] to the journal\n")


class TwistdTests(unittest.TestCase):
    """
    Where twistd's options send the log, and the observer handed to twistd.
    """

    def test_standardOutput(self):
        """
        With C{--logfile=-}, or C{--nodaemon} without a log file, the log
        goes to standard output, as twistd's own would.
        """
        self.assertIs(logs.twistdStream({"logfile": "-", "nodaemon": True}), sys.stdout)
        self.assertIs(logs.twistdStream({"logfile": None, "nodaemon": True}), sys.stdout)
        self.assertIs(logs.twistdStream(None), sys.stdout)

    def test_syslogAndLoggerKept(self):
        """
        With twistd's C{--syslog} or C{--logger}, twistd's own observer is
        kept.
        """
        self.assertIsNone(logs.twistdStream({"syslog": True}))
        self.assertIsNone(logs.twistdStream({"logger": object()}))

    def test_logFile(self):
        """
        A daemon logs to C{--logfile} (C{twistd.log} by default), a file
        rotated on SIGUSR1 as twistd does.
        """
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.getsignal(signal.SIGUSR1))
        path = os.path.abspath(self.mktemp())
        stream = logs.twistdStream({"logfile": path, "nodaemon": False})
        self.addCleanup(stream.close)
        self.assertIsInstance(stream, LogFile)
        self.assertEqual(stream.path, path)
        self.assertIsNot(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)

    def test_optionsChecked(self):
        """
        C{--log-level} and C{--log-format} take only their known values; the
        defaults are info and text.
        """
        self.patch(os, "environ", {"STATE_DIRECTORY": "."})
        required = ["--jid", "p.example.org", "--target", "s@example.org", "--secret", "s"]
        options = Options()
        options.parseOptions(required)
        self.assertEqual((options["log-level"], options["log-format"]), ("info", "text"))
        for bad in (["--log-level", "verbose"], ["--log-format", "xml"]):
            error = self.assertRaises(Exception, Options().parseOptions, required + bad)
            self.assertIn(bad[0], str(error))

    def test_observerSetOnTheApplication(self):
        """
        The service twistd runs sets its observer on twistd's application,
        which twistd then logs with; the proxy is inside it.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        options = Options()
        options.parseOptions(
            ["--jid", "p.example.org", "--target", "s@example.org", "--secret", "s"]
            + ["--data-dir", directory, "--log-format", "json"]
        )
        top = makeProcessService(options)
        [proxy] = list(top)
        self.addCleanup(proxy.store.close)
        application = service.Application("clientproxy")
        top.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), top.observer)
        self.assertIsInstance(top, ProcessService)


class UnreachableTests(unittest.TestCase):
    """
    A server that cannot be reached is said, why, at once and then at most
    once an interval; every attempt and failure is counted, and the link's
    state followed.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.proxy = makeProxy(
            "proxy.example.org", "svc@example.org", "hunter2", port=5347, reactor=self.reactor
        )
        self.proxy.startService()
        self.addCleanup(self.proxy.stopService)
        [(_, _, self.factory, _, _)] = self.reactor.tcpClients
        self.connector = self.proxy._connection
        self.connector.connect = lambda: None

    def failAttempt(self, exception):
        self.factory.startedConnecting(self.connector)
        self.factory.clientConnectionFailed(self.connector, Failure(exception))

    def test_refusedSaidAtOnceThenRateLimited(self):
        """
        The first refused attempt is logged at once, as an error saying the
        connection was refused; the next ones within the interval are
        counted but not logged; the first after it says how many were not.
        """
        with capturedLogs() as events:
            for _ in range(3):
                self.failAttempt(ConnectionRefusedError())
                self.reactor.advance(1)
            self.reactor.advance(INTERVAL)
            self.failAttempt(ConnectionRefusedError())
        lines = [e for e in events if e.get("kind") == "refused"]
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[0]["log_level"], LogLevel.error)
        self.assertIn("connection refused", lines[0]["why"])
        self.assertEqual((lines[0]["host"], lines[0]["port"]), ("127.0.0.1", 5347))
        self.assertEqual((lines[0]["unlogged"], lines[1]["unlogged"]), (0, 2))
        stats = self.proxy.stats
        # The first attempt, at start, and the four that failed.
        self.assertEqual((stats.connectionAttempts, stats.connectionFailures["refused"]), (5, 4))
        self.assertEqual(stats.link, DOWN)

    def test_why(self):
        """
        A timeout, a name that does not resolve and a connection closed
        before the handshake are each named as such.
        """
        with capturedLogs() as events:
            for exception in (TCPTimedOutError(), DNSLookupError()):
                self.failAttempt(exception)
                self.reactor.advance(INTERVAL + 1)
            xs = self.factory.buildProtocol(None)
            xs.makeConnection(StringTransport())
            self.reactor.advance(INTERVAL + 1)
            xs.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([e["kind"] for e in events if "kind" in e], ["timeout", "dns", "closed"])
        self.assertEqual(
            {k: v for k, v in self.proxy.stats.connectionFailures.items() if v},
            {"timeout": 1, "dns": 1, "closed": 1},
        )

    def test_linkStates(self):
        """
        The link is connecting while TCP connects, handshake once connected,
        up once the handshake is done, down once lost.
        """
        stats = self.proxy.stats
        self.assertEqual(stats.link, CONNECTING)
        xs = self.factory.buildProtocol(None)
        xs.makeConnection(StringTransport())
        self.assertEqual(stats.link, HANDSHAKE)
        xs.dataReceived(HEADER + b"<handshake/>")
        self.assertEqual(stats.link, UP)
        xs.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(stats.link, DOWN)
        self.assertEqual(sum(stats.connectionFailures.values()), 0)


class UnreachableProcessTests(unittest.TestCase):
    """
    The process as an operator runs it, against a port where nothing
    listens.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_closedPortSaidInJSON(self):
        """
        C{twistd clientproxy --log-format json} against a closed port on
        127.0.0.1 writes, within seconds, one JSON line saying the connection
        was refused; every line is one JSON object.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        process = ComponentProcess()
        self.addCleanup(process.stop)
        refused = process.waitForLine(lambda line: "connection refused" in line, timeout=15)
        process.start(
            ["--jid", "proxy.localhost", "--target", "svc@localhost", "--secret", "s"]
            + ["--port", str(freePort()), "--data-dir", directory, "--log-format", "json"],
            directory,
        )
        line = yield refused
        record = json.loads(line)
        self.assertEqual((record["log_level"], record["kind"]), ("error", "refused"))
        self.assertIn("Cannot connect to the server at 127.0.0.1:", record["log_text"])
        yield process.stop()
