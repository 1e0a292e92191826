"""
A throwaway Redis (Debian's redis-server) on a free loopback port, in a
temporary directory, with nothing saved to disk: for the tests of state
shared by several clientproxy processes. It may want a password
(C{requirepass}), know ACL users, take TLS on a port of its own (with a
certificate from L{clientproxy.testing.ca}), listen on a Unix socket, be
a replica; L{ThrowawaySentinel} is a Redis Sentinel (Debian's
redis-sentinel) watching one.
"""

import os
import signal

from twisted.internet import defer
from twisted.internet import reactor as globalReactor

from clientproxy.testing.server import ThrowawayServer, freePort


class ThrowawayRedis(ThrowawayServer):
    """
    @ivar port: the port Redis listens on, on 127.0.0.1.
    @ivar tlsPort: the port it takes TLS on, or C{None}.
    @ivar socket: the path of its Unix socket, or C{None}.
    @ivar caFile: with TLS, the CA certificate that signed the server's.
    """

    name = "redis"

    def __init__(
        self,
        reactor=globalReactor,
        password=None,
        users=(),
        tls=False,
        tlsNames=("127.0.0.1", "localhost"),
        unixSocket=False,
        replicaOf=None,
    ):
        """
        @param password: the default user's password (C{requirepass}).
        @param users: ACL rules, each a line C{user NAME ...} of redis.conf
            without the C{user}.
        @param tls: whether to take TLS too, on L{tlsPort}.
        @param tlsNames: the names the server's certificate is valid for.
        @param unixSocket: whether to listen on a Unix socket too.
        @param replicaOf: C{(host, port)} of the master to replicate.
        """
        ThrowawayServer.__init__(self, {}, reactor=reactor)
        self.port = freePort()
        self.password = password
        self.users = list(users)
        self.tlsPort = freePort() if tls else None
        self.socket = os.path.join(self.directory, "redis.sock") if unixSocket else None
        self.replicaOf = replicaOf
        self.caFile = None
        if tls:
            from clientproxy.testing.ca import ThrowawayCA

            self.caFile = os.path.join(self.directory, "ca.pem")
            ca = ThrowawayCA(self.caFile)
            self._cert = os.path.join(self.directory, "redis.pem")
            self._key = os.path.join(self.directory, "redis.key")
            ca.issue(list(tlsNames), self._cert, self._key)

    @property
    def url(self):
        """
        The URL clientproxy's C{--redis} takes for this server.
        """
        return "redis://127.0.0.1:%d/0" % (self.port,)

    @property
    def log(self):
        return os.path.join(self.directory, "redis.log")

    def ports(self):
        return (self.port,)

    def configuration(self):
        """
        The lines of its redis.conf.
        """
        lines = [
            "port %d" % (self.port,),
            "bind 127.0.0.1",
            'save ""',
            "appendonly no",
            "dir %s" % (self.directory,),
            "logfile %s" % (self.log,),
        ]
        if self.password is not None:
            lines.append("requirepass %s" % (self.password,))
        lines += ["user " + rule for rule in self.users]
        if self.tlsPort is not None:
            lines += [
                "tls-port %d" % (self.tlsPort,),
                "tls-cert-file %s" % (self._cert,),
                "tls-key-file %s" % (self._key,),
                "tls-ca-cert-file %s" % (self.caFile,),
                "tls-auth-clients no",
            ]
        if self.socket is not None:
            lines += ["unixsocket %s" % (self.socket,), "unixsocketperm 700"]
        if self.replicaOf is not None:
            lines.append("replicaof %s %d" % self.replicaOf)
            if self.password is not None:
                lines.append("masterauth %s" % (self.password,))
        return lines

    def command(self):
        path = os.path.join(self.directory, "redis.conf")
        with open(path, "w") as f:
            f.write("\n".join(self.configuration()) + "\n")
        return "redis-server", ["redis-server", path], dict(os.environ)

    def pause(self):
        """
        Stop the server (SIGSTOP), as a stalled host or a long pause does:
        connections stay open, nothing is answered.
        """
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self):
        """
        Continue the server after L{pause} (harmless otherwise).
        """
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)


class ThrowawaySentinel(ThrowawayRedis):
    """
    A Redis Sentinel on a free loopback port watching the master
    C{(host, port)} as C{service}, quick to act (a master is down after
    1 s without answers).
    """

    name = "redis-sentinel"

    def __init__(self, master, service="clientproxy", reactor=globalReactor):
        ThrowawayRedis.__init__(self, reactor)
        self.master = master
        self.service = service

    def configuration(self):
        host, port = self.master
        return [
            "port %d" % (self.port,),
            "bind 127.0.0.1",
            "dir %s" % (self.directory,),
            "logfile %s" % (self.log,),
            "sentinel monitor %s %s %d 1" % (self.service, host, port),
            "sentinel down-after-milliseconds %s 1000" % (self.service,),
            "sentinel failover-timeout %s 10000" % (self.service,),
            "sentinel parallel-syncs %s 1" % (self.service,),
        ]

    def command(self):
        executable, argv, env = ThrowawayRedis.command(self)
        return "redis-sentinel", ["redis-sentinel", argv[1]], env


@defer.inlineCallbacks
def startRedis(testCase, **options):
    """
    Start a L{ThrowawayRedis} for C{testCase}, with C{options}; it is
    stopped and removed at the test's clean-up.

    @return: a Deferred that fires with it, once it answers.
    """
    redis = ThrowawayRedis(**options)
    testCase.addCleanup(redis.cleanUp)
    testCase.addCleanup(redis.stop)
    yield redis.start()
    return redis


def cutAfterRunning(redis):
    """
    Lose the next reply that reaches the live connection of C{redis} (a
    L{clientproxy.state.redis.client.Redis}): the connection drops once
    Redis has run the command, before its reply is read (a link cut at
    that point).
    """
    protocol = redis._execute.__self__
    original = protocol.dataReceived

    def cut(data):
        protocol.dataReceived = original
        protocol.drop()

    protocol.dataReceived = cut
