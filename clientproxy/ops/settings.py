# -*- test-case-name: tests.test_tap -*-
"""
Every setting of clientproxy, once.

Each L{Setting} is one row: its name (the option C{--NAME} and the key
C{NAME} in the configuration file), its default, how a value is read
(Twisted's coercers: C{int}, C{float}, L{usage.portCoerce}), whether a
reload applies it to a running proxy (L{LIVE}), needs a restart
(L{RESTART}) or concerns the whole process (L{PROCESS}), the keyword of
L{clientproxy.assembly.makeProxy} it becomes, the least value it may take,
and its help. From L{SETTINGS} come the command line
(L{clientproxy.tap.Options}), the keys of the configuration file and their
types (L{clientproxy.ops.config}), the reload's live/restart split
(L{clientproxy.ops.reload}), the keyword arguments of each proxy, and the
option reference in docs/operations.md (L{readmeTable}; a test checks
that the one there is this one).

Adding an option is one row here, plus its use where it is used.
"""

import math

from twisted.python import usage

from clientproxy.assembly import DEFAULT_TIMEOUT
from clientproxy.handlers.keepalive import DEFAULT_INTERVAL
from clientproxy.handlers.messages import QUEUE_PER_SENDER, QUEUE_SIZE
from clientproxy.handlers.servicepresence import MAX_SUBSCRIBERS, MAX_SUBSCRIBERS_PER_DOMAIN
from clientproxy.routing.pending import (
    MAX_PENDING,
    MAX_PENDING_BYTES,
    MAX_PENDING_FROM_TARGET,
    MAX_PENDING_PER_REQUESTER,
)
from clientproxy.routing.policy import MAX_STANZA_SIZE
from clientproxy.routing.refusals import REFUSAL_TTL
from clientproxy.routing.selection import AUTO
from clientproxy.routing.strategies import DEFAULT as DEFAULT_STRATEGY
from clientproxy.state.redis.address import DEFAULT_DEADLINE

#: When a setting takes effect.
LIVE, RESTART, PROCESS, ONCE = "live", "restart", "process", "once"

#: What a value is, for the configuration file: a flag is C{true} or
#: C{false}, a list is a list of strings.
FLAG, LIST = "flag", "list"


class Setting:
    """
    One setting.

    @ivar name: C{--NAME} on the command line, C{NAME} in the file.
    @ivar default: its value when not given.
    @ivar help: one line for C{--help}.
    @ivar coerce: how a given value is read (C{int}, C{float},
        L{usage.portCoerce}), or C{None} for a string; L{FLAG} or L{LIST}
        for a flag and a repeatable option.
    @ivar when: L{LIVE} (a reload applies it), L{RESTART} (a reload names
        it as needing a restart), L{PROCESS} (of the process, not of one
        proxy: at the top of the file) or L{ONCE} (no change of its own to
        report: the file itself, the proxy's name, a command, or what comes
        in through another setting, as the secret file through the secret
        and the access file through the lists).
    @ivar argument: the keyword of L{clientproxy.assembly.makeProxy} it
        becomes, or C{None}.
    @ivar minimum: the least value it may take, or C{None}.
    @ivar shown: the default as the option reference shows it, when not
        the value.
    """

    def __init__(
        self, name, default, help, coerce=None, when=LIVE, argument=None, minimum=None, shown=None
    ):
        self.name = name
        self.default = default
        self.help = help
        self.coerce = coerce
        self.when = when
        self.argument = argument
        self.minimum = minimum
        self.shown = shown

    @property
    def kind(self):
        """
        The type of its value in the configuration file: C{int}, C{float},
        C{str}, C{bool} (a flag) or C{list}.
        """
        if self.coerce is FLAG:
            return bool
        if self.coerce is LIST:
            return list
        if self.coerce in (int, usage.portCoerce):
            return int
        if self.coerce is float:
            return float
        return str


