# -*- test-case-name: tests.test_messages -*-
"""
What a component keeps across restarts: messages queued while no resource
of the target is available, and the entities subscribed to the service's
presence. One SQLite file per component in the data directory.

SQLite in WAL mode writes a small row in microseconds, and the store is
used only off the IQ path (queueing happens only while the target is
offline), so every call is done at once; those that
L{clientproxy.state.interfaces.IStore} says may wait return a Deferred that
has fired already, with the result or with the failure (a full disk, a
file gone): never an exception raised into the handler, whose caller is
the stream.
"""

import os
import re
import sqlite3
from collections import Counter

from twisted.internet.defer import execute
from zope.interface import implementer

from clientproxy.state.interfaces import IStore
from clientproxy.xmpp.stanzas import domainOf

#: Why the queue refused a message.
QUEUE_REFUSALS = {1: "the queue is full", 2: "the queue holds its limit from this sender"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    stanza TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_sender ON queue (sender);
CREATE TABLE IF NOT EXISTS subscribers (
    jid TEXT PRIMARY KEY
);
"""


def storePath(directory, component):
    """
    The store's file for C{component} in C{directory}: one file per
    component, so several proxies can share a data directory.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", component)
    return os.path.join(directory, "clientproxy-%s.sqlite" % (safe,))


class SubscriberCounts:
    """
    The number of subscribers, in all and per domain, kept in memory by a
    store: the bounds on them are checked for every subscription request,
    a flood included.
    """

    def __init__(self, jids=()):
        self.total = 0
        self.domains = Counter()
        for jid in jids:
            self.add(jid)

    def add(self, jid):
        self.total += 1
        self.domains[domainOf(jid)] += 1

    def remove(self, jid):
        domain = domainOf(jid)
        self.total -= 1
        self.domains[domain] -= 1
        if not self.domains[domain]:
            del self.domains[domain]

    def count(self, domain=None):
        """
        The number of subscribers, from C{domain} only if given.
        """
        return self.total if domain is None else self.domains.get(domain, 0)


@implementer(IStore)
class Store:
    """
    The queue and the subscribers of one component.

    The number of subscribers is kept in memory too (L{SubscriberCounts},
    counted at start and on every connection to the server, see
    L{recount}).

    @ivar path: the SQLite file, or C{":memory:"} (tests).
    """

    def __init__(self, path):
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # A standby process may share the file (see docs/instances.md): wait for its lock rather than fail.
            self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self.recount()

    def recount(self):
        """
        Count the subscribers again, from the file: another process sharing
        it (an instance this one stood by for) may have changed them.
        """
        return execute(self._recount)

    def _recount(self):
        self._counts = SubscriberCounts(self.subscribers())

    def close(self):
        self._db.close()

    def enqueue(self, sender, stanza, queueSize=0, queuePerSender=0):
        """
        Append a message (serialised) from C{sender} (a bare JID) to the
        queue, if it holds fewer than C{queueSize} in all and fewer than
        C{queuePerSender} from C{sender} (0: no bound).

        @return: a Deferred firing with C{None} once queued, or with why
            the queue refused it.
        """
        return execute(self._enqueue, sender, stanza, queueSize, queuePerSender)

    def _enqueue(self, sender, stanza, queueSize, queuePerSender):
        if queueSize and self.queueLength() >= queueSize:
            return QUEUE_REFUSALS[1]
        if queuePerSender and self.queueLength(sender) >= queuePerSender:
            return QUEUE_REFUSALS[2]
        self._db.execute("INSERT INTO queue (sender, stanza) VALUES (?, ?)", (sender, stanza))

    def queued(self, limit=-1):
        """
        The queued messages, oldest first, as C{(id, stanza)}: at most
        C{limit} of them (all by default); a Deferred.
        """
        return execute(
            lambda: self._db.execute(
                "SELECT id, stanza FROM queue ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        )

    def delivered(self, ids):
        """
        Forget the queued messages C{ids}: they have been delivered.
        """
        self._db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])

    def giveBack(self, batch):
        """
        Nothing to do: L{queued} only reads, L{delivered} removes.
        """

    def queueLength(self, sender=None):
        """
        The number of queued messages, from C{sender} only if given.
        """
        if sender is None:
            row = self._db.execute("SELECT COUNT(*) FROM queue").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM queue WHERE sender = ?", (sender,)
            ).fetchone()
        return row[0]

    def subscribers(self):
        return [row[0] for row in self._db.execute("SELECT jid FROM subscribers ORDER BY jid")]

    def isSubscriber(self, jid):
        return (
            self._db.execute("SELECT 1 FROM subscribers WHERE jid = ?", (jid,)).fetchone()
            is not None
        )

    def subscriberCount(self, domain=None):
        return self._counts.count(domain)

    def addSubscriber(self, jid):
        if self._db.execute("INSERT OR IGNORE INTO subscribers (jid) VALUES (?)", (jid,)).rowcount:
            self._counts.add(jid)

    def removeSubscriber(self, jid):
        if self._db.execute("DELETE FROM subscribers WHERE jid = ?", (jid,)).rowcount:
            self._counts.remove(jid)
