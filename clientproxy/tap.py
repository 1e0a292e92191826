# -*- test-case-name: tests.test_tap -*-
"""
C{twistd clientproxy}: the command-line options and the service they make.

The tac files in C{tac/} build their services with the same L{Options} and
L{makeService}.
"""

import gc
import os
import re
import sys

from twisted.application import service
from twisted.python import usage
from twisted.words.protocols.jabber.jid import JID, InvalidFormat

from clientproxy.xmpp.connection import TLSSettings
from clientproxy.ops.config import ConfigError, proxyArguments, proxyName, readConfig
from clientproxy.handlers.keepalive import DEFAULT_INTERVAL
from clientproxy.handlers.messages import QUEUE_PER_SENDER, QUEUE_SIZE
from clientproxy.routing.pending import (
    MAX_PENDING,
    MAX_PENDING_BYTES,
    MAX_PENDING_FROM_TARGET,
    MAX_PENDING_PER_REQUESTER,
)
from clientproxy.ops.metrics import metricsService
from clientproxy.state.redis.store import checkURL as checkRedisURL
from clientproxy.ops.reload import ReloadService
from clientproxy.routing.policy import MAX_STANZA_SIZE, normalise, readAccessFile
from clientproxy.routing.selection import AUTO, MATCH_MODES, REFUSAL_TTL, Affinity
from clientproxy.assembly import DEFAULT_TIMEOUT, makeProxy
from clientproxy.handlers.servicepresence import MAX_SUBSCRIBERS, MAX_SUBSCRIBERS_PER_DOMAIN
from clientproxy.routing.strategies import DEFAULT, availableStrategies
from clientproxy.ops.systemd import SystemdNotifier, notifySocket

SECRET_ENVIRONMENT = "CLIENTPROXY_SECRET"


def normalisedJID(value, what):
    """
    Parse and normalise a JID given on the command line.

    @raise usage.UsageError: it does not parse.
    """
    try:
        return JID(value)
    except (InvalidFormat, RuntimeError) as e:
        raise usage.UsageError("%s: not a valid JID: %r (%s)" % (what, value, e))


