"""
Tests for L{clientproxy.state.redis.client}: the protocol on an in-memory
transport (replies cut anywhere, errors, pushes), and the client against a
real Redis (Debian's redis-server, a throwaway one on loopback): scripts by
their SHA-1, commands waiting while Redis is away, subscriptions renewed
after a reconnection.
"""

import hashlib

from twisted.internet import defer, reactor, task
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import StringTransport
from twisted.python import failure
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest
from zope.interface import implementer

from clientproxy.state.redis.address import parseURL
from clientproxy.state.redis.client import (
    DeadlineMissed,
    Redis,
    RedisError,
    RedisProtocol,
    encode,
)
from clientproxy.state.redis.store import Listener, connect
from clientproxy.testing.redis import ThrowawaySentinel, startRedis
from tests.helpers import waitFor


class ProtocolTests(unittest.TestCase):
    def connected(self):
        self.clock = task.Clock()
        p = RedisProtocol(self.clock, 3.0)
        p.makeConnection(StringTransport())
        return p

    def test_encode(self):
        """
        A command is an array of bulk strings; text is sent as UTF-8.
        """
        self.assertEqual(
            encode(("SET", "k\u00e9", 5)), b"*3\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$1\r\n5\r\n"
        )

    def test_repliesInOrderWhateverTheCuts(self):
        """
        Replies go to their commands in order, however the bytes are cut
        into reads; an error reply fails its command alone.
        """
        replies = b"+OK\r\n$6\r\nh\xc3\xa9llo\r\n-ERR no\r\n*2\r\n:1\r\n$-1\r\n"
        for cut in range(1, len(replies)):
            p = self.connected()
            ds = [p.execute("X") for _ in range(4)]
            results = []
            for d in ds:
                d.addBoth(results.append)
            p.dataReceived(replies[:cut])
            p.dataReceived(replies[cut:])
            self.assertEqual(results[0], "OK")
            self.assertEqual(results[1], "h\u00e9llo")
            results[2].trap(RedisError)
            self.assertEqual(results[3], [1, None])

    def test_pushes(self):
        """
        On a connection that listens, channel messages go to the listener,
        not to a command.
        """
        p = self.connected()
        got = []
        p.listen(lambda channel, message: got.append((channel, message)))
        d = p.execute("SUBSCRIBE", "c")
        p.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n")
        p.dataReceived(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n")
        self.assertEqual(self.successResultOf(d), ["subscribe", "c", 1])
        self.assertEqual(got, [("c", "hi")])

    def test_lost(self):
        """
        Commands without a reply when the connection is lost fail.
        """
        p = self.connected()
        d = p.execute("GET", "k")
        p.connectionLost(None)
        self.failureResultOf(d, ConnectionLost)

    def test_deadline(self):
        """
        A command with no reply within the deadline fails with
        L{DeadlineMissed}, and so does every command behind it; the
        connection is aborted (not closed politely: the link may be
        half-open). A reply in time cancels nothing but its own wait.
        """
        p = self.connected()
        first = p.execute("GET", "a")
        self.clock.advance(1)
        second = p.execute("GET", "b")
        p.dataReceived(b"$1\r\n1\r\n")
        self.assertEqual(self.successResultOf(first), "1")
        self.clock.advance(2.5)
        self.assertNoResult(second)
        self.assertFalse(p.transport.disconnecting)
        self.clock.advance(0.5)
        error = self.failureResultOf(second, DeadlineMissed)
        self.assertIn("did not answer within 3 s", error.getErrorMessage())
        self.assertTrue(p.transport.disconnecting)
        # Sent after the drop, before the loss is told: fails at once.
        self.failureResultOf(p.execute("GET", "c"), DeadlineMissed)
        p.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pingInSubscribeMode(self):
        """
        A subscribed connection is pinged every interval; Redis answers a
        PING there with a C{pong} message, which is its reply, not a
        channel message. Unanswered, the ping misses the deadline and the
        connection is dropped.
        """
        p = self.connected()
        got = []
        p.listen(lambda channel, message: got.append(message))
        p.ping(1.5)
        p.transport.clear()
        self.clock.advance(1.5)
        self.assertEqual(p.transport.value(), encode(("PING",)))
        p.dataReceived(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        p.dataReceived(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n")
        self.assertEqual(got, ["hi"])
        self.assertFalse(p.transport.disconnecting)
        self.clock.advance(1.5)
        self.clock.advance(3.0)
        self.assertTrue(p.transport.disconnecting)
        p.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])


def sha1(script):
    """
    The SHA-1 Redis knows C{script} by.
    """
    return hashlib.sha1(script.encode("utf-8")).hexdigest()


class ShiftedClock:
    """
    A reactor whose clock is C{shift} seconds off the real one (a host
    whose clock disagrees with Redis's).
    """

    def __init__(self, reactor, shift):
        self._reactor = reactor
        self._shift = shift

    def seconds(self):
        return self._reactor.seconds() + self._shift

    def __getattr__(self, name):
        return getattr(self._reactor, name)


class ClientTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.redis = yield startRedis(self)

    def client(self):
        client = connect(self.redis.url)
        self.addCleanup(client.disconnect)
        return client

    @defer.inlineCallbacks
    def test_scripts(self):
        """
        A script runs by its SHA-1, and runs again once Redis has forgotten
        it (loaded again on a new connection).
        """
        client = self.client()
        script = "return {KEYS[1], ARGV[1]}"
        self.assertEqual((yield client.eval(script, ["k"], ["v"])), ["k", "v"])
        yield client.execute("SCRIPT", "FLUSH")
        self.assertEqual((yield client.eval(script, ["k2"], ["v2"])), ["k2", "v2"])
        with self.assertRaises(RedisError):
            yield client.eval("return redis.call('NOSUCHCOMMAND')")

    @defer.inlineCallbacks
    def test_lateScriptDoesNothing(self):
        """
        A script run through L{Redis.evalInTime} that Redis starts after
        its deadline does nothing, and fails here as a deadline missed
        (which is run again as a lost reply is); one in time runs.
        """
        client = self.client()
        client.measureClock()
        script = "redis.call('SET', KEYS[1], 'done') return 1"
        self.assertEqual((yield client.evalInTime(script, ["in-time"])), 1)
        client.address = client.address.with_(deadline=-10.0)
        with self.assertRaises(DeadlineMissed):
            yield client.evalInTime(script, ["late"])
        self.assertEqual((yield client.execute("EXISTS", "late")), 0)

    @defer.inlineCallbacks
    def test_deadlineByRedisClock(self):
        """
        The deadline a script carries is moved by how far Redis's clock is
        from this host's, measured on the connection: a host whose clock
        is 10 s behind (or ahead) still runs its scripts in time.
        """
        for shift in (-10.0, 10.0):
            client = connect(self.redis.url, ShiftedClock(reactor, shift))
            self.addCleanup(client.disconnect)
            client.measureClock()
            self.assertEqual((yield client.evalInTime("return 1")), 1)
            old = client._connection
            client.reconnect()
            yield waitFor(lambda: client.connected and client._connection is not old)
            self.assertEqual((yield client.evalInTime("return 1")), 1)
            self.assertLess(abs(client.offset + shift), 1.0)

    @defer.inlineCallbacks
    def test_clockSteppedAfterTheHandshake(self):
        """
        A host clock stepped back after the offset was measured makes
        scripts late: the first refused measures it again (as a heartbeat
        does every second), and the next runs, on the same connection.
        """
        clock = ShiftedClock(reactor, 0.0)
        client = connect(self.redis.url, clock)
        self.addCleanup(client.disconnect)
        client.measureClock()
        self.assertEqual((yield client.evalInTime("return 1")), 1)
        connection = client._connection
        clock._shift = -10.0
        with self.assertRaises(DeadlineMissed):
            yield client.evalInTime("return 1")
        yield client.execute("PING")
        self.assertEqual((yield client.evalInTime("return 1")), 1)
        self.assertIs(client._connection, connection)

    @defer.inlineCallbacks
    def test_oneClockMeasureAtATime(self):
        """
        However many scripts are refused late at once (thousands, after a
        stall), the clock is measured again once at a time, not once each.
        """
        client = self.client()
        client.measureClock()
        yield client.execute("PING")
        measures = []
        measure = client._measure
        client._measure = lambda execute: measures.append(1) or measure(execute)
        for _ in range(100):
            client.checkClock()
        self.assertEqual(len(measures), 1)
        yield client.execute("PING")
        client.checkClock()
        self.assertEqual(len(measures), 2)

    @defer.inlineCallbacks
    def test_scriptsKeepTheirOrder(self):
        """
        Scripts run in the order they are sent, whichever of them Redis
        already knows: on a fresh Redis that knows only the second (a take
        run before), a script that writes an entry then one that takes it,
        sent back to back, find the entry written.
        """
        client = self.client()
        record = "return redis.call('SET', KEYS[1], ARGV[1]) and 1"
        take = "return redis.call('GETDEL', KEYS[1])"
        yield client.eval(take, ["other"])
        recorded = client.eval(record, ["k"], ["v"])
        taken = client.eval(take, ["k"])
        self.assertEqual((yield recorded), 1)
        self.assertEqual((yield taken), "v")

    @defer.inlineCallbacks
    def test_scriptsKeepTheirOrderWhenFlushed(self):
        """
        Scripts run in the order they were sent after Redis forgot them
        under a live connection (C{SCRIPT FLUSH}): the first that finds
        its script unknown runs again first on a new connection, where
        every script is loaded again; those sent after it on the old one
        fail as on a lost connection, none runs before it.
        """
        client = self.client()
        record = "return redis.call('RPUSH', KEYS[1], ARGV[1])"
        take = "return redis.call('LRANGE', KEYS[1], 0, -1)"
        yield client.eval(record, ["other"], ["x"])
        yield client.eval(take, ["other"])
        yield client.execute("SCRIPT", "FLUSH")
        first = client.eval(record, ["k"], ["0"])
        then = client.eval(take, ["k"])
        self.assertEqual((yield first), 1)
        with self.assertRaises(ConnectionLost):
            yield then
        self.assertEqual((yield client.eval(take, ["k"])), ["0"])
        self.assertEqual((yield client.execute("SCRIPT", "EXISTS", sha1(take))), [1])

    @defer.inlineCallbacks
    def test_waitsForRedis(self):
        """
        Commands sent while Redis is away wait, in order, and go once it is
        back; a subscription is renewed on the new connection.
        """
        client = self.client()
        got = []
        listener = Listener(self.redis.url, lambda channel, message: got.append(message))
        self.addCleanup(listener.disconnect)
        listener.subscribe("c")
        yield client.execute("PING")
        yield self.redis.stop()
        writes = [client.execute("RPUSH", "l", str(n)) for n in range(5)]
        yield self.redis.start()
        yield defer.gatherResults(writes)
        self.assertEqual((yield client.execute("LRANGE", "l", 0, -1)), ["0", "1", "2", "3", "4"])
        for _ in range(500):
            if listener.subscribed and (yield client.execute("PUBLISH", "c", "back")):
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        for _ in range(500):
            if got:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(got[:1], ["back"])


class ClosingTransport(StringTransport):
    """
    An in-memory transport whose closing is told to its protocol on the
    next turn of the clock, as a reactor does.
    """

    def __init__(self, clock):
        StringTransport.__init__(self)
        self.clock = clock

    def loseConnection(self):
        if not self.disconnecting:
            self.disconnecting = True
            self.clock.callLater(
                0, self.protocol.connectionLost, failure.Failure(ConnectionDone("closed"))
            )


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    An endpoint whose connections are in-memory transports, made at once
    (or never, with C{refuse}).

    @ivar connections: C{(protocol, transport)} of each connection made.
    """

    def __init__(self, clock, never=False):
        self.clock = clock
        self.never = never
        self.connections = []

    def connect(self, factory):
        if self.never:
            return defer.Deferred()
        p = factory.buildProtocol(None)
        transport = ClosingTransport(self.clock)
        transport.protocol = p
        p.makeConnection(transport)
        self.connections.append((p, transport))
        return defer.succeed(p)


class LogLines:
    """
    The log lines written while it observes, as text.
    """

    def __init__(self, testCase):
        self.lines = []
        globalLogPublisher.addObserver(self)
        testCase.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event):
        self.lines.append((event.get("log_level"), formatEvent(event)))

    def errors(self):
        return [text for level, text in self.lines if level == LogLevel.error]


class HandshakeTests(unittest.TestCase):
    """
    What the client sends on each new connection, before any command
    (AUTH or PING, SELECT), and what it makes of a refusal; on an
    in-memory transport with a L{task.Clock}.
    """

    PASSWORD = "s3cr3t-pw"
    timeout = 5

    def setUp(self):
        # What was logged by other tests' clients of the same address.
        self.patch(Redis, "_told", {})

    def closing(self, client):
        """
        Disconnect C{client} at the end of the test (the loss told at the
        next turn of the clock).
        """

        clock = self.clock

        def close():
            d = client.disconnect()
            clock.advance(0)
            return d

        self.addCleanup(close)

    def client(self, url, never=False):
        self.clock = task.Clock()
        self.endpoint = MemoryEndpoint(self.clock, never)
        address = parseURL(url).with_(deadline=3.0)
        client = Redis(address, self.clock, endpoint=self.endpoint)
        self.closing(client)
        return client

    def written(self, n=-1):
        """
        What the client wrote on connection C{n}, cleared.
        """
        transport = self.endpoint.connections[n][1]
        value = transport.value()
        transport.clear()
        return value

    def test_order(self):
        """
        AUTH with the ACL user and password, then SELECT, then the commands
        that waited, in order.
        """
        client = self.client("redis://clientproxy:%s@h:6380/2" % (self.PASSWORD,))
        first, second = client.execute("SET", "k", "v"), client.execute("GET", "k")
        p = self.endpoint.connections[0][0]
        self.assertEqual(self.written(), encode(("AUTH", "clientproxy", self.PASSWORD)))
        p.dataReceived(b"+OK\r\n")
        self.assertEqual(self.written(), encode(("SELECT", 2)))
        p.dataReceived(b"+OK\r\n")
        self.assertEqual(self.written(), encode(("SET", "k", "v")) + encode(("GET", "k")))
        p.dataReceived(b"+OK\r\n$1\r\nv\r\n")
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), ("OK", "v"))
        self.assertTrue(client.connected)
        self.assertIsNone(client.problem)

    def test_passwordOnly(self):
        """
        C{redis://:password@host}: AUTH with the password alone (the
        default user); database 0 is not selected.
        """
        client = self.client("redis://:%s@h" % (self.PASSWORD,))
        client.execute("PING")
        p = self.endpoint.connections[0][0]
        self.assertEqual(self.written(), encode(("AUTH", self.PASSWORD)))
        p.dataReceived(b"+OK\r\n")
        self.assertEqual(self.written(), encode(("PING",)))
        p.dataReceived(b"+PONG\r\n")

    def test_wrongPassword(self):
        """
        A refused password is one error line naming the condition and the
        user, never the password; L{Redis.problem} says it (for /readyz)
        while it lasts; the connection is dropped and made again, and the
        line is not repeated; accepted, the problem is gone.
        """
        lines = LogLines(self)
        client = self.client("redis://svc:%s@h/0" % (self.PASSWORD,))
        for attempt in range(3):
            p, transport = self.endpoint.connections[-1]
            p.dataReceived(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
            self.assertTrue(transport.disconnecting)
            self.clock.advance(0)
            self.clock.advance(2.0)
        self.assertEqual(len(self.endpoint.connections), 4)
        (error,) = lines.errors()
        self.assertIn("WRONGPASS", error)
        self.assertIn("user svc", error)
        self.assertIn("WRONGPASS", client.problem)
        waiting = client.execute("GET", "k")
        p = self.endpoint.connections[-1][0]
        p.dataReceived(b"+OK\r\n")
        self.assertIsNone(client.problem)
        p.dataReceived(b"$-1\r\n")
        self.assertIsNone(self.successResultOf(waiting))
        for _, text in lines.lines:
            self.assertNotIn(self.PASSWORD, text)

    def test_oneLineForAllClients(self):
        """
        The two clients of one process (commands, subscriber) refused
        alike: one error line, not one each.
        """
        lines = LogLines(self)
        for _ in range(2):
            self.client("redis://:%s@h/0" % (self.PASSWORD,))
            p = self.endpoint.connections[0][0]
            p.dataReceived(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        self.assertEqual(len(lines.errors()), 1)

    def test_noAuth(self):
        """
        Without a password the handshake is a PING, so a Redis that wants
        one says NOAUTH at once: one line saying where a password may come
        from.
        """
        lines = LogLines(self)
        client = self.client("redis://h:6379/0")
        p = self.endpoint.connections[0][0]
        self.assertEqual(self.written(), encode(("PING",)))
        p.dataReceived(b"-NOAUTH Authentication required.\r\n")
        (error,) = lines.errors()
        self.assertIn("NOAUTH", error)
        self.assertIn("--redis-password-file", error)
        self.assertIn("NOAUTH", client.problem)

    def test_handshakeDeadline(self):
        """
        A server that takes the connection but never answers (stopped, or
        a half-open link) misses the handshake's deadline: the connection
        is dropped, and another made.
        """
        self.client("redis://h")
        transport = self.endpoint.connections[0][1]
        self.clock.advance(3.0)
        self.assertTrue(transport.disconnecting)
        self.clock.advance(2.0)
        self.assertEqual(len(self.endpoint.connections), 2)

    def test_queuedDeadline(self):
        """
        A command issued while no connection can be made fails at its
        deadline with a clear error, not never.
        """
        client = self.client("redis://h", never=True)
        d = client.execute("GET", "k")
        self.clock.advance(2.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        error = self.failureResultOf(d, DeadlineMissed)
        self.assertEqual(error.getErrorMessage(), "Redis at h:6379 could not be reached within 3 s")

    def test_deadlineOnTheConnection(self):
        """
        A command sent on a connection that then goes silent fails at its
        deadline; the connection is dropped and made again, and commands
        after go on the new one.
        """
        client = self.client("redis://h")
        p, transport = self.endpoint.connections[0]
        p.dataReceived(b"+PONG\r\n")
        lost = client.execute("INCR", "n")
        self.clock.advance(3.0)
        self.failureResultOf(lost, DeadlineMissed)
        self.assertTrue(transport.disconnecting)
        later = client.execute("GET", "n")
        self.clock.advance(0)
        self.clock.advance(2.0)
        p = self.endpoint.connections[1][0]
        p.dataReceived(b"+PONG\r\n:1\r\n")
        self.assertEqual(self.successResultOf(later), 1)

    def test_notMaster(self):
        """
        Through Sentinel, the server named must say it is a master (ROLE);
        a replica is dropped, and Sentinel asked again.
        """
        self.clock = task.Clock()
        self.endpoint = MemoryEndpoint(self.clock)
        address = parseURL("redis+sentinel://s1,s2:5000/svc/1")
        client = Redis(address, self.clock, endpoint=self.endpoint)
        self.closing(client)
        p, transport = self.endpoint.connections[0]
        p.dataReceived(b"+PONG\r\n")
        p.dataReceived(b"+OK\r\n")
        self.assertEqual(
            self.written(), encode(("PING",)) + encode(("SELECT", 1)) + encode(("ROLE",))
        )
        p.dataReceived(b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:1\r\n$9\r\nconnected\r\n:0\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertIn("not a master", client.problem)


class URLTests(unittest.TestCase):
    """
    The C{--redis} URL: every form, and every part that would be ignored
    refused.
    """

    def test_forms(self):
        """
        Each form gives what the client connects with.
        """
        a = parseURL("redis://10.0.0.1:6380/2")
        self.assertEqual((a.kind, a.tls, a.host, a.port, a.db), ("tcp", False, "10.0.0.1", 6380, 2))
        a = parseURL("redis://localhost")
        self.assertEqual(
            (a.host, a.port, a.db, a.username, a.password), ("localhost", 6379, 0, None, None)
        )
        a = parseURL("rediss://cp:p%40ss%3Aw@redis.example.org/1")
        self.assertEqual(
            (a.tls, a.host, a.port, a.db, a.username, a.password),
            (True, "redis.example.org", 6379, 1, "cp", "p@ss:w"),
        )
        a = parseURL("redis://:secret@h/3")
        self.assertEqual((a.username, a.password, a.db), (None, "secret", 3))
        a = parseURL("unix:///run/redis/redis.sock?db=4")
        self.assertEqual((a.kind, a.path, a.db), ("unix", "/run/redis/redis.sock", 4))
        a = parseURL("unix://:pw@/run/redis.sock")
        self.assertEqual((a.path, a.password, a.db), ("/run/redis.sock", "pw", 0))
        a = parseURL("redis+sentinel://u:pw@s1:26380,s2,[::1]:5/my-master/7")
        self.assertEqual(
            (a.kind, a.sentinels, a.service, a.db, a.username, a.password),
            ("sentinel", [("s1", 26380), ("s2", 26379), ("::1", 5)], "my-master", 7, "u", "pw"),
        )
        self.assertEqual(parseURL("redis+sentinel://s1/m").db, 0)

    def test_refused(self):
        """
        Another scheme, no host, a path that is not a database, a query
        (but db on a socket), a fragment, a bad port, a sentinel URL with no
        service or a longer path: each a C{ValueError} whose message shows
        the URL without its password.
        """
        for bad in (
            "http://x",
            "redis:/h",
            "redis://",
            "redis://:pw@/0",
            "redis://h/x",
            "redis://h/0/1",
            "redis://h/-1",
            "redis://h:99999",
            "redis://h:port",
            "redis://h/0?db=1",
            "redis://h/0?timeout=3",
            "redis://h/0?",
            "redis://h/0#frag",
            "rediss://h/0#",
            "unix://h/sock",
            "unix:///sock?db=1&x=2",
            "unix:///sock?db=x",
            "unix:///sock?timeout=1",
            "unix:///sock#f",
            "unix://",
            "redis+sentinel://s1",
            "redis+sentinel://s1/",
            "redis+sentinel://s1/m/0/x",
            "redis+sentinel://s1/m/x",
            "redis+sentinel://s1/m?x=1",
            "redis+sentinel://s1:x/m",
            "redis+sentinel:///m",
            "rediss+sentinel://s1/m",
        ):
            with_password = bad.replace("//", "//u:hunter2@", 1) if "//" in bad else bad
            for url in (bad, with_password):
                error = self.assertRaises(ValueError, parseURL, url)
                self.assertNotIn("hunter2", str(error), url)

    def test_redacted(self):
        """
        What messages show of a URL: the password replaced, the rest kept.
        """
        self.assertEqual(parseURL("redis://cp:pw@h:1/2").redacted(), "redis://cp:***@h:1/2")
        self.assertEqual(parseURL("redis://h/2").redacted(), "redis://h/2")
        self.assertEqual(
            parseURL("redis+sentinel://:a@b@s1,s2/m").redacted(), "redis+sentinel://:***@s1,s2/m"
        )
        self.assertNotIn("pw", repr(parseURL("unix://:pw@/s")))


class ReachingRedisTests(unittest.TestCase):
    """
    The ways to reach a real Redis (a throwaway redis-server on loopback):
    a Unix socket, TLS with the server's name checked, Sentinel naming the
    master and following it when it changes.
    """

    timeout = 60

    def client(self, address):
        client = connect(address)
        self.addCleanup(client.disconnect)
        return client

    @defer.inlineCallbacks
    def test_unixSocket(self):
        """
        C{unix:///path?db=N}: the socket, and the database selected.
        """
        redis = yield startRedis(self, unixSocket=True)
        client = self.client("unix://%s?db=3" % (redis.socket,))
        yield client.execute("SET", "k", "by-socket")
        tcp = self.client("redis://127.0.0.1:%d/3" % (redis.port,))
        self.assertEqual((yield tcp.execute("GET", "k")), "by-socket")

    @defer.inlineCallbacks
    def test_tlsNameChecked(self):
        """
        C{rediss://}: with the CA that signed the server's certificate, for
        the name connected to, commands go through; a certificate for
        another name is refused (no command ever reaches Redis: each fails
        at its deadline).
        """
        redis = yield startRedis(self, tls=True, tlsNames=("redis.example.org",))
        url = "rediss://127.0.0.1:%d/0" % (redis.tlsPort,)
        refused = self.client(parseURL(url).with_(caFile=redis.caFile, deadline=1.0))
        with self.assertRaises(DeadlineMissed):
            yield refused.execute("SET", "k", "v")
        self.assertIsNone((yield self.client(redis.url).execute("GET", "k")))

        other = yield startRedis(self, tls=True)
        url = "rediss://127.0.0.1:%d/0" % (other.tlsPort,)
        client = self.client(parseURL(url).with_(caFile=other.caFile))
        self.assertEqual((yield client.execute("PING")), "PONG")

    @defer.inlineCallbacks
    def test_sentinelFollowsTheMaster(self):
        """
        C{redis+sentinel://}: the client writes to the master Sentinel
        names; after a failover (SENTINEL FAILOVER: the replica promoted)
        it follows the new master, told by C{+switch-master} or by the old
        one refusing writes (READONLY), and writes go there.
        """
        master = yield startRedis(self)
        replica = yield startRedis(self, replicaOf=("127.0.0.1", master.port))
        sentinel = ThrowawaySentinel(("127.0.0.1", master.port))
        self.addCleanup(sentinel.cleanUp)
        self.addCleanup(sentinel.stop)
        yield sentinel.start()
        url = "redis+sentinel://127.0.0.1:1,127.0.0.1:%d/%s/2" % (
            sentinel.port,
            sentinel.service,
        )
        client = self.client(parseURL(url).with_(deadline=1.0))
        yield client.execute("SET", "k", "before")
        self.assertEqual(client.endpoint.master, ("127.0.0.1", master.port))
        admin = self.client("redis://127.0.0.1:%d/0" % (sentinel.port,))
        onReplica = self.client("redis://127.0.0.1:%d/2" % (replica.port,))
        yield waitFor(lambda: onReplica.execute("GET", "k"), "the replica in sync", 20)

        def failover():
            d = admin.execute("SENTINEL", "FAILOVER", sentinel.service)
            # NOGOODSLAVE until Sentinel has seen the replica.
            return d.addErrback(lambda _: False)

        yield waitFor(failover, "Sentinel to start the failover", 20)
        yield waitFor(lambda: client.endpoint.master == ("127.0.0.1", replica.port), "followed", 20)

        def written():
            d = client.execute("SET", "k", "after")
            return d.addErrback(lambda _: False)

        yield waitFor(written, "a write accepted", 20)
        self.assertEqual((yield onReplica.execute("GET", "k")), "after")