SETTINGS = (
    Setting(
        "config",
        None,
        "A TOML file of [[proxy]] tables (see contrib/clientproxy.toml); re-read on SIGHUP.",
        when=ONCE,
    ),
    Setting(
        "jid",
        None,
        "The component's JID, a bare domain such as proxy.example.org.",
        when=ONCE,
        shown="(required)",
    ),
    Setting(
        "target",
        None,
        "The bare JID of the account implementing the service.",
        when=RESTART,
        shown="(required)",
    ),
    Setting(
        "secret-file",
        None,
        "A file holding the component secret (a trailing newline is ignored).",
        when=ONCE,
    ),
    Setting(
        "secret", None, "The component secret (visible in ps: prefer --secret-file).", when=RESTART
    ),
    Setting(
        "secret-credential",
        None,
        "The name of a systemd credential holding the component secret (LoadCredential=NAME:FILE "
        "in the unit), read from $CREDENTIALS_DIRECTORY/NAME.",
        when=ONCE,
    ),
    Setting("host", "127.0.0.1", "The server's component host.", when=RESTART, argument="host"),
    Setting(
        "port",
        5347,
        "The server's component port.",
        usage.portCoerce,
        when=RESTART,
        argument="port",
        minimum=1,
    ),
    Setting(
        "tls",
        False,
        "Connect to the server with direct TLS and verify its certificate.",
        FLAG,
        when=RESTART,
    ),
    Setting(
        "tls-name",
        None,
        "With --tls: the name the server's certificate must be valid for (default: --host).",
        when=RESTART,
    ),
    Setting(
        "ca-file",
        None,
        "With --tls: a PEM file of the certificate authority to trust (default: the system's).",
        when=RESTART,
    ),
    Setting(
        "timeout",
        DEFAULT_TIMEOUT,
        "Seconds a request waits for its reply, retries included.",
        float,
        argument="timeout",
    ),
    Setting(
        "strategy",
        DEFAULT_STRATEGY,
        "How a resource is chosen (see --help-strategies).",
        argument="strategy",
    ),
    Setting(
        "resources",
        None,
        "Only resources whose name matches this regular expression (searched, not anchored: "
        "^focus$ for one exact name); other sessions of the target account are never asked.",
        argument="resources",
    ),
    Setting(
        "match-features",
        AUTO,
        "auto: the resources advertising the request's namespace first; "
        "strict: only those; off: every resource alike.",
        argument="matchFeatures",
    ),
    Setting(
        "refusal-ttl",
        REFUSAL_TTL,
        "Seconds a refusal learnt is remembered (0: refusals not learnt).",
        float,
        argument="refusalTTL",
        minimum=0,
    ),
    Setting(
        "affinity",
        "none",
        "Same key, same resource: none, requester, bare-requester or attribute:NAME.",
        argument="affinity",
    ),
    Setting(
        "hold",
        0.0,
        "Seconds a request waits in line for a resource when none can serve it, and a request "
        "safe to repeat whose resource left waits for the next (within --timeout; 0: "
        "service-unavailable at once).",
        float,
        argument="hold",
        minimum=0,
    ),
    Setting(
        "idempotent",
        (),
        "A namespace whose sets are safe to repeat: sent again like a get when their resource "
        "leaves (repeatable).",
        LIST,
        argument="idempotent",
        shown="none",
    ),
    Setting(
        "data-dir",
        None,
        "Where queued messages and service subscribers are kept (one SQLite file per "
        "component). Default: $STATE_DIRECTORY (systemd's StateDirectory=), else "
        "$XDG_STATE_HOME/clientproxy (~/.local/state/clientproxy), made if missing.",
        when=RESTART,
        argument="dataDir",
        shown="`$STATE_DIRECTORY`, else the user's",
    ),
    Setting(
        "redis",
        None,
        "Share the requests in flight, the target's resources, queued messages and service "
        "subscribers in Redis with the other processes serving the component: "
        "redis://[user:password@]host:port/db, rediss:// (TLS), unix:///path?db=N or "
        "redis+sentinel://host:26379,host2:26379/service/db (see docs/instances.md).",
        when=RESTART,
        argument="redis",
    ),
    Setting(
        "lease",
        False,
        "With --redis: connect only while this process holds the component's lease in Redis, "
        "so one process is connected at a time and a standby takes over within seconds of a "
        "hung or lost one (for Prosody; not for several active processes on ejabberd; see "
        "docs/instances.md).",
        FLAG,
        when=RESTART,
        argument="lease",
    ),
    Setting(
        "redis-password-file",
        None,
        "A file holding the Redis password (a trailing newline is ignored); "
        "or $CLIENTPROXY_REDIS_PASSWORD, or in the URL.",
        when=ONCE,
    ),
    Setting(
        "redis-ca-file",
        None,
        "With rediss://: a PEM file of the certificate authority to trust (default: the system's).",
        when=RESTART,
    ),
    Setting(
        "redis-timeout",
        DEFAULT_DEADLINE,
        "Seconds a Redis command may wait for its reply; a connection that misses it is "
        "dropped and made again.",
        float,
        when=RESTART,
        minimum=0.1,
    ),
    Setting(
        "queue-per-sender",
        QUEUE_PER_SENDER,
        "Most messages queued from one sender while the target is offline.",
        int,
        argument="queuePerSender",
        minimum=0,
    ),
    Setting(
        "queue-size",
        QUEUE_SIZE,
        "Most messages queued in all.",
        int,
        argument="queueSize",
        minimum=0,
    ),
    Setting(
        "grace",
        5.0,
        "Seconds requests in flight get to finish on shutdown.",
        float,
        argument="grace",
        minimum=0,
    ),
    Setting(
        "max-pending",
        MAX_PENDING,
        "Most requests in flight in all (0: no bound).",
        int,
        argument="maxPending",
        minimum=0,
    ),
    Setting(
        "max-pending-per-requester",
        MAX_PENDING_PER_REQUESTER,
        "Most requests in flight from one bare JID (0: no bound).",
        int,
        argument="maxPendingPerRequester",
        minimum=0,
    ),
    Setting(
        "max-pending-from-target",
        MAX_PENDING_FROM_TARGET,
        "Most requests started by the target in flight (0: no bound).",
        int,
        argument="maxPendingFromTarget",
        minimum=0,
    ),
    Setting(
        "max-pending-bytes",
        MAX_PENDING_BYTES,
        "Most bytes the requests in flight keep, in all: requests, addresses and ids "
        "(0: no bound).",
        int,
        argument="maxPendingBytes",
        minimum=0,
        shown="67108864 (64 MiB)",
    ),
    Setting(
        "max-subscribers",
        MAX_SUBSCRIBERS,
        "Most subscribers to the service's presence (0: no bound).",
        int,
        argument="maxSubscribers",
        minimum=0,
    ),
    Setting(
        "max-subscribers-per-domain",
        MAX_SUBSCRIBERS_PER_DOMAIN,
        "Most subscribers from one domain (0: no bound).",
        int,
        argument="maxSubscribersPerDomain",
        minimum=0,
    ),
    Setting(
        "rate",
        0.0,
        "Stanzas a second one bare JID may send (0: no limit).",
        float,
        argument="rate",
        shown="off",
    ),
    Setting(
        "burst",
        None,
        "Stanzas one bare JID may send at once (default: the rate).",
        float,
        argument="burst",
        shown="the rate",
    ),
    Setting(
        "domain-rate",
        None,
        "Stanzas a second one domain may send (default: 10 x --rate; 0: no limit).",
        float,
        argument="domainRate",
        shown="10 x `--rate`",
    ),
    Setting(
        "domain-burst",
        None,
        "Stanzas one domain may send at once (default: 10 x --burst).",
        float,
        argument="domainBurst",
        shown="10 x `--burst`",
    ),
    Setting(
        "keepalive",
        DEFAULT_INTERVAL,
        "Seconds of silence from the server before it is pinged; the link is "
        "dropped after as many more without an answer (0: off).",
        float,
        argument="keepalive",
        minimum=0,
    ),
    Setting(
        "max-stanza-size",
        MAX_STANZA_SIZE,
        "Largest stanza forwarded, in bytes.",
        int,
        argument="maxStanzaSize",
        minimum=0,
    ),
    Setting(
        "allow",
        (),
        "Only this bare JID or domain (and others so given) may use the service.",
        LIST,
        argument="allow",
        shown="everyone",
    ),
    Setting(
        "deny",
        (),
        "This bare JID or domain may not use the service (repeatable).",
        LIST,
        argument="deny",
        shown="nobody",
    ),
    Setting(
        "access-file",
        None,
        "A file of 'allow JID' and 'deny JID' lines.",
        when=ONCE,
    ),
    Setting(
        "metrics-port",
        0,
        "Serve /metrics and /health on this port (0: off).",
        usage.portCoerce,
        when=PROCESS,
        shown="off",
    ),
    Setting(
        "metrics-interface",
        "127.0.0.1",
        "The address the metrics endpoint listens on.",
        when=PROCESS,
    ),
    Setting(
        "log-level",
        "info",
        "The lowest level of the log lines written: debug, info, warn, error or critical.",
        when=PROCESS,
    ),
    Setting(
        "log-format",
        "text",
        "text (twistd's lines) or json (one JSON object a line, with twisted.logger's fields); "
        "written to the journal, each line carries its priority.",
        when=PROCESS,
    ),
    Setting("help-strategies", False, "List the dispatch strategies and exit.", FLAG, when=ONCE),
)

