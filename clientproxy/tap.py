# -*- test-case-name: tests.test_tap -*-
"""
C{twistd clientproxy}: the command-line options and the service they make.

The tac files in C{tac/} build their services with the same L{Options} and
L{makeService}.
"""

import gc
import os
import re

from twisted.application import service
from twisted.python import usage
from twisted.words.protocols.jabber.jid import JID, InvalidFormat

from clientproxy.keepalive import DEFAULT_INTERVAL
from clientproxy.messages import QUEUE_PER_SENDER, QUEUE_SIZE
from clientproxy.pending import MAX_PENDING, MAX_PENDING_FROM_TARGET, MAX_PENDING_PER_REQUESTER
from clientproxy.metrics import metricsService
from clientproxy.policy import MAX_STANZA_SIZE, normalise, readAccessFile
from clientproxy.selection import AUTO, MATCH_MODES, REFUSAL_TTL, Affinity
from clientproxy.service import DEFAULT_TIMEOUT, makeProxy
from clientproxy.servicepresence import MAX_SUBSCRIBERS, MAX_SUBSCRIBERS_PER_DOMAIN
from clientproxy.strategies import DEFAULT, availableStrategies

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
    synopsis = "--jid COMPONENT --target ACCOUNT (--secret-file FILE | --secret SECRET) [options]"
    longdesc = (
        "Run an XMPP external component (XEP-0114) that forwards every IQ "
        "request sent to it to one available resource of the target account, "
        "and routes the replies back. The secret may also be given in the "
        "environment variable %s." % (SECRET_ENVIRONMENT,)
    )

    optParameters = [
        ["jid", None, None, "The component's JID, e.g. proxy.example.org."],
        ["target", None, None, "The bare JID of the account implementing the service."],
        ["secret-file", None, None, "A file holding the component secret."],
        ["secret", None, None, "The component secret (prefer --secret-file)."],
        ["host", None, "127.0.0.1", "The server's component host."],
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

    optFlags = [["help-strategies", None, "List the dispatch strategies and exit."]]

    def opt_help_strategies(self):
        for name, plugin in sorted(availableStrategies().items()):
            print("%-16s %s" % (name, plugin.description))
        raise SystemExit(0)

    def postOptions(self):
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
                raise usage.UsageError(
                    "--%s must not be negative, --%s at least 1" % (rate, burst)
                )
        if not 0 <= self["metrics-port"] < 65536:
            raise usage.UsageError("--metrics-port must be a TCP port, or 0 for none")
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


def makeService(config):
    """
    Make the proxy service from parsed L{Options}.

    Called once per process by twistd (or a tac file) after everything is
    imported, so it also moves the objects that live for the whole process
    out of reach of the garbage collector (L{gc.freeze}): a full collection
    then no longer walks them, which keeps latency spikes down (seen in
    bench/: p99 closer to the bare forwarder's).
    """
    gc.freeze()
    proxy = makeProxy(
        config["jid"],
        config["target"],
        config["secret"],
        host=config["host"],
        port=config["port"],
        timeout=config["timeout"],
        strategy=config["strategy"],
        resources=config["resources"],
        matchFeatures=config["match-features"],
        refusalTTL=config["refusal-ttl"],
        affinity=config["affinity"],
        dataDir=config["data-dir"],
        queuePerSender=config["queue-per-sender"],
        queueSize=config["queue-size"],
        grace=config["grace"],
        maxPending=config["max-pending"],
        maxPendingPerRequester=config["max-pending-per-requester"],
        maxPendingFromTarget=config["max-pending-from-target"],
        maxSubscribers=config["max-subscribers"],
        maxSubscribersPerDomain=config["max-subscribers-per-domain"],
        rate=config["rate"],
        burst=config["burst"],
        domainRate=config["domain-rate"],
        domainBurst=config["domain-burst"],
        keepalive=config["keepalive"],
        maxStanzaSize=config["max-stanza-size"],
        allow=config["allow"],
        deny=config["deny"],
    )
    if not config["metrics-port"]:
        return proxy
    both = service.MultiService()
    proxy.setServiceParent(both)
    metricsService([proxy], config["metrics-port"], config["metrics-interface"]).setServiceParent(
        both
    )
    return both
