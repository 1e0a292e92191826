# -*- test-case-name: tests.test_redisclient -*-
"""
A small Redis client for Twisted: commands pipelined on one connection,
replies read by hiredis (the C parser of the Redis project, which redis-py
uses too), reconnected by L{ClientService}.

Why not a general client: with several processes sharing their state
(L{clientproxy.state.redis.cluster}), every request costs two Redis
commands. bench/shared.py measured 72.5 µs of the component's CPU per round
trip with this client, 119.5-124.5 with txredisapi 1.6 (hiredis under it
too), 130-133 with its reply timeout on (docs/instances.md). This one keeps
to what clientproxy needs: a command is a list of arguments, its reply a
Deferred; a script runs by its SHA-1 (EVALSHA), loaded (SCRIPT LOAD) on
every connection before any other command, and before its first use on
the connection, so that scripts run in the order they were sent (an
EVALSHA refused with NOSCRIPT and sent again whole would run after
commands sent meanwhile: a RECORD after the TAKE of its entry). Should
Redis forget the scripts under a live connection (C{SCRIPT FLUSH}), the
first NOSCRIPT drops the connection: the commands sent after it fail as
on any lost connection, and that script runs again first on the next one.

Reaching Redis (L{clientproxy.state.redis.address}): TCP, TLS (the
server's name checked with service_identity), a Unix socket, or the master
that Redis Sentinel names, asked again on every connection. Every
connection starts with a handshake: C{AUTH} when there is a password (else
a C{PING}, so that a Redis that wants one says C{NOAUTH} at once),
C{SELECT}, and through Sentinel C{ROLE} (a master, or it is dropped). A
refusal of the credentials is one log line (until they are accepted) and
L{Redis.problem}, which /readyz shows.

Every command has a deadline (L{RedisAddress.deadline}), counted from when
it is issued: one that has no reply by then fails with L{DeadlineMissed},
and so do all those waiting on its connection, which is dropped and made
again (a half-open link, a Redis stopped: the kernel may still accept).
While no connection is up, commands wait, in order, until one is or
until their deadline; commands sent on a connection that is lost fail
with L{ConnectionLost}, as Redis may or may not have run them.
"""

import hashlib
from collections import deque

try:
    import hiredis
except ImportError:  # without clientproxy[redis]: --redis says so (clientproxy.tap)
    hiredis = None
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, protocol
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from clientproxy.state.redis.address import DEFAULT_DEADLINE, RedisAddress, parseURL


#: What L{Redis.evalInTime} puts before a script: nothing is done after
#: the deadline, in milliseconds of the epoch, given as the last argument.
IN_TIME = """local now = redis.call('TIME')
if now[1] * 1000 + math.floor(now[2] / 1000) > tonumber(ARGV[#ARGV]) then
    return redis.error_reply('LATE')
end
"""

#: Seconds at most between two attempts to connect.
RECONNECT_MAX = 1.0


class RedisError(Exception):
    """
    Redis answered a command with an error.
    """


class DeadlineMissed(ConnectionLost):
    """
    A command had no reply within its deadline: the connection it was sent
    on (if any) is dropped and made again. Redis may or may not have run
    it.
    """

    def __str__(self):
        return self.args[0]


