"""
A throwaway Redis (Debian's redis-server) on a free loopback port, in a
temporary directory, with nothing saved to disk: for the tests of state
shared by several clientproxy processes.
"""

import os

from twisted.internet import defer
from twisted.internet import reactor as globalReactor

from clientproxy.testing.server import ThrowawayServer, freePort


class ThrowawayRedis(ThrowawayServer):
    """
    @ivar port: the port Redis listens on, on 127.0.0.1.
    """

    name = "redis"

    def __init__(self, reactor=globalReactor):
        ThrowawayServer.__init__(self, {}, reactor=reactor)
        self.port = freePort()

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

    def command(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", self.directory]
        argv += ["--logfile", self.log]
        return "redis-server", argv, dict(os.environ)


@defer.inlineCallbacks
def startRedis(testCase):
    """
    Start a L{ThrowawayRedis} for C{testCase}; it is stopped and removed at
    the test's clean-up.

    @return: a Deferred that fires with it, once it answers.
    """
    redis = ThrowawayRedis()
    testCase.addCleanup(redis.cleanUp)
    testCase.addCleanup(redis.stop)
    yield redis.start()
    return redis
