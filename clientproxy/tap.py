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

from clientproxy.assembly import makeProxy
from clientproxy.ops import settings
from clientproxy.ops.config import ConfigError, proxyArguments, proxyName, readConfig
from clientproxy.ops.metrics import metricsService
from clientproxy.ops.reload import ReloadService
from clientproxy.ops.systemd import SystemdNotifier, notifySocket
from clientproxy.routing.policy import normalise, readAccessFile
from clientproxy.routing.selection import MATCH_MODES, Affinity
from clientproxy.routing.strategies import availableStrategies
from clientproxy.state.redis.store import checkURL as checkRedisURL
from clientproxy.xmpp.connection import TLSSettings

SECRET_ENVIRONMENT = "CLIENTPROXY_SECRET"

#: The repeatable options: each given value is appended to a list.
LISTS = tuple(s.name for s in settings.SETTINGS if s.coerce is settings.LIST)


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

    optParameters = settings.optParameters()
    optFlags = settings.optFlags()

    def __init__(self):
        usage.Options.__init__(self)
        for name in LISTS:
            self[name] = []

    def opt_help_strategies(self):
        for name, plugin in sorted(availableStrategies().items()):
            print("%-16s %s" % (name, plugin.description))
        raise SystemExit(0)

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
        return {
            s.name: s.kind
            for s in settings.SETTINGS
            if s.when != settings.PROCESS
            and s.kind is not list
            and s.name not in ("config", "help-strategies")
        }

    def overrides(self):
        """
        The per-proxy options given on the command line, as arguments.
        """
        kinds = self.kinds()
        arguments = []
        for name in dict.fromkeys(self.given):
            if name in LISTS:
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
        for namespace in self["idempotent"]:
            if not namespace or namespace != namespace.strip():
                raise usage.UsageError("--idempotent: not a namespace: %r" % (namespace,))
        settings.checkMinimums(self)
        for rate, burst in (("rate", "burst"), ("domain-rate", "domain-burst")):
            if (self[rate] is not None and self[rate] < 0) or (
                self[burst] is not None and self[burst] < 1
            ):
                raise usage.UsageError("--%s must not be negative, --%s at least 1" % (rate, burst))
        if self["ca-file"] is not None and not os.path.isfile(self["ca-file"]):
            raise usage.UsageError("--ca-file: no such file: %s" % (self["ca-file"],))
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
        if self["match-features"] not in MATCH_MODES:
            raise usage.UsageError(
                "--match-features: one of %s, not %r"
                % (", ".join(MATCH_MODES), self["match-features"])
            )
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


def _listOption(name, help):
    """
    The C{opt_} method of the repeatable option C{name}: its help is the
    setting's.
    """

    def option(self, value):
        self[name].append(value)

    option.__doc__ = help
    return option


for _setting in settings.SETTINGS:
    if _setting.coerce is settings.LIST:
        setattr(
            Options,
            "opt_" + _setting.name.replace("-", "_"),
            _listOption(_setting.name, _setting.help),
        )


def proxyArgumentsOf(options):
    """
    The keyword arguments of L{makeProxy} that checked L{Options} say.
    """
    tls = None
    if options["tls"]:
        tls = TLSSettings(options["tls-name"] or options["host"], options["ca-file"])
    return dict(settings.proxyArguments(options), tls=tls)


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
