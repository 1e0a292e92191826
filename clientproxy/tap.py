# -*- test-case-name: tests.test_tap -*-
"""
C{twistd clientproxy}: the command-line options and the service they make.

The tac files in C{tac/} build their services with the same L{Options} and
L{makeService}.
"""

import gc
import os
import platform
import re
import sys

import twisted
from twisted.application import service
from twisted.logger import ILogObserver
from twisted.python.components import Componentized
from twisted.python import usage
from twisted.words.protocols.jabber.jid import JID, InvalidFormat

from clientproxy import __version__
from clientproxy.assembly import makeProxy
from clientproxy.ops import settings
from clientproxy.ops import logs
from clientproxy.ops.config import ConfigError, proxyArguments, proxyName, readConfig
from clientproxy.ops.metrics import metricsService
from clientproxy.ops.reload import ReloadService
from clientproxy.ops.systemd import SystemdNotifier, notifySocket
from clientproxy.routing.policy import normalise, readAccessFile
from clientproxy.routing.selection import MATCH_MODES, Affinity
from clientproxy.routing.strategies import availableStrategies
from clientproxy.state.redis.client import PASSWORD_ENVIRONMENT
from clientproxy.state.redis.store import checkURL as checkRedisURL
from clientproxy.xmpp.connection import TLSSettings

SECRET_ENVIRONMENT = "CLIENTPROXY_SECRET"
REDIS_PASSWORD_ENVIRONMENT = PASSWORD_ENVIRONMENT

#: What --redis needs that clientproxy[redis] installs.
REDIS_EXTRA = "hiredis"


def missingRedisSupport():
    """
    Why C{--redis} cannot be used here, or C{None} when it can: its
    C{hiredis} comes with the C{clientproxy[redis]} extra only.
    """
    try:
        __import__(REDIS_EXTRA)
    except ImportError:
        return (
            "--redis needs the Redis support, which is not installed: "
            "pip install 'clientproxy[redis]' (it adds %s)" % (REDIS_EXTRA,)
        )
    return None


