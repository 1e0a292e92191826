"""
Base for integration tests: a real server (Debian's Prosody or ejabberd) on
loopback, real client connections, and the component under test in this
process.

Every test gets its own throwaway server on free ports, and everything it
starts (server process, component, clients) is stopped in its clean-up.
Waits are on events or conditions, each bounded. L{onEveryServer} makes
one test case per server from each set of tests, so that the same tests run
against both servers.
"""

import os
import signal

from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clientproxy.assembly import makeProxy
from clientproxy.testing.client import Client
from clientproxy.testing.ejabberd import ThrowawayEjabberd
from clientproxy.testing.prosody import ThrowawayProsody
from clientproxy.testing.twistd import ComponentProcess
from tests.helpers import waitFor

DOMAIN = "localhost"
COMPONENT = "proxy.localhost"
TARGET = "svc@localhost"
SECRET = "integration-secret"
PASSWORD = "pw"
USERS = ("svc", "alice", "bob", "mallory")

#: Seconds any single wait in a test may take.
WAIT = 15


def withTimeout(d, seconds=WAIT, what="an event"):
    """
    Fail C{d} with a clear message if it has not fired within C{seconds}.
    """

    def onTimeout(result, timeout):
        raise AssertionError("waited %s s for %s" % (timeout, what))

    return d.addTimeout(seconds, reactor, onTimeoutCancel=onTimeout)


#: The servers every integration test runs against.
SERVERS = (ThrowawayProsody, ThrowawayEjabberd)