class Options(usage.Options):
    synopsis = (
        "--config FILE [options] | --jid COMPONENT --target ACCOUNT "
        "(--secret-file FILE | --secret SECRET) [options]"
    )
    longdesc = (
        "Run an XMPP external component (XEP-0114) that forwards every IQ "
        "request sent to it to one available resource of the target account, "
        "and routes the replies back. The secret may also be given in the "
        "environment variable %s." % (SECRET_ENVIRONMENT,)
    )

    optParameters = [
        [
            "config",
            None,
            None,
            "A TOML file of [[proxy]] tables (see contrib/clientproxy.toml); re-read on SIGHUP.",
        ],
        ["jid", None, None, "The component's JID, e.g. proxy.example.org."],
        ["target", None, None, "The bare JID of the account implementing the service."],
        ["secret-file", None, None, "A file holding the component secret."],
        ["secret", None, None, "The component secret (prefer --secret-file)."],
        ["host", None, "127.0.0.1", "The server's component host."],
        [
            "tls-name",
            None,
            None,
            "With --tls: the name the server's certificate must be valid for (default: --host).",
        ],
        [
            "ca-file",
            None,
            None,
            "With --tls: a PEM file of the certificate authority to trust (default: the system's).",
        ],
        ["port", None, 5347, "The server's component port.", int],
        ["timeout", None, DEFAULT_TIMEOUT, "Seconds a request waits for its reply.", float],
        ["strategy", None, DEFAULT, "How a resource is chosen (see --help-strategies)."],
        ["resources", None, None, "Only resources whose name matches this regular expression."],
        [
            "match-features",
            None,
            AUTO,
            "auto: only resources advertising the request's namespace, when any does; "
            "strict: only those; off: every resource.",
        ],
        [
            "refusal-ttl",
            None,
            REFUSAL_TTL,
            "Seconds a resource that refused a namespace is not offered it (0: off).",
            float,
        ],
        [
            "affinity",
            None,
            "none",
            "Same key, same resource: none, requester, bare-requester or attribute:NAME.",
        ],
        ["data-dir", None, ".", "Where queued messages and service subscribers are kept."],
        [
            "redis",
            None,
            None,
            "Share the requests in flight, the target's resources, queued messages and service "
            "subscribers in Redis (redis://host:port/db) with the other processes serving the "
            "component (see README, Several instances).",
        ],
        [
            "queue-per-sender",
            None,
            QUEUE_PER_SENDER,
            "Most messages queued from one sender while the target is offline.",
            int,
        ],
        ["queue-size", None, QUEUE_SIZE, "Most messages queued in all.", int],
        ["grace", None, 5.0, "Seconds requests in flight get to finish on shutdown.", float],
        ["max-pending", None, MAX_PENDING, "Most requests in flight in all (0: no bound).", int],
        [
            "max-pending-per-requester",
            None,
            MAX_PENDING_PER_REQUESTER,
            "Most requests in flight from one bare JID (0: no bound).",
            int,
        ],
        [
            "max-pending-from-target",
            None,
            MAX_PENDING_FROM_TARGET,
            "Most requests started by the target in flight (0: no bound).",
            int,
        ],
        [
            "max-pending-bytes",
            None,
            MAX_PENDING_BYTES,
            "Most bytes the requests in flight keep, in all: requests, addresses and ids "
            "(0: no bound).",
            int,
        ],
        [
            "max-subscribers",
            None,
            MAX_SUBSCRIBERS,
            "Most subscribers to the service's presence (0: no bound).",
            int,
        ],
        [
            "max-subscribers-per-domain",
            None,
            MAX_SUBSCRIBERS_PER_DOMAIN,
            "Most subscribers from one domain (0: no bound).",
            int,
        ],
        ["rate", None, 0.0, "Stanzas a second one bare JID may send (0: no limit).", float],
        ["burst", None, None, "Stanzas one bare JID may send at once (default: the rate).", float],
        [
            "domain-rate",
            None,
            None,
            "Stanzas a second one domain may send (default: 10 x --rate; 0: no limit).",
            float,
        ],
        [
            "domain-burst",
            None,
            None,
            "Stanzas one domain may send at once (default: 10 x --burst).",
            float,
        ],
        [
            "keepalive",
            None,
            DEFAULT_INTERVAL,
            "Seconds of silence from the server before it is pinged; the link is "
            "dropped after as many more without an answer (0: off).",
            float,
        ],
        ["max-stanza-size", None, MAX_STANZA_SIZE, "Largest stanza forwarded, in bytes.", int],
        ["access-file", None, None, "A file of 'allow JID' and 'deny JID' lines."],
        ["metrics-port", None, 0, "Serve /metrics and /health on this port (0: off).", int],
        ["metrics-interface", None, "127.0.0.1", "The address the metrics endpoint listens on."],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["allow"] = []
        self["deny"] = []

    def opt_allow(self, entry):
        """Only this bare JID or domain (and others so given) may use the service."""
        self["allow"].append(entry)

    def opt_deny(self, entry):
        """This bare JID or domain may not use the service (repeatable)."""
        self["deny"].append(entry)

    optFlags = [
        ["help-strategies", None, "List the dispatch strategies and exit."],
        ["tls", None, "Connect to the server with direct TLS and verify its certificate."],
    ]

    def opt_help_strategies(self):
        for name, plugin in sorted(availableStrategies().items()):
            print("%-16s %s" % (name, plugin.description))
        raise SystemExit(0)

    #: Options that concern the process, not one proxy.
    PROCESS_OPTIONS = ("config", "metrics-port", "metrics-interface")

    def parseOptions(self, options=None):
        if options is None:
            options = sys.argv[1:]
        # What was given, to tell an override from a default with --config,
        # and to read the same again on a reload.
        self.arguments = list(options)
        self.given = [a[2:].split("=", 1)[0] for a in options if a.startswith("--")]
        usage.Options.parseOptions(self, options)

    def kinds(self):
        """
        The type of each per-proxy option's value: C{int}, C{float}, C{str}
        or C{bool} (a flag).
        """
        kinds = {"tls": bool}
        for name, _, _, _, *coerce in self.optParameters:
            if name not in self.PROCESS_OPTIONS:
                kinds[name] = coerce[0] if coerce and coerce[0] in (int, float) else str
        return kinds

    def overrides(self):
        """
        The per-proxy options given on the command line, as arguments.
        """
        kinds = self.kinds()
        arguments = []
        for name in dict.fromkeys(self.given):
            if name in ("allow", "deny"):
                for entry in self[name]:
                    arguments += ["--" + name, entry]
            elif kinds.get(name) is bool:
                arguments += ["--" + name] if self[name] else []
            elif name in kinds:
                arguments += ["--" + name, str(self[name])]
        return arguments

    def loadProxies(self):
        """
        The proxies of the configuration file, each checked as a command
        line would be, with the command line's options over a single one.

        @return: a list of L{Options}, one per proxy.
        @raise usage.UsageError: the file cannot be used (the message names
            the file, the proxy and the key).
        """
        path = self["config"]
        try:
            process, tables = readConfig(path)
            overrides = self.overrides()
            if overrides and len(tables) > 1:
                raise ConfigError(
                    "%s: command-line options can override the file only when it has "
                    "one proxy" % (path,)
                )
            kinds = self.kinds()
            proxies = []
            for number, table in enumerate(tables, 1):
                where = proxyName(path, number, table)
                options = Options()
                try:
                    options.parseOptions(proxyArguments(where, table, kinds) + overrides)
                except usage.UsageError as e:
                    raise ConfigError("%s: %s" % (where, e))
                proxies.append(options)
        except ConfigError as e:
            raise usage.UsageError(str(e))
        jids = [p["jid"] for p in proxies]
        if len(set(jids)) != len(jids):
            raise usage.UsageError("%s: two proxies with the same jid" % (path,))
        for key, value in process.items():
            if key not in self.given:
                self[key] = value
        return proxies

    def postOptions(self):
        if self["config"] is not None:
            self["proxies"] = self.loadProxies()
        else:
            self.checkProxy()
            self["proxies"] = [self]
        if not 0 <= self["metrics-port"] < 65536:
            raise usage.UsageError("--metrics-port must be a TCP port, or 0 for none")

    def checkProxy(self):
        """
        Check and normalise the options of one proxy.
        """
        for required in ("jid", "target"):
            if not self[required]:
                raise usage.UsageError("--%s is required" % (required,))
        component = normalisedJID(self["jid"], "--jid")
        if component.user or component.resource:
            raise usage.UsageError("--jid: a component's JID is a bare domain")
        target = normalisedJID(self["target"], "--target")
        if not target.user or target.resource:
            raise usage.UsageError("--target: the bare JID of an account, e.g. svc@example.org")
        self["jid"] = component.full()
        self["target"] = target.full()
        self["secret"] = self._secret()
        if not self["timeout"] > 0:
            raise usage.UsageError("--timeout must be positive")
        if self["access-file"] is not None:
            try:
                allow, deny = readAccessFile(self["access-file"])
            except (OSError, ValueError) as e:
                raise usage.UsageError("--access-file: %s" % (e,))
            self["allow"] += allow
            self["deny"] += deny
        for listed in ("allow", "deny"):
            try:
                self[listed] = [normalise(entry) for entry in self[listed]]
            except ValueError as e:
                raise usage.UsageError("--%s: %s" % (listed, e))
        for bound in (
            "max-pending",
            "max-pending-per-requester",
            "max-pending-from-target",
            "max-pending-bytes",
            "max-subscribers",
            "max-subscribers-per-domain",
            "max-stanza-size",
            "keepalive",
        ):
            if self[bound] < 0:
                raise usage.UsageError("--%s must not be negative" % (bound,))
        for rate, burst in (("rate", "burst"), ("domain-rate", "domain-burst")):
            if (self[rate] is not None and self[rate] < 0) or (
                self[burst] is not None and self[burst] < 1
            ):
                raise usage.UsageError("--%s must not be negative, --%s at least 1" % (rate, burst))
        if self["ca-file"] is not None and not os.path.isfile(self["ca-file"]):
            raise usage.UsageError("--ca-file: no such file: %s" % (self["ca-file"],))
        if self["grace"] < 0:
            raise usage.UsageError("--grace must not be negative")
        if not 0 < self["port"] < 65536:
            raise usage.UsageError("--port must be a TCP port")
        strategies = availableStrategies()
        if self["strategy"] not in strategies:
            raise usage.UsageError(
                "--strategy: unknown strategy %r; known: %s"
                % (self["strategy"], ", ".join(sorted(strategies)))
            )
        if not os.path.isdir(self["data-dir"]):
            raise usage.UsageError("--data-dir: no such directory: %s" % (self["data-dir"],))
        if self["redis"] is not None:
            try:
                checkRedisURL(self["redis"])
            except ValueError as e:
                raise usage.UsageError("--redis: %s" % (e,))
        for bound in ("queue-per-sender", "queue-size"):
            if self[bound] < 0:
                raise usage.UsageError("--%s must not be negative" % (bound,))
        if self["match-features"] not in MATCH_MODES:
            raise usage.UsageError(
                "--match-features: one of %s, not %r"
                % (", ".join(MATCH_MODES), self["match-features"])
            )
        if self["refusal-ttl"] < 0:
            raise usage.UsageError("--refusal-ttl must not be negative")
        try:
            Affinity(self["affinity"])
        except ValueError as e:
            raise usage.UsageError("--%s" % (e,))
        if self["resources"] is not None:
            try:
                re.compile(self["resources"])
            except re.error as e:
                raise usage.UsageError("--resources: not a regular expression: %s" % (e,))

    def _secret(self):
        """
        The secret from exactly one of --secret-file, --secret and the
        environment. The secret itself never appears in a message.
        """
        given = [source for source in ("secret-file", "secret") if self[source] is not None]
        if len(given) > 1:
            raise usage.UsageError("give only one of --secret-file and --secret")
        if self["secret-file"] is not None:
            try:
                with open(self["secret-file"], encoding="utf-8") as f:
                    secret = f.read().strip("\r\n")
            except OSError as e:
                raise usage.UsageError(
                    "--secret-file: cannot read %s: %s" % (self["secret-file"], e.strerror)
                )
        elif self["secret"] is not None:
            secret = self["secret"]
        else:
            secret = os.environ.get(SECRET_ENVIRONMENT)
        if not secret:
            raise usage.UsageError(
                "the component secret is required: --secret-file, --secret or $%s"
                % (SECRET_ENVIRONMENT,)
            )
        return secret


def proxyArgumentsOf(options):
    """
    The keyword arguments of L{makeProxy} that checked L{Options} say.
    """
    tls = None
    if options["tls"]:
        tls = TLSSettings(options["tls-name"] or options["host"], options["ca-file"])
    return dict(
        tls=tls,
        host=options["host"],
        port=options["port"],
        timeout=options["timeout"],
        strategy=options["strategy"],
        resources=options["resources"],
        matchFeatures=options["match-features"],
        refusalTTL=options["refusal-ttl"],
        affinity=options["affinity"],
        dataDir=options["data-dir"],
        redis=options["redis"],
        queuePerSender=options["queue-per-sender"],
        queueSize=options["queue-size"],
        grace=options["grace"],
        maxPending=options["max-pending"],
        maxPendingPerRequester=options["max-pending-per-requester"],
        maxPendingFromTarget=options["max-pending-from-target"],
        maxPendingBytes=options["max-pending-bytes"],
        maxSubscribers=options["max-subscribers"],
        maxSubscribersPerDomain=options["max-subscribers-per-domain"],
        rate=options["rate"],
        burst=options["burst"],
        domainRate=options["domain-rate"],
        domainBurst=options["domain-burst"],
        keepalive=options["keepalive"],
        maxStanzaSize=options["max-stanza-size"],
        allow=options["allow"],
        deny=options["deny"],
    )


def makeService(config):
    """
    Make the service from parsed L{Options}: one proxy per C{[[proxy]]} of
    the configuration file (or the one of the command line), the metrics
    endpoint if asked for, with a file its reload on SIGHUP, and under
    systemd (C{$NOTIFY_SOCKET}) the notifications of C{Type=notify}.

    Called once per process by twistd (or a tac file) after everything is
    imported, so it also moves the objects that live for the whole process
    out of reach of the garbage collector (L{gc.freeze}): a full collection
    then no longer walks them, which keeps latency spikes down (seen in
    bench/: p99 closer to the bare forwarder's). PyPy's collector has no
    such call, and needs none.
    """
    if hasattr(gc, "freeze"):
        gc.freeze()
    proxies = [
        makeProxy(options["jid"], options["target"], options["secret"], **proxyArgumentsOf(options))
        for options in config["proxies"]
    ]
    systemd = notifySocket() is not None
    if len(proxies) == 1 and not (config["metrics-port"] or config["config"] or systemd):
        return proxies[0]
    top = service.MultiService()
    for proxy in proxies:
        proxy.setServiceParent(top)
    if config["metrics-port"]:
        metricsService(
            proxies, config["metrics-port"], config["metrics-interface"]
        ).setServiceParent(top)
    if config["config"] is not None:
        ReloadService(config, list(zip(proxies, config["proxies"]))).setServiceParent(top)
    if systemd:
        SystemdNotifier(proxies).setServiceParent(top)
    return top
