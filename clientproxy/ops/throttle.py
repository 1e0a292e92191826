# -*- test-case-name: tests.test_throttle -*-
"""
Log lines that outsiders can cause, rate-limited.

Anything a peer can make the component log (a drop, a refusal learnt, a
full queue), a peer can make it log a million times. Each such line goes
through a L{Throttle}: at most one line per kind every C{interval} seconds,
and the line that is written says how many were not written since, so the
log stays readable under a flood and the counters (not the log) say how
many there were. What a peer chose appears in a line only L{quoted}.
"""

import time

#: Seconds between two lines of the same kind.
INTERVAL = 10.0


def quoted(text, limit=80):
    """
    C{text}, chosen by a peer, as it may appear in a log line: an ASCII
    repr, cut to about C{limit} characters, so a value holding a newline
    or a megabyte can neither forge nor flood lines.
    """
    if text is None:
        return "None"
    return ascii(text[:limit]) + ("..." if len(text) > limit else "")


class Throttle:
    """
    Decides which lines of each kind are written.

    Kinds are the caller's fixed names (a drop reason, C{"refusal"}), never
    strings chosen by a peer: the table holds one entry per kind.
    """

    def __init__(self, now=time.monotonic, interval=INTERVAL):
        self._now = now
        self.interval = interval
        # kind: [time of the last line written, lines not written since]
        self._kinds = {}

    def __call__(self, kind):
        """
        Whether to write a line of C{kind} now.

        @return: C{None} when the line is not to be written; else the
            number of lines of that kind not written since the last one.
        """
        now = self._now()
        last = self._kinds.get(kind)
        if last is None:
            self._kinds[kind] = [now, 0]
            return 0
        if now - last[0] < self.interval:
            last[1] += 1
            return None
        skipped = last[1]
        last[0] = now
        last[1] = 0
        return skipped
