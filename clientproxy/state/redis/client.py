# -*- test-case-name: tests.test_redisclient -*-
"""
A small Redis client for Twisted: commands pipelined on one connection,
replies read by hiredis (the C parser of the Redis project, which redis-py
uses too), reconnected by L{ClientService}.

Why not a general client: with several processes sharing their state
(L{clientproxy.state.redis.cluster}), every request costs two Redis commands, and
txredisapi, the Twisted client, spent about 60 µs of CPU on each here
(a chain of Deferreds per reply, a line parser that pauses and resumes the
transport for every bulk string). This one keeps to what clientproxy needs:
a command is a list of arguments, its reply a Deferred; a script runs by
its SHA-1 (EVALSHA), sent whole once Redis says it does not know it.

While no connection is up, commands wait, in order, and go out once one
is; commands sent on a connection that is lost fail with
L{ConnectionLost}, as Redis may or may not have run them.
"""

import hashlib
from collections import deque

try:
    import hiredis
except ImportError:  # without clientproxy[redis]: --redis says so (clientproxy.tap)
    hiredis = None
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger


class RedisError(Exception):
    """
    Redis answered a command with an error.
    """


def encode(arguments):
    """
    A command in Redis's protocol (RESP): an array of bulk strings.
    """
    parts = [b"*%d\r\n" % (len(arguments),)]
    for argument in arguments:
        if argument.__class__ is not bytes:
            argument = str(argument).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(argument), argument))
    return b"".join(parts)


class RedisProtocol(protocol.Protocol):
    """
    One connection: replies come in the order of the commands.

    @ivar onPush: called with each message of a subscribed channel, as
        C{onPush(channel, message)}, on a connection that subscribed (one
        channel per SUBSCRIBE, so that each has one reply).
    """

    onPush = None
    onLost = None

    def __init__(self):
        self._reader = hiredis.Reader(encoding="utf-8", errors="surrogateescape")
        self._waiting = deque()

    def listen(self, onPush):
        """
        Give the messages of the channels this connection subscribes to to
        C{onPush} (a method, since L{ClientService} hands out a proxy of
        the protocol, whose attributes cannot be set).
        """
        self.onPush = onPush

    def whenLost(self, onLost):
        """
        Call C{onLost()} once this connection is lost.
        """
        self.onLost = onLost

    def execute(self, *arguments):
        d = defer.Deferred()
        self._waiting.append(d)
        self.transport.write(encode(arguments))
        return d

    def dataReceived(self, data):
        reader = self._reader
        reader.feed(data)
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if (
                self.onPush is not None
                and reply.__class__ is list
                and len(reply) == 3
                and reply[0] == "message"
            ):
                self.onPush(reply[1], reply[2])
                continue
            d = self._waiting.popleft()
            if isinstance(reply, hiredis.ReplyError):
                d.errback(RedisError(str(reply)))
            else:
                d.callback(reply)

    def connectionLost(self, reason):
        if self.onLost is not None:
            self.onLost()
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(ConnectionLost("the connection to Redis was lost"))


class Redis:
    """
    A client of one Redis database that reconnects by itself.
    """

    log = Logger()

    def __init__(self, host, port, db=0, reactor=None, onConnected=None):
        """
        @param onConnected: called with each new L{RedisProtocol} once the
            database is selected, before the commands that waited are sent
            (a subscriber subscribes there).
        """
        if reactor is None:
            from twisted.internet import reactor
        self._db = db
        self._onConnected = onConnected
        # The live connection's execute (looked up once: L{ClientService}
        # hands out a proxy of the protocol), or None while there is none.
        self._execute = None
        self._queued = []
        self._scripts = {}
        factory = protocol.Factory.forProtocol(RedisProtocol)
        self._service = ClientService(
            TCP4ClientEndpoint(reactor, host, port),
            factory,
            retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=5.0),
            prepareConnection=self._prepare,
        )
        self._service.startService()

    @defer.inlineCallbacks
    def _prepare(self, connection):
        if self._db:
            yield connection.execute("SELECT", self._db)
        if self._onConnected is not None:
            yield self._onConnected(connection)
        execute = self._execute = connection.execute
        connection.whenLost(self._lost)
        queued, self._queued = self._queued, []
        for arguments, d in queued:
            execute(*arguments).chainDeferred(d)

    def _lost(self):
        self._execute = None

    def execute(self, *arguments):
        """
        Send a command; return a Deferred of its reply.
        """
        if self._execute is not None:
            return self._execute(*arguments)
        d = defer.Deferred()
        self._queued.append((arguments, d))
        return d

    def eval(self, script, keys=(), args=()):
        """
        Run a Lua C{script} with C{keys} and C{args}, by its SHA-1 once
        Redis knows it.
        """
        sha = self._scripts.get(script)
        if sha is None:
            sha = self._scripts[script] = hashlib.sha1(script.encode("utf-8")).hexdigest()
        arguments = (len(keys),) + tuple(keys) + tuple(args)
        d = self.execute("EVALSHA", sha, *arguments)

        def unknown(failure):
            failure.trap(RedisError)
            if not str(failure.value).startswith("NOSCRIPT"):
                return failure
            return self.execute("EVAL", script, *arguments)

        return d.addErrback(unknown)

    def disconnect(self):
        """
        Stop reconnecting and close the connection.
        """
        for _, d in self._queued:
            d.errback(ConnectionLost("the Redis client was closed"))
        self._queued = []
        return self._service.stopService()
