"""
Tests for L{clientproxy.tap}, the twistd plugin and the tac files.
"""

import os

from twisted.application import service
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial import unittest

from clientproxy.xmpp.connection import ProxyComponent
from clientproxy.routing.strategies import LeastPendingStrategy
from clientproxy.tap import SECRET_ENVIRONMENT, Options, makeService

REQUIRED = ["--jid", "proxy.example.org", "--target", "svc@example.org"]
TAC = FilePath(__file__).parent().sibling("tac")


class OptionsTests(unittest.TestCase):
    def setUp(self):
        self.patch(os, "environ", {})

    def parse(self, *arguments):
        options = Options()
        options.parseOptions(list(arguments))
        return options

    def test_defaults(self):
        options = self.parse(*REQUIRED + ["--secret", "s"])
        self.assertEqual(options["host"], "127.0.0.1")
        self.assertEqual(options["port"], 5347)
        self.assertEqual(options["timeout"], 30.0)
        self.assertEqual(options["strategy"], "random")
        self.assertIsNone(options["resources"])
        self.assertEqual(options["data-dir"], ".")
        self.assertEqual((options["queue-per-sender"], options["queue-size"]), (100, 10000))

    def test_allOptions(self):
        options = self.parse(
            "--jid",
            "Proxy.Example.ORG",
            "--target",
            "Svc@Example.org",
            "--secret",
            "s",
            "--host",
            "10.0.0.1",
            "--port",
            "5348",
            "--timeout",
            "2.5",
            "--strategy",
            "least-pending",
            "--resources",
            "^focus",
        )
        self.assertEqual(options["jid"], "proxy.example.org")
        self.assertEqual(options["target"], "svc@example.org")
        self.assertEqual(options["port"], 5348)
        self.assertEqual(options["timeout"], 2.5)
        self.assertEqual(options["resources"], "^focus")

    def test_limitsAndAccess(self):
        access = FilePath(self.mktemp())
        access.setContent(b"deny spam.example\nallow Friends.example\n")
        options = self.parse(
            *REQUIRED
            + [
                "--secret",
                "s",
                "--allow",
                "Alice@Example.org",
                "--deny",
                "x@y.z",
                "--access-file",
                access.path,
                "--rate",
                "5",
                "--burst",
                "10",
                "--max-pending",
                "7",
                "--max-pending-per-requester",
                "3",
                "--max-stanza-size",
                "1000",
                "--grace",
                "1",
            ]
        )
        self.assertEqual(options["allow"], ["alice@example.org", "friends.example"])
        self.assertEqual(options["deny"], ["x@y.z", "spam.example"])
        proxy = makeService(options)
        self.assertEqual(proxy.dispatcher.pending.maxPending, 7)
        self.assertEqual(proxy.dispatcher.pending.maxPendingPerRequester, 3)
        policy = proxy.dispatcher.policy
        self.assertEqual((policy.buckets.rate, policy.buckets.burst), (5.0, 10.0))
        self.assertEqual(policy.maxStanzaSize, 1000)
        self.assertFalse(policy.permits("bob@spam.example/r"))
        self.assertEqual(proxy.grace, 1.0)

    def test_maxPendingBytes(self):
        """
        C{--max-pending-bytes} reaches the pending table (64 MiB unless
        given); a negative value is refused like the other bounds.
        """
        proxy = makeService(self.parse(*REQUIRED + ["--secret", "s"]))
        self.assertEqual(proxy.dispatcher.pending.maxPendingBytes, 64 * 1024 * 1024)
        options = self.parse(*REQUIRED + ["--secret", "s", "--max-pending-bytes", "4096"])
        self.assertEqual(makeService(options).dispatcher.pending.maxPendingBytes, 4096)
        self.assertRaises(
            usage.UsageError,
            self.parse,
            *REQUIRED + ["--secret", "s", "--max-pending-bytes", "-1"],
        )

    def test_badAccessEntries(self):
        for extra in [
            ["--allow", "a@b/c"],
            ["--deny", "a@b@c"],
            ["--access-file", "/nonexistent"],
            ["--rate", "-1"],
            ["--burst", "0.5"],
            ["--max-pending", "-1"],
            ["--grace", "-1"],
        ]:
            self.assertRaises(usage.UsageError, self.parse, *REQUIRED + ["--secret", "s"] + extra)

    def test_required(self):
        self.assertRaises(usage.UsageError, self.parse, "--secret", "s")
        self.assertRaises(usage.UsageError, self.parse, "--jid", "p.x", "--secret", "s")

    def test_badJIDs(self):
        for arguments in [
            ["--jid", "user@proxy.example.org", "--target", "svc@example.org"],
            ["--jid", "proxy.example.org/r", "--target", "svc@example.org"],
            ["--jid", "proxy.example.org", "--target", "example.org"],
            ["--jid", "proxy.example.org", "--target", "svc@example.org/a"],
            ["--jid", "proxy.example.org", "--target", "svc@exa mple.org"],
            ["--jid", "", "--target", "svc@example.org"],
        ]:
            self.assertRaises(usage.UsageError, self.parse, *arguments + ["--secret", "s"])

    def test_secretFile(self):
        path = self.mktemp()
        FilePath(path).setContent(b"from-file\n")
        self.assertEqual(self.parse(*REQUIRED + ["--secret-file", path])["secret"], "from-file")

    def test_secretFileMissing(self):
        e = self.assertRaises(
            usage.UsageError, self.parse, *REQUIRED + ["--secret-file", "/nonexistent/s"]
        )
        self.assertIn("/nonexistent/s", str(e))

    def test_secretFromEnvironment(self):
        os.environ[SECRET_ENVIRONMENT] = "from-env"
        self.assertEqual(self.parse(*REQUIRED)["secret"], "from-env")

    def test_secretRequired(self):
        self.assertRaises(usage.UsageError, self.parse, *REQUIRED)

    def test_oneSecretOnly(self):
        path = self.mktemp()
        FilePath(path).setContent(b"x")
        self.assertRaises(
            usage.UsageError, self.parse, *REQUIRED + ["--secret", "a", "--secret-file", path]
        )

    def test_secretNotInErrors(self):
        e = self.assertRaises(
            usage.UsageError,
            self.parse,
            "--jid",
            "proxy.example.org",
            "--target",
            "svc@example.org/a",
            "--secret",
            "hunter2",
        )
        self.assertNotIn("hunter2", str(e))

    def test_badValues(self):
        for extra in [
            ["--timeout", "0"],
            ["--timeout", "-1"],
            ["--port", "0"],
            ["--port", "70000"],
            ["--strategy", "nope"],
            ["--resources", "("],
            ["--data-dir", "/nonexistent/dir"],
            ["--queue-size", "-1"],
            ["--queue-per-sender", "-1"],
        ]:
            self.assertRaises(usage.UsageError, self.parse, *REQUIRED + ["--secret", "s"] + extra)

    def test_makeService(self):
        dataDir = self.mktemp()
        os.makedirs(dataDir)
        options = self.parse(
            *REQUIRED
            + [
                "--secret",
                "s",
                "--port",
                "5348",
                "--timeout",
                "3",
                "--strategy",
                "least-pending",
                "--resources",
                "^a",
                "--data-dir",
                dataDir,
                "--queue-per-sender",
                "7",
                "--queue-size",
                "9",
            ]
        )
        proxy = makeService(options)
        self.assertIsInstance(proxy, ProxyComponent)
        self.assertEqual(
            (proxy.host, proxy.port, proxy.jid), ("127.0.0.1", 5348, "proxy.example.org")
        )
        self.assertEqual(proxy.dispatcher.target, "svc@example.org")
        self.assertEqual(proxy.dispatcher.pending.timeout, 3.0)
        self.assertIsInstance(proxy.dispatcher.selector.strategy, LeastPendingStrategy)
        self.assertTrue(proxy.dispatcher.resources.accepts("abc"))
        self.assertFalse(proxy.dispatcher.resources.accepts("b"))
        self.assertEqual(proxy.factory.authenticator.password, "s")
        self.assertEqual(
            (proxy.parts.messages.queuePerSender, proxy.parts.messages.queueSize), (7, 9)
        )
        self.assertIn("clientproxy-proxy.example.org.sqlite", os.listdir(dataDir))
        proxy.store.close()


