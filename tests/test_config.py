"""
Tests for the configuration file (L{clientproxy.ops.config}, C{--config}) and
its reload (L{clientproxy.ops.reload}).
"""

import os

from twisted.application import service
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial import unittest

from clientproxy.xmpp.connection import ProxyComponent
from clientproxy.ops.reload import ReloadService
from clientproxy.tap import SECRET_ENVIRONMENT, Options, makeService

TWO = """
metrics-port = 0

[[proxy]]
jid = "focus.example.org"
target = "focus@auth.example.org"
secret-file = "{secret}"
affinity = "attribute:room"
timeout = 10

[[proxy]]
jid = "search.example.org"
target = "search@example.org"
secret_file = "{secret}"
deny = ["spam.example"]
rate = 5
"""


class ConfigTests(unittest.TestCase):
    """
    Reading the configuration file: proxies and process-wide keys read, and
    each mistake refused in one line naming the file, the proxy and the key,
    never the secret.
    """

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.mkdir(self.directory)
        # The default data directory: the test's own, not one in the home.
        self.patch(os, "environ", {"STATE_DIRECTORY": self.directory})
        self.secret = os.path.join(self.directory, "secret")
        with open(self.secret, "w") as f:
            f.write("hunter2\n")

    def write(self, text, name="clientproxy.toml"):
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            f.write(text.replace("{secret}", self.secret))
        return path

    def parse(self, *arguments):
        options = Options()
        options.parseOptions(list(arguments))
        return options

    def refused(self, text, *arguments):
        path = self.write(text)
        error = self.assertRaises(usage.UsageError, self.parse, "--config", path, *arguments)
        self.assertIn(path, str(error))
        self.assertNotIn("hunter2", str(error))
        return str(error)

    def test_twoProxies(self):
        """
        A file with two C{[[proxy]]} tables (keys spelt with C{-} or C{_}) gives
        each proxy its own settings and secret; the service built holds a
        component for each proxy, and the reload service.
        """
        text = TWO.replace("rate = 5", 'rate = 5\ndata-dir = "%s"' % (self.directory,))
        text = text.replace("timeout = 10", 'timeout = 10\ndata-dir = "%s"' % (self.directory,))
        options = self.parse("--config", self.write(text))
        focus, search = options["proxies"]
        self.assertEqual(
            (focus["jid"], focus["target"], focus["secret"], focus["timeout"]),
            ("focus.example.org", "focus@auth.example.org", "hunter2", 10.0),
        )
        self.assertEqual(focus["affinity"], "attribute:room")
        self.assertEqual((search["deny"], search["rate"]), (["spam.example"], 5.0))
        top = makeService(options)
        self.assertIsInstance(top, service.MultiService)
        kinds = [type(s) for s in top]
        self.assertEqual(kinds.count(ProxyComponent), 2)
        self.assertIn(ReloadService, kinds)
        for s in top:
            if isinstance(s, ProxyComponent):
                s.store.close()

    def test_unknownKey(self):
        """
        A misspelt key in a proxy's table is refused, naming the proxy by number
        and JID and the key, rather than silently ignored.
        """
        error = self.refused(TWO.replace("rate = 5", "rat = 5"))
        self.assertIn("proxy 2 (search.example.org)", error)
        self.assertIn("unknown key 'rat'", error)

    def test_wrongType(self):
        """
        A value of the wrong type (a string for C{timeout}) is refused, naming
        the proxy and the type the key needs.
        """
        error = self.refused(TWO.replace("timeout = 10", "timeout = 'soon'"))
        self.assertIn("proxy 1 (focus.example.org)", error)
        self.assertIn("'timeout' must be a number", error)

    def test_missingRequired(self):
        """
        A proxy table without its C{jid} is refused, saying which proxy lacks
        what.
        """
        error = self.refused(TWO.replace('jid = "search.example.org"\n', ""))
        self.assertIn("proxy 2", error)
        self.assertIn("--jid is required", error)

    def test_invalidValue(self):
        """
        A value of the right type but out of range (a negative timeout) is
        refused with the same message as on the command line, naming the proxy.
        """
        error = self.refused(TWO.replace("timeout = 10", "timeout = -1"))
        self.assertIn("proxy 1 (focus.example.org): --timeout must be positive", error)

    def test_inlineSecretRefused(self):
        """
        A secret written in the file itself is refused: it belongs in a file of
        its own or in the environment, a configuration file being easier to
        leak.
        """
        error = self.refused(TWO.replace('secret_file = "{secret}"', 'secret = "hunter2"'))
        self.assertIn("'secret'", error)

    def test_secretFromEnvironment(self):
        """
        A proxy without C{secret-file} takes its secret from
        C{$CLIENTPROXY_SECRET}.
        """
        self.patch(
            os, "environ", {SECRET_ENVIRONMENT: "from-env", "STATE_DIRECTORY": self.directory}
        )
        text = TWO.replace('secret-file = "{secret}"\n', "")
        focus = self.parse("--config", self.write(text))["proxies"][0]
        self.assertEqual(focus["secret"], "from-env")

    def test_unknownTopKey(self):
        """
        An unknown process-wide key at the top of the file is refused too.
        """
        self.assertIn("unknown key 'colour'", self.refused("colour = 1\n" + TWO))

    def test_noProxy(self):
        """
        A file without any C{[[proxy]]} table is refused, saying it needs one.
        """
        self.assertIn("[[proxy]]", self.refused("metrics-port = 1\n"))

    def test_notToml(self):
        """
        A file that is not TOML is refused as such, naming the file.
        """
        self.assertIn("not valid TOML", self.refused("[[proxy]\n"))

    def test_sameJIDTwice(self):
        """
        Two proxies with the same JID are refused: they would fight over one
        component.
        """
        error = self.refused(TWO.replace("search.example.org", "focus.example.org"))
        self.assertIn("same jid", error)

    def test_commandLineOverridesASingleProxy(self):
        """
        With a single proxy in the file, options on the command line override
        its values (a list option too), and the file's other values stay.
        """
        one = TWO[: TWO.index("[[proxy]]", TWO.index("[[proxy]]") + 1)]
        options = self.parse("--config", self.write(one), "--timeout", "3", "--deny", "x.example")
        [focus] = options["proxies"]
        self.assertEqual((focus["timeout"], focus["deny"]), (3.0, ["x.example"]))
        self.assertEqual(focus["affinity"], "attribute:room")

    def test_commandLineWithSeveralProxiesRefused(self):
        """
        With several proxies in the file, a proxy option on the command line is
        refused: which proxy it meant would be a guess.
        """
        self.assertIn("only when it has one proxy", self.refused(TWO, "--timeout", "3"))

    def test_metricsFromTheFile(self):
        """
        The process-wide C{metrics-port} is read from the top of the file.
        """
        options = self.parse(
            "--config", self.write(TWO.replace("metrics-port = 0", "metrics-port = 9101"))
        )
        self.assertEqual(options["metrics-port"], 9101)


