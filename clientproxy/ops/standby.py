# -*- test-case-name: tests.test_standby -*-
"""
One active process per store: a second clientproxy for the same component
and data directory stands by until the first is gone, then takes over.

Two processes sharing a store must not both serve: both would deliver the
queued messages, and on a server that accepts several connections for one
component (ejabberd spreads stanzas over them) replies would reach the
process that did not send the request. So a process takes an exclusive
lock (C{flock}) on a file beside the store before it connects, and one that
cannot stands by, trying again every L{POLL_INTERVAL} seconds. The kernel
releases the lock when its holder dies, C{kill -9} included, so the
standby takes over within about a second, with the queue and the
subscribers of the shared store.

This covers processes on one host (the lock is local). Prosody refuses a
second connection for a component anyway (C{conflict}), which a process
on another host meets as standing by too (see
L{clientproxy.xmpp.connection.ProxyComponent}).
"""

import fcntl
import os

from twisted.internet import task
from twisted.logger import Logger

#: Seconds between two attempts of a standby to take the lock.
POLL_INTERVAL = 1.0


def lockPath(storeFile):
    """
    The lock file that goes with a store's file.
    """
    return storeFile + ".lock"


class StandbyLock:
    """
    The lock on one store, taken before the component connects.

    @ivar path: the lock file.
    @ivar held: whether this process holds the lock.
    """

    log = Logger()
    #: What a standby waits for, as /readyz says it.
    what = "the store's lock"

    def __init__(self, path, clock, interval=POLL_INTERVAL):
        self.path = path
        self.clock = clock
        self.interval = interval
        self.held = False
        self._file = None
        self._poll = None
        self._onHeld = None

    def acquire(self, onHeld):
        """
        Call C{onHeld()} once this process holds the lock: at once if it
        is free, else when the process that holds it is gone.
        """
        self._onHeld = onHeld
        if self._try():
            return
        self.log.info(
            "Another process holds {path}: standing by, trying every {interval:g} s",
            path=self.path,
            interval=self.interval,
        )
        self._poll = task.LoopingCall(self._again)
        self._poll.clock = self.clock
        self._poll.start(self.interval, now=False)

    def _again(self):
        if self._try():
            self._poll.stop()
            self._poll = None
            self.log.info("Took over: this process now holds {path}", path=self.path)

    def _try(self):
        handle = open(self.path, "a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        self.held = True
        self._onHeld()
        return True

    def release(self):
        """
        Stop standing by, or let the lock go.
        """
        if self._poll is not None:
            self._poll.stop()
            self._poll = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        self.held = False


def lockFor(store, clock):
    """
    The L{StandbyLock} of C{store}, or C{None} for a store in memory (no
    other process can share it) or in Redis (shared across hosts, where a
    local lock means nothing: the server's refusal of a second connection
    keeps one process active).
    """
    if store.path in (None, ":memory:"):
        return None
    return StandbyLock(lockPath(os.path.abspath(store.path)), clock)