class PluginTests(unittest.TestCase):
    def test_twistdPlugin(self):
        from twisted import plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, plugins)}
        self.assertIn("clientproxy", makers)
        self.assertIs(makers["clientproxy"].options, Options)


class TacTests(unittest.TestCase):
    """
    The tac files build their services with the same makeService.
    """

    def setUp(self):
        self.patch(os, "environ", {SECRET_ENVIRONMENT: "s"})
        # The tac files keep their stores in the working directory: a fresh
        # one, so no store another test left open is in the way.
        directory = self.mktemp()
        os.makedirs(directory)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)

    def load(self, name):
        namespace = {}
        exec(compile(TAC.child(name).getContent(), name, "exec"), namespace)
        proxies = list(service.IServiceCollection(namespace["application"]))
        for proxy in proxies:
            self.addCleanup(proxy.store.close)
        return proxies

    def test_single(self):
        [proxy] = self.load("clientproxy.tac")
        self.assertIsInstance(proxy, ProxyComponent)
        self.assertEqual(proxy.jid, "proxy.example.org")

    def test_two(self):
        proxies = self.load("two-proxies.tac")
        self.assertEqual(
            [(p.jid, p.dispatcher.target) for p in proxies],
            [
                ("focus.example.org", "focus@auth.example.org"),
                ("search.example.org", "search@example.org"),
            ],
        )


class TLSOptionTests(unittest.TestCase):
    def setUp(self):
        self.patch(os, "environ", {SECRET_ENVIRONMENT: "s"})

    def test_tlsNameDefaultsToHost(self):
        from clientproxy.tap import proxyArgumentsOf

        options = Options()
        options.parseOptions(REQUIRED + ["--tls", "--host", "xmpp.example.org"])
        tls = proxyArgumentsOf(options)["tls"]
        self.assertEqual((tls.name, tls.caFile), ("xmpp.example.org", None))

    def test_plainByDefault(self):
        from clientproxy.tap import proxyArgumentsOf

        options = Options()
        options.parseOptions(REQUIRED)
        self.assertIsNone(proxyArgumentsOf(options)["tls"])

    def test_caFileMustExist(self):
        options = Options()
        error = self.assertRaises(
            usage.UsageError,
            options.parseOptions,
            REQUIRED + ["--tls", "--ca-file", "/nonexistent"],
        )
        self.assertIn("--ca-file", str(error))

    def test_tlsInTheConfigFile(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                '[[proxy]]\njid = "p.example.org"\ntarget = "s@example.org"\n'
                'tls = true\ntls-name = "xmpp.example.org"\n'
            )
        options = Options()
        options.parseOptions(["--config", path])
        [proxy] = options["proxies"]
        self.assertTrue(proxy["tls"])
        self.assertEqual(proxy["tls-name"], "xmpp.example.org")
        with open(path, "w") as f:
            f.write('[[proxy]]\njid = "p.example.org"\ntarget = "s@example.org"\ntls = "yes"\n')
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--config", path])
        self.assertIn("'tls' must be true or false", str(error))