class ReloadTests(unittest.TestCase):
    """
    A reload applies what can change live to the running proxies, says
    what needs a restart, and keeps the running configuration when the file
    does not load.
    """

    def setUp(self):
        state = os.path.abspath(self.mktemp())
        os.mkdir(state)
        self.patch(os, "environ", {SECRET_ENVIRONMENT: "s", "STATE_DIRECTORY": state})
        self.path = self.mktemp()
        self.write(
            '[[proxy]]\njid = "proxy.example.org"\ntarget = "svc@example.org"\n'
            'timeout = 30\nstrategy = "random"\n'
        )
        options = Options()
        options.parseOptions(["--config", self.path])
        self.options = options
        self.proxy = makeProxy(options)
        self.reload = ReloadService(options, [(self.proxy, options["proxies"][0])])

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def test_appliedLive(self):
        """
        A reload changes the running proxy's deny list, timeout, pending bound,
        strategy, feature matching and resource filter at once, and logs what it
        applied and that the port needs a restart.
        """
        self.write(
            '[[proxy]]\njid = "proxy.example.org"\ntarget = "svc@example.org"\n'
            'timeout = 5\nstrategy = "round-robin"\ndeny = ["mallory@example.org"]\n'
            'max-pending = 7\nmatch-features = "strict"\nresources = "^focus"\nport = 5348\n'
        )
        with capturedLogs() as events:
            self.reload.reload()
        parts = self.proxy.parts
        self.assertEqual(parts.policy.deny, frozenset(["mallory@example.org"]))
        self.assertEqual(parts.dispatcher.pending.timeout, 5.0)
        self.assertEqual(parts.dispatcher.pending.maxPending, 7)
        self.assertEqual(type(parts.dispatcher.selector.strategy).__name__, "RoundRobinStrategy")
        self.assertEqual(parts.dispatcher.selector.match, "strict")
        self.assertFalse(parts.resources.accepts("bridge"))
        [event] = [e for e in events if "applied" in e.get("log_format", "")]
        self.assertIn("deny", event["applied"])
        self.assertEqual(event["restart"], "port")

    def test_maxPendingBytesAppliedLive(self):
        """
        C{max-pending-bytes} changes on a reload, like the other bounds of
        the pending table, without a restart.
        """
        self.write(
            '[[proxy]]\njid = "proxy.example.org"\ntarget = "svc@example.org"\n'
            'timeout = 30\nstrategy = "random"\nmax-pending-bytes = 4096\n'
        )
        with capturedLogs() as events:
            self.reload.reload()
        self.assertEqual(self.proxy.parts.dispatcher.pending.maxPendingBytes, 4096)
        [event] = [e for e in events if "applied" in e.get("log_format", "")]
        self.assertEqual((event["applied"], event["restart"]), ("max-pending-bytes", "nothing"))

    def test_holdAndIdempotentAppliedLive(self):
        """
        C{hold} and C{idempotent} change on a reload without a restart: the
        table's hold and the dispatcher's namespaces are the new ones; an
        empty namespace is refused.
        """
        self.write(
            '[[proxy]]\njid = "proxy.example.org"\ntarget = "svc@example.org"\n'
            'timeout = 30\nstrategy = "random"\nhold = 20\n'
            'idempotent = ["http://jitsi.org/protocol/focus", "urn:x"]\n'
        )
        with capturedLogs() as events:
            self.reload.reload()
        dispatcher = self.proxy.parts.dispatcher
        self.assertEqual(dispatcher.pending.hold, 20.0)
        self.assertEqual(
            dispatcher.idempotent, frozenset(["http://jitsi.org/protocol/focus", "urn:x"])
        )
        [event] = [e for e in events if "applied" in e.get("log_format", "")]
        self.assertEqual((event["applied"], event["restart"]), ("hold, idempotent", "nothing"))
        self.write(
            '[[proxy]]\njid = "proxy.example.org"\ntarget = "svc@example.org"\nidempotent = [""]\n'
        )
        with capturedLogs() as events:
            self.reload.reload()
        [error] = [e for e in events if e["log_level"].name == "error"]
        self.assertIn("--idempotent: not a namespace", error["why"])
        self.assertEqual(dispatcher.pending.hold, 20.0)

    def test_tlsNeedsARestart(self):
        """
        A change of the TLS settings is reported as needing a restart, not
        silently ignored.
        """
        self.write(
            '[[proxy]]\njid = "proxy.example.org"\ntarget = "svc@example.org"\n'
            'timeout = 30\nstrategy = "random"\ntls = true\ntls-name = "xmpp.example.org"\n'
        )
        with capturedLogs() as events:
            self.reload.reload()
        [event] = [e for e in events if "applied" in e.get("log_format", "")]
        self.assertEqual(event["restart"], "tls, tls-name")

    def test_brokenFileKeepsTheRunningConfiguration(self):
        """
        A reload of a file that does not load logs one error saying why and
        leaves the running configuration as it was.
        """
        self.write(
            '[[proxy]]\njid = "proxy.example.org"\ntarget = "svc@example.org"\ntimeout = -1\n'
        )
        with capturedLogs() as events:
            self.reload.reload()
        self.assertEqual(self.proxy.parts.dispatcher.pending.timeout, 30.0)
        [error] = [e for e in events if e["log_level"].name == "error"]
        self.assertIn("--timeout must be positive", error["why"])