#: The settings by name.
BY_NAME = {setting.name: setting for setting in SETTINGS}


def named(when):
    """
    The names of the settings that take effect C{when}.
    """
    return tuple(s.name for s in SETTINGS if s.when == when)


def optParameters():
    """
    The C{optParameters} of L{usage.Options}: every setting that takes a
    value, but the repeatable ones (methods of the options class).
    """
    return [
        [s.name, None, s.default, s.help] + ([s.coerce] if s.coerce is not None else [])
        for s in SETTINGS
        if s.coerce not in (FLAG, LIST)
    ]


def optFlags():
    """
    The C{optFlags} of L{usage.Options}.
    """
    return [[s.name, None, s.help] for s in SETTINGS if s.coerce is FLAG]


def proxyArguments(options):
    """
    The keyword arguments of L{clientproxy.assembly.makeProxy} that
    checked options say, but C{tls} (made of three settings).
    """
    return {s.argument: options[s.name] for s in SETTINGS if s.argument is not None}


def checkMinimums(options):
    """
    @raise usage.UsageError: a setting is below its minimum.
    """
    for s in SETTINGS:
        value = options[s.name]
        if s.coerce is float and value is not None and not math.isfinite(value):
            # nan compares false with everything, inf is no number of seconds.
            raise usage.UsageError("--%s must be a finite number" % (s.name,))
        if s.minimum is not None and value is not None and value < s.minimum:
            if s.minimum == 0:
                raise usage.UsageError("--%s must not be negative" % (s.name,))
            raise usage.UsageError("--%s must be at least %s" % (s.name, s.minimum))


def readmeTable():
    """
    The option reference of docs/operations.md, as Markdown lines: one row per
    setting, with its default and whether a reload applies it.
    """
    lines = ["| option | default | on reload | meaning |", "|---|---|---|---|"]
    applies = {
        LIVE: "applied",
        RESTART: "needs a restart",
        PROCESS: "needs a restart",
        ONCE: "",
    }
    for s in SETTINGS:
        if s.shown is not None:
            default = s.shown
        elif s.default is None or s.coerce is FLAG:
            default = ""
        else:
            default = "`%s`" % (s.default,)
        lines.append("| `--%s` | %s | %s | %s |" % (s.name, default, applies[s.when], s.help))
    return lines
