"""
Tests for L{clientproxy.state.redis.client}: the protocol on an in-memory
transport (replies cut anywhere, errors, pushes), and the client against a
real Redis (Debian's redis-server, a throwaway one on loopback): scripts by
their SHA-1, commands waiting while Redis is away, subscriptions renewed
after a reconnection.
"""

from twisted.internet import defer, reactor, task
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clientproxy.state.redis.client import RedisError, RedisProtocol, encode
from clientproxy.state.redis.store import Listener, connect
from clientproxy.testing.redis import startRedis


class ProtocolTests(unittest.TestCase):
    def connected(self):
        p = RedisProtocol()
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
        A script runs by its SHA-1, and is sent whole again once Redis has
        forgotten it.
        """
        client = self.client()
        script = "return {KEYS[1], ARGV[1]}"
        self.assertEqual((yield client.eval(script, ["k"], ["v"])), ["k", "v"])
        yield client.execute("SCRIPT", "FLUSH")
        self.assertEqual((yield client.eval(script, ["k2"], ["v2"])), ["k2", "v2"])
        with self.assertRaises(RedisError):
            yield client.eval("return redis.call('NOSUCHCOMMAND')")

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