def makeProxy(options):
    from clientproxy.assembly import makeProxy as make
    from clientproxy.tap import proxyArgumentsOf

    [proxyOptions] = options["proxies"]
    kwargs = proxyArgumentsOf(proxyOptions)
    kwargs["dataDir"] = None
    return make(
        proxyOptions["jid"],
        proxyOptions["target"],
        proxyOptions["secret"],
        reactor=MemoryReactorClock(),
        **kwargs,
    )


class ExampleTests(unittest.TestCase):
    """
    The example configuration shipped with the project.
    """

    def test_contribExampleLoads(self):
        """
        contrib/clientproxy.toml, the README's complete example, is a valid
        configuration as shipped, under the environment the systemd unit
        gives it (its credentials and state directory in a temporary one).
        """
        from twisted.python.filepath import FilePath

        example = FilePath(__file__).parent().sibling("contrib").child("clientproxy.toml")
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        # The secrets are the systemd credentials the unit loads, and the
        # data directory is the state directory systemd makes.
        for name in ("focus", "search"):
            with open(os.path.join(directory, name + ".secret"), "w") as f:
                f.write("s\n")
        self.patch(
            os, "environ", {"CREDENTIALS_DIRECTORY": directory, "STATE_DIRECTORY": directory}
        )
        options = Options()
        options.parseOptions(["--config", example.path])
        self.assertEqual(
            [p["jid"] for p in options["proxies"]], ["focus.example.org", "search.example.org"]
        )
        self.assertEqual(options["proxies"][0]["affinity"], "attribute:room")