def defaultDataDir(environ=None):
    """
    The data directory when C{--data-dir} is not given: systemd's
    C{$STATE_DIRECTORY} (the first, if the unit names several), else the
    user's state directory, C{$XDG_STATE_HOME/clientproxy} (by default
    C{~/.local/state/clientproxy}), made if missing (mode 0700). Never the
    working directory, where a store would be left wherever a command ran.

    @raise usage.UsageError: the user's state directory cannot be made.
    """
    environ = os.environ if environ is None else environ
    state = environ.get("STATE_DIRECTORY")
    if state:
        return state.split(":")[0]
    home = environ.get("XDG_STATE_HOME")
    if not home or not os.path.isabs(home):
        home = os.path.join(os.path.expanduser("~"), ".local", "state")
    directory = os.path.join(home, "clientproxy")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        raise usage.UsageError(
            "--data-dir not given, and the default %s cannot be made (%s): give --data-dir"
            % (directory, e.strerror)
        )
    return directory


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
        self.redisAddress = None
        for name in LISTS:
            self[name] = []

    def opt_version(self):
        """
        Display clientproxy's version (with Twisted's and Python's) and exit.
        """
        print(
            "clientproxy %s (Twisted %s, Python %s)"
            % (__version__, twisted.__version__, platform.python_version())
        )
        raise SystemExit(0)

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
        self.checkProcess()

    def checkProcess(self):
        """
        Check the options of the whole process (given on the command line
        or at the top of the file).
        """
        for name, known in (("log-level", logs.LEVELS), ("log-format", logs.FORMATS)):
            if self[name] not in known:
                raise usage.UsageError(
                    "--%s: one of %s, not %r" % (name, ", ".join(known), self[name])
                )

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
        if self["data-dir"] is None:
            self["data-dir"] = defaultDataDir()
        if not os.path.isdir(self["data-dir"]):
            raise usage.UsageError("--data-dir: no such directory: %s" % (self["data-dir"],))
        self.redisAddress = self._redisAddress()
        if self.redisAddress is not None:
            missing = missingRedisSupport()
            if missing is not None:
                raise usage.UsageError(missing)
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

    def _redisAddress(self):
        """
        The L{clientproxy.state.redis.address.RedisAddress} of C{--redis},
        with its password from exactly one of the URL and
        C{--redis-password-file}, or else from the environment; C{None}
        without C{--redis}. The password never appears in a message.
        """
        if self["redis"] is None:
            if self["lease"]:
                raise usage.UsageError(
                    "--lease is used only with --redis (the lease is kept there)"
                )
            for option in ("redis-password-file", "redis-ca-file"):
                if self[option] is not None:
                    raise usage.UsageError("--%s is used only with --redis" % (option,))
            return None
        try:
            address = checkRedisURL(self["redis"])
        except ValueError as e:
            raise usage.UsageError("--redis: %s" % (e,))
        password = address.password
        if self["redis-password-file"] is not None:
            if password is not None:
                raise usage.UsageError(
                    "give the Redis password once: in the --redis URL or --redis-password-file"
                )
            try:
                with open(self["redis-password-file"], encoding="utf-8") as f:
                    password = f.read().strip("\r\n")
            except OSError as e:
                raise usage.UsageError(
                    "--redis-password-file: cannot read %s: %s"
                    % (self["redis-password-file"], e.strerror)
                )
        elif password is None:
            password = os.environ.get(REDIS_PASSWORD_ENVIRONMENT) or None
        if address.username and password is None:
            raise usage.UsageError("--redis: a user name without a password")
        caFile = self["redis-ca-file"]
        if caFile is not None:
            if not address.tls:
                raise usage.UsageError("--redis-ca-file is used only with a rediss:// URL")
            if not os.path.isfile(caFile):
                raise usage.UsageError("--redis-ca-file: no such file: %s" % (caFile,))
        return address.with_(password=password, caFile=caFile, deadline=self["redis-timeout"])

    def _secret(self):
        """
        The secret from exactly one of --secret-file, --secret-credential,
        --secret and the environment. The secret itself never appears in a
        message.
        """
        sources = ("secret-file", "secret-credential", "secret")
        given = [source for source in sources if self[source] is not None]
        if len(given) > 1:
            raise usage.UsageError(
                "give only one of --secret-file, --secret-credential and --secret"
            )
        path, option = self["secret-file"], "--secret-file"
        if self["secret-credential"] is not None:
            path, option = self._credentialPath(self["secret-credential"]), "--secret-credential"
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    secret = f.read().strip("\r\n")
            except OSError as e:
                raise usage.UsageError("%s: cannot read %s: %s" % (option, path, e.strerror))
        elif self["secret"] is not None:
            secret = self["secret"]
        else:
            secret = os.environ.get(SECRET_ENVIRONMENT)
        if not secret:
            raise usage.UsageError(
                "the component secret is required: --secret-file, --secret-credential, "
                "--secret or $%s" % (SECRET_ENVIRONMENT,)
            )
        return secret

    @staticmethod
    def _credentialPath(name):
        """
        The file of the systemd credential C{name}: systemd copies each
        C{LoadCredential=NAME:FILE} of the unit to C{$CREDENTIALS_DIRECTORY/NAME},
        readable by the service's user alone (C{DynamicUser=} included).
        """
        if not name or "/" in name or name in (".", ".."):
            raise usage.UsageError("--secret-credential: not a credential name: %r" % (name,))
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise usage.UsageError(
                "--secret-credential %s: $CREDENTIALS_DIRECTORY is not set (systemd sets it "
                "for a unit with LoadCredential=%s:FILE)" % (name, name)
            )
        return os.path.join(directory, name)


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
    return dict(settings.proxyArguments(options), tls=tls, redis=options.redisAddress)


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


class ProcessService(service.MultiService):
    """
    What C{twistd clientproxy} runs: the service L{makeService} made, and
    the process's log observer (L{clientproxy.ops.logs}: C{--log-level},
    C{--log-format}, journald priorities), set on the twistd application
    it is added to, which twistd then logs with (instead of its own
    observer).
    """

    def __init__(self, child, observer):
        service.MultiService.__init__(self)
        child.setServiceParent(self)
        self.observer = observer

    def setServiceParent(self, parent):
        service.MultiService.setServiceParent(self, parent)
        if self.observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.observer)


def makeProcessService(config):
    """
    The service of C{twistd clientproxy} for parsed L{Options}: the one of
    L{makeService}, and the log as C{--log-level} and C{--log-format} say.
    """
    return ProcessService(makeService(config), logs.observerFor(config))
