# -*- test-case-name: tests.test_store -*-
"""
What a component keeps across restarts: messages queued while no resource
of the target is available, and the entities subscribed to the service's
presence. One SQLite file per component in the data directory.

Calls are synchronous: SQLite in WAL mode writes a small row in
microseconds, and the store is used only off the IQ path (queueing happens
only while the target is offline).
"""

import os
import re
import sqlite3

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


class Store:
    """
    The queue and the subscribers of one component.

    @param path: the SQLite file, or C{":memory:"} (tests).
    """

    def __init__(self, path):
        self._db = sqlite3.connect(path, isolation_level=None)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self):
        self._db.close()

    def enqueue(self, sender, stanza):
        """
        Append a message (serialised) from C{sender} (a bare JID) to the
        queue.
        """
        self._db.execute("INSERT INTO queue (sender, stanza) VALUES (?, ?)", (sender, stanza))

    def queued(self):
        """
        Return the queued messages, oldest first, as C{(id, stanza)}.
        """
        return self._db.execute("SELECT id, stanza FROM queue ORDER BY id").fetchall()

    def delivered(self, ids):
        """
        Forget the queued messages C{ids}: they have been delivered.
        """
        self._db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])

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

    def addSubscriber(self, jid):
        self._db.execute("INSERT OR IGNORE INTO subscribers (jid) VALUES (?)", (jid,))

    def removeSubscriber(self, jid):
        self._db.execute("DELETE FROM subscribers WHERE jid = ?", (jid,))