class NoMaster(Exception):
    """
    No sentinel named a master for the service.
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


class _ByRedisClock:
    """
    A time of this host, written in a command as Redis's clock shows it
    then (milliseconds of the epoch): converted when the command is sent,
    so that one that waited for a connection uses the offset measured on
    it (L{Redis.offset}).
    """

    __slots__ = ("client", "when")

    def __init__(self, client, when):
        self.client = client
        self.when = when

    def __str__(self):
        return str(int((self.when + self.client.offset) * 1000))


class RedisProtocol(protocol.Protocol):
    """
    One connection: replies come in the order of the commands.

    @ivar onPush: called with each message of a subscribed channel, as
        C{onPush(channel, message)}, on a connection that subscribed (one
        channel per SUBSCRIBE, so that each has one reply).
    @ivar clock: the L{IReactorTime} of the deadlines.
    @ivar deadline: seconds a command may wait for its reply.
    """

    onPush = None
    #: Whether a C{READONLY} error drops the connection (the master that
    #: Sentinel named was demoted: the next connection asks again).
    followsMaster = False

    def __init__(self, clock=None, deadline=DEFAULT_DEADLINE, where="Redis"):
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self._seconds = clock.seconds
        self.deadline = deadline
        self.where = where
        self._reader = hiredis.Reader(encoding="utf-8", errors="surrogateescape")
        # (Deferred, when its deadline is), oldest first: the first's is
        # the soonest.
        self._waiting = deque()
        self._timer = None
        self._pinger = None
        self._failure = None
        self._lostObservers = []

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
        self._lostObservers.append(onLost)

    def execute(self, *arguments):
        # On the path of every command: send() inlined.
        d = defer.Deferred()
        if self._failure is not None:
            # Dropped, the loss not yet told.
            d.errback(self._failure)
            return d
        due = self._seconds() + self.deadline
        self._waiting.append((d, due))
        if self._timer is None:
            self._timer = self.clock.callLater(self.deadline, self._check)
        self.transport.write(encode(arguments))
        return d

    def send(self, data, d, due):
        """
        Write C{data}, one or more commands whose reply goes to C{d}; C{due}
        is when its deadline is.
        """
        if self._failure is not None:
            d.errback(self._failure)
            return
        self._waiting.append((d, due))
        if self._timer is None:
            self._timer = self.clock.callLater(max(0.0, due - self._seconds()), self._check)
        self.transport.write(data)

    def _check(self):
        self._timer = None
        if not self._waiting:
            return
        due = self._waiting[0][1]
        now = self.clock.seconds()
        if due > now:
            self._timer = self.clock.callLater(due - now, self._check)
            return
        self.drop(
            DeadlineMissed(
                "%s did not answer within %g s: the connection is dropped and made again"
                % (self.where, self.deadline)
            )
        )

    def ping(self, interval):
        """
        Send a C{PING} every C{interval} seconds (on a subscribed
        connection too, where Redis answers C{pong}): a link that no
        longer carries anything misses the deadline and is dropped.
        """
        if self._pinger is None:

            def beat():
                self._pinger = self.clock.callLater(interval, beat)
                self.execute("PING").addErrback(lambda _: None)

            self._pinger = self.clock.callLater(interval, beat)

    def drop(self, error=None):
        """
        Drop the connection at once (no waiting for a reply that will not
        come); the commands waiting fail with C{error}.
        """
        if error is None:
            error = ConnectionLost("the connection to %s was dropped" % (self.where,))
        if self._failure is None:
            self._failure = error
        self._fail(error)
        transport = self.transport
        if transport is not None:
            abort = getattr(transport, "abortConnection", None)
            (abort or transport.loseConnection)()

    def _fail(self, error):
        waiting, self._waiting = self._waiting, deque()
        for d, _ in waiting:
            d.errback(error)

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
            if not self._waiting:
                return
            d = self._waiting.popleft()[0]
            if isinstance(reply, hiredis.ReplyError):
                d.errback(RedisError(str(reply)))
                if self.followsMaster and str(reply).startswith("READONLY"):
                    self.drop(
                        ConnectionLost(
                            "%s is no longer the master: asking Sentinel again" % (self.where,)
                        )
                    )
                    return
            else:
                d.callback(reply)

    def connectionLost(self, reason):
        for call in (self._timer, self._pinger):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._pinger = None
        for onLost in self._lostObservers:
            onLost()
        self._fail(self._failure or ConnectionLost("the connection to %s was lost" % (self.where,)))


class _Factory(protocol.Factory):
    def __init__(self, clock, deadline, where, followsMaster=False):
        self.clock = clock
        self.deadline = deadline
        self.where = where
        self.followsMaster = followsMaster

    def buildProtocol(self, addr):
        p = RedisProtocol(self.clock, self.deadline, self.where)
        p.followsMaster = self.followsMaster
        p.factory = self
        return p


@implementer(IStreamClientEndpoint)
class SentinelEndpoint:
    """
    The master that Redis Sentinel names for a service: every connection
    asks the sentinels in turn (the one that answered last first) with
    C{SENTINEL get-master-addr-by-name}, then connects there.

    @ivar master: the C{(host, port)} named last, or C{None}.
    """

    log = Logger()

    def __init__(self, reactor, address, connectTo=None):
        """
        @param connectTo: called as C{connectTo(host, port)} for the
            endpoint of a host (a sentinel's, the master's); TCP by default.
        """
        self._reactor = reactor
        self.address = address
        self.sentinels = list(address.sentinels)
        self.master = None
        if connectTo is None:

            def connectTo(host, port):
                return TCP4ClientEndpoint(reactor, host, port, timeout=address.deadline)

        self._connectTo = connectTo

    @defer.inlineCallbacks
    def ask(self):
        """
        The master's C{(host, port)}, as the first sentinel that knows
        says.

        @raise NoMaster: none does.
        """
        why = []
        for host, port in list(self.sentinels):
            p = RedisProtocol(self._reactor, self.address.deadline, "Sentinel %s:%d" % (host, port))
            try:
                yield connectProtocol(self._connectTo(host, port), p)
                reply = yield p.execute("SENTINEL", "get-master-addr-by-name", self.address.service)
            except Exception as e:
                why.append("%s:%d: %s" % (host, port, e))
                continue
            finally:
                if p.transport is not None:
                    p.transport.loseConnection()
            if not reply or len(reply) != 2:
                why.append("%s:%d: does not know %r" % (host, port, self.address.service))
                continue
            # The one that answered is asked first next time.
            self.sentinels.remove((host, port))
            self.sentinels.insert(0, (host, port))
            master = (reply[0], int(reply[1]))
            if master != self.master:
                self.log.info(
                    "Sentinel {sentinel} names {host}:{port} the master of {service}",
                    sentinel="%s:%d" % (host, port),
                    host=master[0],
                    port=master[1],
                    service=self.address.service,
                )
                self.master = master
            return master
        error = NoMaster(
            "no sentinel named a master for %r (%s)" % (self.address.service, "; ".join(why))
        )
        if self.master is not False:
            # Once, until one does.
            self.master = False
            self.log.error("{error}; asking again", error=str(error))
        raise error

    @defer.inlineCallbacks
    def connect(self, factory):
        host, port = yield self.ask()
        p = yield self._connectTo(host, port).connect(factory)
        return p


def endpointFor(address, reactor):
    """
    The L{IStreamClientEndpoint} of a L{RedisAddress}.
    """
    if address.kind == "unix":
        return UNIXClientEndpoint(reactor, address.path, timeout=address.deadline)
    if address.kind == "sentinel":
        return SentinelEndpoint(reactor, address)
    endpoint = TCP4ClientEndpoint(reactor, address.host, address.port, timeout=address.deadline)
    if address.tls:
        from clientproxy.xmpp.connection import TLSSettings

        endpoint = wrapClientTLS(TLSSettings(address.host, address.caFile).creator(), endpoint)
    return endpoint


#: The beginnings of the errors that say the credentials are wrong or
#: missing.
CREDENTIALS_ERRORS = ("WRONGPASS", "NOAUTH", "NOPERM", "ERR AUTH", "ERR invalid password")


class Redis:
    """
    A client of one Redis database that reconnects by itself.

    @ivar problem: why Redis refused the last handshake (its credentials,
        a replica where a master was expected), or C{None}: /readyz shows
        it.
    @ivar connected: whether a connection is up and its handshake done.
    """

    log = Logger()
    # The problem last logged, by where Redis is.
    _told = {}

    def __init__(
        self, address, reactor=None, onConnected=None, endpoint=None, handshake=True, role=None
    ):
        """
        @param address: a L{RedisAddress}, or a URL (see
            L{clientproxy.state.redis.address.parseURL}).
        @param onConnected: called with each new L{RedisProtocol} once the
            database is selected, before the commands that waited are sent
            (a subscriber subscribes there).
        @param endpoint: the L{IStreamClientEndpoint} to connect to instead
            of C{address}'s (tests; the sentinels' watcher).
        @param handshake: C{False}: no AUTH, PING, SELECT (a sentinel).
        @param role: what the connection is for, in log lines.
        """
        if reactor is None:
            from twisted.internet import reactor
        if isinstance(address, str):
            address = parseURL(address)
        self.address = address
        self._reactor = self.reactor = reactor
        self._onConnected = onConnected
        self._handshake = handshake
        self._role = role or "Redis"
        self.problem = None
        self.connected = False
        #: Seconds Redis's clock is ahead of this host's (behind: negative),
        #: as measured on the last connection (see L{measureClock}).
        self.offset = 0.0
        self._inTime = False
        self._measuring = False
        #: Whether L{disconnect} was called.
        self.closed = False
        # The live connection's execute (looked up once: L{ClientService}
        # hands out a proxy of the protocol), or None while there is none.
        self._execute = None
        self._connection = None
        # (arguments, Deferred, when its deadline is), oldest first.
        self._queued = deque()
        self._queueTimer = None
        # script: its SHA-1, for every script run so far.
        self._scripts = {}
        # script: the same behind IN_TIME (one string, hashed once).
        self._inTimeScripts = {}
        # The scripts loaded on the live connection.
        self._loaded = set()
        if endpoint is None:
            endpoint = endpointFor(address, reactor)
        self.endpoint = endpoint
        self._watcher = None
        # Called on each new connection before the commands that waited.
        self._whenConnected = []
        if isinstance(endpoint, SentinelEndpoint):
            self._watcher = SentinelWatcher(endpoint, self.reconnect, reactor)
        factory = _Factory(
            reactor,
            address.deadline,
            "%s at %s" % (self._role, address.where()),
            address.kind == "sentinel",
        )
        self._service = ClientService(
            endpoint,
            factory,
            # At most a second apart: every process is back within about
            # a second of Redis (see clientproxy.state.redis.requests,
            # which waits that long for the others' entries written again).
            retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=RECONNECT_MAX),
            prepareConnection=self._prepare,
            clock=reactor,
        )
        self._service.startService()

    @defer.inlineCallbacks
    def _prepare(self, connection):
        """
        The handshake, then the commands that waited. It never fails: a
        connection whose handshake fails is dropped, and L{ClientService}
        makes another once it is lost (a failure here while the loss is
        still to come would leave its state machine with a loss it has no
        transition for).
        """
        address = self.address
        try:
            if self._handshake:
                if address.password is not None:
                    credentials = [address.password]
                    if address.username:
                        credentials.insert(0, address.username)
                    yield connection.execute("AUTH", *credentials)
                else:
                    yield connection.execute("PING")
                if address.db:
                    yield connection.execute("SELECT", address.db)
                if self._inTime:
                    yield self._measure(connection.execute)
                if address.kind == "sentinel":
                    role = yield connection.execute("ROLE")
                    if not role or role[0] != "master":
                        raise RedisError(
                            "NOTMASTER the server Sentinel named is a %s, not a master"
                            % (role[0] if role else "server of no role",)
                        )
            if self._onConnected is not None:
                yield self._onConnected(connection)
            # Every script known, before any command that may run one.
            loaded = set()
            while len(loaded) < len(self._scripts):
                loading = [script for script in self._scripts if script not in loaded]
                yield defer.gatherResults(
                    [connection.execute("SCRIPT", "LOAD", script) for script in loading],
                    consumeErrors=True,
                )
                loaded.update(loading)
        except defer.FirstError as e:
            # A script refused (a Redis that has no Lua, an ACL without
            # SCRIPT LOAD).
            connection.drop()
            self._refused(str(e.subFailure.value))
            return
        except RedisError as e:
            connection.drop()
            self._refused(str(e))
            return
        except defer.CancelledError:
            # The service stops while this connection is being prepared:
            # L{ClientService} is stopped already and has no transition for
            # its loss, so the loss is not told to it (its proxy's
            # notification, an attribute of the proxy itself).
            if hasattr(connection, "_lostNotification"):
                connection._lostNotification = lambda reason: None
            connection.drop()
            raise
        except Exception:
            # Lost, or a deadline missed: made again.
            connection.drop()
            return
        self.problem = None
        if Redis._told.pop(address.where(), None) is not None:
            self.log.info(
                "{role} at {where} accepts this process's credentials again",
                role=self._role,
                where=address.where(),
            )
        self._connection = connection
        self.connected = True
        self._loaded = loaded
        self._execute = connection.execute
        connection.whenLost(self._lost)
        for hook in self._whenConnected:
            hook()
        queued, self._queued = self._queued, deque()
        for arguments, d, due in queued:
            connection.send(encode(arguments), d, due)

    def whenConnected(self, hook):
        """
        Call C{hook()} on each new connection, once it is ready and before
        the commands that waited for it are sent: the commands C{hook}
        sends go first (what a process writes again after a restart of
        Redis, before the takes that would look for it).
        """
        self._whenConnected.append(hook)

    def _refused(self, error):
        """
        The handshake was refused with C{error}: say so once, until it is
        accepted.
        """
        address = self.address
        if error.startswith("NOTMASTER"):
            problem = error
        elif error.startswith("NOAUTH") or "without any password" in error:
            problem = "%s (give the password in the URL, --redis-password-file or $%s)" % (
                error,
                PASSWORD_ENVIRONMENT,
            )
        elif error.startswith(CREDENTIALS_ERRORS):
            problem = "%s (user %s)" % (error, address.username or "default")
        else:
            problem = error
        self.problem = problem
        # Once for all the clients of one Redis (the commands', the
        # subscriber's), until it changes.
        if Redis._told.get(address.where()) != problem:
            Redis._told[address.where()] = problem
            self.log.error(
                "{role} at {where} refused this process: {problem}; trying again",
                role=self._role,
                where=address.where(),
                problem=problem,
            )

    def _lost(self):
        self._execute = self._connection = None
        self._loaded = set()
        self.connected = False

    def reconnect(self):
        """
        Drop the connection, if there is one, and make another (the
        master changed).
        """
        if self._connection is not None:
            self._connection.drop()

    def execute(self, *arguments):
        """
        Send a command; return a Deferred of its reply.
        """
        if self._execute is not None:
            return self._execute(*arguments)
        d = defer.Deferred()
        due = self._reactor.seconds() + self.address.deadline
        self._queued.append((arguments, d, due))
        if self._queueTimer is None:
            self._queueTimer = self._reactor.callLater(self.address.deadline, self._expire)
        return d

    def _expire(self):
        """
        Fail the commands that waited for a connection past their deadline.
        """
        self._queueTimer = None
        now = self._reactor.seconds()
        queued = self._queued
        while queued and queued[0][2] <= now:
            _, d, _ = queued.popleft()
            d.errback(
                DeadlineMissed(
                    "%s at %s could not be reached within %g s"
                    % (self._role, self.address.where(), self.address.deadline)
                )
            )
        if queued:
            self._queueTimer = self._reactor.callLater(queued[0][2] - now, self._expire)

    def eval(self, script, keys=(), args=()):
        """
        Run a Lua C{script} with C{keys} and C{args}, by its SHA-1: loaded
        before on this connection, so that scripts run in the order they
        are sent (see the module's docstring).
        """
        sha = self._scripts.get(script)
        if sha is None:
            sha = self._scripts[script] = hashlib.sha1(script.encode("utf-8")).hexdigest()
        execute = self._execute
        if execute is not None and script not in self._loaded:
            # Its first use on this connection: loaded just before.
            self._loaded.add(script)
            execute("SCRIPT", "LOAD", script).addErrback(lambda _: None)
        arguments = ("EVALSHA", sha, len(keys)) + tuple(keys) + tuple(args)
        d = self.execute(*arguments)

        def unknown(failure):
            failure.trap(RedisError)
            if not str(failure.value).startswith("NOSCRIPT"):
                return failure
            # Redis forgot the scripts under this connection: whatever was
            # sent after this one may run before it if it is sent again
            # here, so the connection is dropped; this one goes first on
            # the next, after every script is loaded again.
            # (Its reply came on the live connection, unless an earlier
            # NOSCRIPT dropped it already.)
            connection = self._connection
            if connection is not None:
                self._lost()
                connection.drop(
                    ConnectionLost(
                        "%s at %s forgot the scripts: reconnecting to load them again"
                        % (self._role, self.address.where())
                    )
                )
            return self.execute(*arguments)

        return d.addErrback(unknown)

    def measureClock(self):
        """
        Measure L{offset} on every connection, in its handshake, from now
        on (and on the live one at once): for L{evalInTime}. Called before
        the first connection is up, the first script is in time already.
        """
        if not self._inTime:
            self._inTime = True
            self.checkClock()

    def checkClock(self):
        """
        Measure L{offset} again on the live connection, if there is one and
        no measure is under way (a heartbeat does, every second: a clock
        stepped or drifting since the handshake is caught within one; and
        so does each script refused late, which may come by thousands).
        """
        if self._inTime and self._execute is not None and not self._measuring:
            self._measuring = True

            def done(_):
                self._measuring = False

            self._measure(self._execute).addBoth(done)

    def _measure(self, execute):
        """
        How far Redis's clock is from this host's (L{offset}), from a
        C{TIME}: Redis read its clock between the command's sending and its
        reply's arrival; the offset is taken as if at the arrival, its
        lowest bound, so that an error of the measure (a slow round trip)
        makes deadlines early (a script refused, and run again), never late
        (a script given up that still runs).
        """

        def measured(time):
            seconds, micro = time
            self.offset = int(seconds) + int(micro) / 1e6 - self._reactor.seconds()

        return execute("TIME").addCallback(measured)

    def evalInTime(self, script, keys=(), args=()):
        """
        Like L{eval}, but the script does nothing if Redis starts it after
        the command's deadline (by Redis's clock: the deadline is moved by
        L{offset}, measured on each connection, so the clocks need not
        agree): the command then fails with L{DeadlineMissed} here, as it
        has already failed by the time Redis would run it. A command sent
        to a Redis that stalls, then given up (its connection dropped),
        may still be run once Redis goes on; its sender has answered
        without it, or run it again, or stopped: it must not act late.
        The deadline goes last in the arguments.
        """
        guarded = self._inTimeScripts.get(script)
        if guarded is None:
            guarded = self._inTimeScripts[script] = IN_TIME + script
        due = _ByRedisClock(self, self._reactor.seconds() + self.address.deadline)
        return self.eval(guarded, keys, tuple(args) + (due,)).addErrback(self._late)

    def _late(self, failure):
        failure.trap(RedisError)
        # Redis says "ERR LATE" (it adds the code to an error without one).
        if "LATE" in str(failure.value).split()[:2]:
            # The clocks may have moved since they were compared.
            self.checkClock()
            raise DeadlineMissed(
                "%s at %s ran a script after its deadline" % (self._role, self.address.where())
            )
        return failure

    def giveUpWaiting(self, why="the Redis client was closed"):
        """
        Fail at once, with L{ConnectionLost}, the commands waiting for a
        connection: never sent, they never run.
        """
        if self._queueTimer is not None and self._queueTimer.active():
            self._queueTimer.cancel()
        self._queueTimer = None
        queued, self._queued = self._queued, deque()
        for _, d, _ in queued:
            d.errback(ConnectionLost(why))

    def disconnect(self):
        """
        Stop reconnecting and close the connection.
        """
        self.closed = True
        self.giveUpWaiting()
        stopped = [self._service.stopService()]
        if self._watcher is not None:
            stopped.append(self._watcher.stop())
        return defer.gatherResults(stopped, consumeErrors=True).addCallback(lambda _: None)


#: Where the password may come from when neither the URL nor a file gives
#: it (systemd's credentials, a container's secrets).
PASSWORD_ENVIRONMENT = "CLIENTPROXY_REDIS_PASSWORD"


class SentinelWatcher:
    """
    A connection to one of the sentinels, subscribed to C{+switch-master}:
    when Sentinel switches the master of the service, C{switched()} is
    called (the client drops its connection and asks again) without
    waiting for a command to fail on the old one.
    """

    log = Logger()

    def __init__(self, endpoint, switched, reactor):
        self._endpoint = endpoint
        self._switched = switched
        address = endpoint.address
        watched = RedisAddress("sentinels", sentinels=address.sentinels, deadline=address.deadline)
        self._redis = Redis(
            watched,
            reactor,
            onConnected=self._subscribe,
            endpoint=_AnySentinel(endpoint),
            handshake=False,
            role="Sentinel",
        )

    @defer.inlineCallbacks
    def _subscribe(self, connection):
        connection.listen(self._message)
        yield connection.execute("SUBSCRIBE", "+switch-master")
        connection.ping(max(0.5, self._endpoint.address.deadline / 2))

    def _message(self, channel, message):
        # "<service> <old ip> <old port> <new ip> <new port>"
        fields = message.split(" ")
        if len(fields) != 5 or fields[0] != self._endpoint.address.service:
            return
        master = (fields[3], int(fields[4]))
        if master != self._endpoint.master:
            self.log.info(
                "Sentinel switched the master of {service} to {host}:{port}: reconnecting",
                service=fields[0],
                host=master[0],
                port=master[1],
            )
            self._switched()

    def stop(self):
        return self._redis.disconnect()


@implementer(IStreamClientEndpoint)
class _AnySentinel:
    """
    The first sentinel of a L{SentinelEndpoint} that takes a connection.
    """

    def __init__(self, sentinels):
        self._sentinels = sentinels

    @defer.inlineCallbacks
    def connect(self, factory):
        last = None
        for host, port in list(self._sentinels.sentinels):
            try:
                p = yield self._sentinels._connectTo(host, port).connect(factory)
                return p
            except Exception as e:
                last = e
        raise last