class ServerTestCase(unittest.TestCase):
    """
    A test with its own server of class C{serverClass}, accounts C{USERS}
    (password C{PASSWORD}), and the component C{COMPONENT} configured with
    C{SECRET}.
    """

    timeout = 90
    serverClass = None
    #: The server's external components, by JID, with their secrets.
    components = {COMPONENT: SECRET}

    @defer.inlineCallbacks
    def setUp(self):
        self.server = self.serverClass(
            dict(self.components), domain=DOMAIN, **self.serverArguments()
        )
        self.addCleanup(self.server.cleanUp)
        for user in USERS:
            self.server.register(user, PASSWORD)
        self.addCleanup(self.server.stop)
        yield self.server.start()

    def serverArguments(self):
        """
        More keyword arguments for the server (C{tls}, say).
        """
        return {}

    @defer.inlineCallbacks
    def connect(self, user, resource, **kwargs):
        """
        Log in C{user@localhost/resource}; it is disconnected at clean-up.
        """
        client = Client(
            "%s@%s/%s" % (user, DOMAIN, resource),
            PASSWORD,
            "127.0.0.1",
            self.server.c2sPort,
            **kwargs,
        )
        yield withTimeout(client.connect(), what="login of %s" % (resource,))
        self.addCleanup(client.disconnect)
        return client

    @defer.inlineCallbacks
    def startProxy(self, resources=0, secret=SECRET, jid=COMPONENT, port=None, **kwargs):
        """
        Start the component in this process, connected to C{port} (the
        server's component port by default), and wait until it knows
        C{resources} resources of the target. Its shutdown grace period is
        short unless given: tests leave requests unanswered on purpose.
        """
        kwargs.setdefault("grace", 0.2)
        proxy = makeProxy(
            jid,
            TARGET,
            secret,
            host="127.0.0.1",
            port=self.server.componentPort if port is None else port,
            **kwargs,
        )
        proxy.startService()
        self.addCleanup(self.stopProxy, proxy)
        if resources:
            yield self.resourcesKnown(proxy, resources)
        return proxy

    def resourcesKnown(self, proxy, count):
        return self.waitUntil(
            lambda: len(proxy.dispatcher.resources) == count,
            "the component to know %d resources" % (count,),
        )

    @defer.inlineCallbacks
    def stopProxy(self, proxy):
        if proxy.running:
            proxy.stopService()
        yield self.waitUntil(lambda: proxy.xmlstream is None, "the component to disconnect")

    def waitUntil(self, condition, what, seconds=WAIT):
        """
        Wait until C{condition()} is true, for at most C{seconds}
        (L{tests.helpers.waitFor}).
        """
        return waitFor(condition, what, seconds)

    def logEvents(self):
        """
        Collect the log events emitted from now until the end of the test.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events


def onEveryServer(*testSets):
    """
    Return, by name, one test case per server in L{SERVERS} for each of
    C{testSets} (classes with test methods that are not test cases
    themselves): C{RequestTests} gives C{RequestTestsOnProsody} and
    C{RequestTestsOnEjabberd}. Use as C{globals().update(onEveryServer(...))}.
    """
    cases = {}
    for tests in testSets:
        for server in SERVERS:
            name = "%sOn%s" % (tests.__name__, server.name.capitalize())
            cases[name] = type(name, (tests, ServerTestCase), {"serverClass": server})
    return cases


#: Seconds the target holds each request in the tests of requests in
#: flight when a process is killed.
HOLD = 6.0


def bodies(client, text):
    return [m for m in client.messages if str(m.body or "") == text]


class Processes:
    """
    clientproxy processes (twistd) for the test's component.
    """

    timeout = 120

    def startProcess(self, directory, process=None, more=(), env=None):
        """
        Start C{process} (a new L{ComponentProcess} by default) for the
        component, with C{directory} as its data directory, C{more}
        options, and C{env} (this process's environment by default).
        """
        process = process or ComponentProcess()
        self.addCleanup(process.stop)
        process.start(
            [
                "--jid",
                COMPONENT,
                "--target",
                TARGET,
                "--secret",
                SECRET,
                "--port",
                str(self.server.componentPort),
                "--data-dir",
                directory,
            ]
            + list(more),
            directory,
            env,
        )
        return process

    def newDirectory(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        return directory

    @defer.inlineCallbacks
    def takeOver(self, directories, more=(), queued=None):
        """
        The scenario of a takeover: a first process connects and a second
        stands by; alice subscribes to the service and sends a message while
        the target is offline (the first queues it: C{queued()} becomes 1);
        the first is killed with SIGKILL; the second takes over (within 10
        s), delivers the queued message exactly once when the target comes
        online, tells alice the service is available, and serves a request.
        """
        first = self.startProcess(directories[0], more=more)
        yield first.waitForLine(lambda line: "Connected to" in line)
        second = ComponentProcess()
        standing = second.waitForLine(lambda line: "standing by" in line)
        self.startProcess(directories[1], second, more=more)
        yield standing

        alice = yield self.connect("alice", "x")
        subscribed = alice.waitFor(
            lambda s: (
                s.name == "presence"
                and s.getAttribute("type") == "subscribed"
                and s.getAttribute("from") == COMPONENT
            )
        )
        alice.sendPresence("subscribe", to=COMPONENT)
        yield withTimeout(subscribed, what="the first process to accept the subscription")
        alice.sendMessage(COMPONENT, "while away", stanzaID="m1")
        yield self.waitFor(queued, 1, "the message to be queued")

        took = second.waitForLine(lambda line: "Took over" in line, timeout=20)
        killed = reactor.seconds()
        os.kill(first.pid, signal.SIGKILL)
        yield took
        self.assertLess(reactor.seconds() - killed, 10)

        svc = yield self.connect("svc", "a")
        yield self.waitUntil(lambda: bodies(svc, "while away"), "the queued message")
        alice.sendMessage(COMPONENT, "live", stanzaID="m2")
        yield self.waitUntil(lambda: bodies(svc, "live"), "a live message")
        self.assertEqual(len(bodies(svc, "while away")), 1)
        yield self.waitFor(queued, 0, "the queue to be empty")
        yield self.waitUntil(
            lambda: any(
                p.getAttribute("from") == COMPONENT and p.getAttribute("type") is None
                for p in alice.presences
            ),
            "the subscriber to hear the service is available",
        )
        reply = yield withTimeout(alice.request(COMPONENT), what="a request through the second")
        self.assertEqual(reply["type"], "result")

    def waitFor(self, read, value, what):
        """
        Wait until C{read()} (a value, or a Deferred of one) gives C{value}
        (L{tests.helpers.waitFor}).
        """
        return waitFor(lambda: defer.maybeDeferred(read).addCallback(lambda v: v == value), what)
