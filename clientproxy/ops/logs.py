# -*- test-case-name: tests.test_logs -*-
"""
The log as operators filter and ship it: C{--log-level} (lines below it
are not written: debug lines only at C{debug}), C{--log-format text|json}
(C{json}: one JSON object a line, with the structured fields of
twisted.logger's event, its text in C{log_text} and its level's name in
C{log_level}), and under systemd, when the output is the journal
(C{$JOURNAL_STREAM} names it), each line prefixed with its syslog priority
(C{<6>} for info) so that C{journalctl -p warning} filters it; the journal
stamps lines itself, so the text format leaves its time stamp out there.

twistd writes the log; C{twistd clientproxy} hands it this observer as the
application's L{ILogObserver}, writing where twistd would have (standard
output for C{-n} or C{--logfile=-}, else the log file, rotated on SIGUSR1
as twistd does). With twistd's C{--syslog} or C{--logger}, twistd's own
observer is kept, unfiltered.
"""

import json
import os
import sys

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsJSON,
    eventAsText,
)

#: The levels of C{--log-level}, lowest first.
LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

#: The formats of C{--log-format}.
FORMATS = ("text", "json")

#: The syslog priority (RFC 5424) of each level: journald's C{<N>} prefix.
PRIORITIES = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


def isJournal(stream, environ=None):
    """
    Whether C{stream} is systemd's journal: systemd sets C{$JOURNAL_STREAM}
    to the device and inode of the stream it connects to the journal, so
    the variable alone (inherited by a child whose output goes elsewhere)
    is not enough.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return value == "%d:%d" % (status.st_dev, status.st_ino)


def textFormatter(journal=False):
    """
    The text format: twistd's (C{TIME [SYSTEM] TEXT}, a traceback's lines
    indented); for the journal, without the time and with each line's
    priority.
    """

    def format(event):
        text = eventAsText(event, includeTimestamp=not journal)
        if not text:
            return None
        lines = text.splitlines()
        if not journal:
            return "\n\t".join(lines) + "\n"
        prefix = "<%d>" % (PRIORITIES.get(event.get("log_level"), 6),)
        return "".join(prefix + line + "\n" for line in lines)

    return format


def jsonFormatter(journal=False):
    """
    The JSON format: one object a line, the event's fields as
    twisted.logger's L{eventAsJSON} writes them, with C{log_text} (the
    line as text, a traceback included) and C{log_level} as a name.
    """

    def format(event):
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        record = {k: v for k, v in event.items() if k not in ("log_logger", "log_source")}
        level = event.get("log_level")
        record["log_level"] = getattr(level, "name", None)
        record["log_text"] = text
        try:
            line = eventAsJSON(record)
        except (TypeError, ValueError):
            line = json.dumps({"log_level": record["log_level"], "log_text": text})
        prefix = "<%d>" % (PRIORITIES.get(level, 6),) if journal else ""
        return prefix + line + "\n"

    return format


def observer(stream, level="info", format="text", environ=None):
    """
    An L{ILogObserver} writing to C{stream} the events at C{level} or above,
    in C{format}, with journald's priorities if C{stream} is the journal.
    """
    journal = isJournal(stream, environ)
    formatter = (jsonFormatter if format == "json" else textFormatter)(journal)
    return FilteringLogObserver(
        FileLogObserver(stream, formatter),
        [LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])],
    )


def twistdStream(twistdOptions):
    """
    Where twistd would write its log, by its options (C{--nodaemon},
    C{--logfile}); C{None} when its own observer is to be kept (C{--syslog},
    C{--logger}).
    """
    if twistdOptions is None:
        return sys.stdout
    if twistdOptions.get("syslog") or twistdOptions.get("logger"):
        return None
    name = twistdOptions.get("logfile")
    if name == "-" or (not name and twistdOptions.get("nodaemon")):
        return sys.stdout
    from twisted.python import logfile

    stream = logfile.LogFile.fromFullPath(name or "twistd.log")
    try:
        import signal
    except ImportError:  # pragma: no cover
        return stream
    from twisted.internet import reactor

    def rotate(number, frame):
        reactor.callFromThread(stream.rotate)

    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, rotate)
    return stream


def observerFor(options):
    """
    The log observer of the process for checked options of C{twistd
    clientproxy} (their C{parent} is twistd's), or C{None} to keep twistd's.
    """
    stream = twistdStream(getattr(options, "parent", None))
    if stream is None:
        return None
    return observer(stream, options["log-level"], options["log-format"])
