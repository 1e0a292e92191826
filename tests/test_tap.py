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
from clientproxy.tap import (
    REDIS_PASSWORD_ENVIRONMENT,
    SECRET_ENVIRONMENT,
    Options,
    defaultDataDir,
    makeService,
)

REQUIRED = ["--jid", "proxy.example.org", "--target", "svc@example.org"]
TAC = FilePath(__file__).parent().sibling("tac")


class OptionsTests(unittest.TestCase):
    """
    The command line: the defaults, each option's parsing and checks, and where
    the secret comes from.
    """

    def setUp(self):
        # The default data directory is systemd's $STATE_DIRECTORY when set:
        # a directory of the test's own, so none is made in the home.
        self.state = os.path.abspath(self.mktemp())
        os.makedirs(self.state)
        self.patch(os, "environ", {"STATE_DIRECTORY": self.state})

    def parse(self, *arguments):
        options = Options()
        options.parseOptions(list(arguments))
        return options

    def test_defaults(self):
        """
        With only the required options the component connects to
        127.0.0.1:5347, waits 30 s for a reply, picks among all resources at
        random, keeps its store in the default data directory (here
        systemd's C{$STATE_DIRECTORY}), and queues 100 messages per sender,
        10000 in all.
        """
        options = self.parse(*REQUIRED + ["--secret", "s"])
        self.assertEqual(options["host"], "127.0.0.1")
        self.assertEqual(options["port"], 5347)
        self.assertEqual(options["timeout"], 30.0)
        self.assertEqual(options["strategy"], "random")
        self.assertIsNone(options["resources"])
        self.assertEqual(options["data-dir"], self.state)
        self.assertEqual((options["queue-per-sender"], options["queue-size"]), (100, 10000))

    def test_allOptions(self):
        """
        Each connection and dispatch option is taken as given, and the
        component's and the target's JIDs are lower-cased.
        """
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
        """
        Allow and deny entries from the options and the access file are
        normalised and merged, and the rate, in-flight, size and grace limits
        reach the service L{makeService} builds.
        """
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
        """
        A full or malformed JID in the lists, an unreadable access file, a
        negative rate, in-flight bound or grace and a burst under one are usage
        errors, at start rather than at the first stanza.
        """
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
        """
        C{--jid} and C{--target} are required.
        """
        self.assertRaises(usage.UsageError, self.parse, "--secret", "s")
        self.assertRaises(usage.UsageError, self.parse, "--jid", "p.x", "--secret", "s")

    def test_badJIDs(self):
        """
        A component JID with a user or resource part, a target that is a domain
        or a full JID, and a malformed or empty JID are usage errors.
        """
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
        """
        The secret is read from C{--secret-file}, without its final newline.
        """
        path = self.mktemp()
        FilePath(path).setContent(b"from-file\n")
        self.assertEqual(self.parse(*REQUIRED + ["--secret-file", path])["secret"], "from-file")

    def test_secretFileMissing(self):
        """
        A secret file that cannot be read is a usage error naming the file.
        """
        e = self.assertRaises(
            usage.UsageError, self.parse, *REQUIRED + ["--secret-file", "/nonexistent/s"]
        )
        self.assertIn("/nonexistent/s", str(e))

    def test_secretCredential(self):
        """
        C{--secret-credential NAME} reads the secret from the systemd
        credential C{NAME}, the file C{$CREDENTIALS_DIRECTORY/NAME}.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        FilePath(os.path.join(directory, "focus.secret")).setContent(b"from-credential\n")
        os.environ["CREDENTIALS_DIRECTORY"] = directory
        options = self.parse(*REQUIRED + ["--secret-credential", "focus.secret"])
        self.assertEqual(options["secret"], "from-credential")

    def test_secretCredentialProblems(self):
        """
        Without C{$CREDENTIALS_DIRECTORY} (not run by systemd, or the unit
        loads no credential), with a name that is a path, or a credential
        the unit does not load, C{--secret-credential} is a usage error that
        says which.
        """
        e = self.assertRaises(
            usage.UsageError, self.parse, *REQUIRED + ["--secret-credential", "focus.secret"]
        )
        self.assertIn("$CREDENTIALS_DIRECTORY is not set", str(e))
        os.environ["CREDENTIALS_DIRECTORY"] = os.path.abspath(self.mktemp())
        e = self.assertRaises(
            usage.UsageError, self.parse, *REQUIRED + ["--secret-credential", "../etc/passwd"]
        )
        self.assertIn("not a credential name", str(e))
        e = self.assertRaises(
            usage.UsageError, self.parse, *REQUIRED + ["--secret-credential", "focus.secret"]
        )
        self.assertIn("--secret-credential: cannot read", str(e))

    def test_secretFromEnvironment(self):
        """
        Without C{--secret} or C{--secret-file}, the secret comes from
        C{$CLIENTPROXY_SECRET}, so it need not be on the command line.
        """
        os.environ[SECRET_ENVIRONMENT] = "from-env"
        self.assertEqual(self.parse(*REQUIRED)["secret"], "from-env")

    def test_secretRequired(self):
        """
        With no secret from any source, the options are refused.
        """
        self.assertRaises(usage.UsageError, self.parse, *REQUIRED)

    def test_oneSecretOnly(self):
        """
        Two of C{--secret}, C{--secret-file} and C{--secret-credential} are
        refused, rather than one of them silently winning.
        """
        path = self.mktemp()
        FilePath(path).setContent(b"x")
        for two in (
            ["--secret", "a", "--secret-file", path],
            ["--secret-credential", "c", "--secret-file", path],
            ["--secret", "a", "--secret-credential", "c"],
        ):
            self.assertRaises(usage.UsageError, self.parse, *REQUIRED + two)

    def test_redisPassword(self):
        """
        The Redis password comes from the URL, C{--redis-password-file}
        (without its final newline) or C{$CLIENTPROXY_REDIS_PASSWORD}, in
        that order; the URL and the file together are refused; the deadline
        and the CA file go with the address.
        """
        base = REQUIRED + ["--secret", "s"]
        address = self.parse(*base + ["--redis", "redis://u:a%40b@h/1"]).redisAddress
        self.assertEqual((address.username, address.password, address.db), ("u", "a@b", 1))
        path = self.mktemp()
        FilePath(path).setContent(b"from-file\n")
        address = self.parse(*base + ["--redis", "redis://h", "--redis-password-file", path])
        self.assertEqual(address.redisAddress.password, "from-file")
        os.environ[REDIS_PASSWORD_ENVIRONMENT] = "from-env"
        self.assertEqual(
            self.parse(*base + ["--redis", "redis://h"]).redisAddress.password, "from-env"
        )
        self.assertRaises(
            usage.UsageError,
            self.parse,
            *base + ["--redis", "redis://:x@h", "--redis-password-file", path],
        )
        ca = self.mktemp()
        FilePath(ca).setContent(b"")
        address = self.parse(
            *base + ["--redis", "rediss://h", "--redis-ca-file", ca, "--redis-timeout", "1.5"]
        ).redisAddress
        self.assertEqual((address.tls, address.caFile, address.deadline), (True, ca, 1.5))
        self.assertEqual(self.parse(*base).redisAddress, None)
        self.assertTrue(self.parse(*base + ["--redis", "redis://h", "--lease"])["lease"])

    def test_redisRefusals(self):
        """
        A C{--redis} URL with parts that would be ignored, a CA file without
        TLS or that does not exist, a password file or C{--lease} without
        C{--redis}, a deadline under 0.1 s: each one usage error (one line),
        never showing the password.
        """
        base = REQUIRED + ["--secret", "s"]
        for extra in (
            ["--redis", "redis://u:hunter2@h/0?timeout=1"],
            ["--redis", "redis://u:hunter2@h/x"],
            ["--redis", "redis://u:hunter2@h/0#f"],
            ["--redis", "unix://u:hunter2@/s?db=1&x=1"],
            ["--redis", "redis://:hunter2@h", "--redis-ca-file", "/etc/hostname"],
            ["--redis", "rediss://:hunter2@h", "--redis-ca-file", "/nonexistent/ca"],
            ["--redis-password-file", "/etc/hostname"],
            ["--lease"],
            ["--redis", "redis://h", "--redis-timeout", "0"],
        ):
            e = self.assertRaises(usage.UsageError, self.parse, *base + extra)
            self.assertNotIn("hunter2", str(e))
            self.assertNotIn("\n", str(e))

    def test_secretNotInErrors(self):
        """
        A usage error never repeats the secret, so it cannot end up in a log or
        on a terminal.
        """
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
        """
        A timeout or port out of range, an unknown strategy, a C{--resources}
        that is no regular expression, a missing data directory and negative
        queue bounds are usage errors.
        """
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
        """
        L{makeService} builds a L{ProxyComponent} with every option applied
        (address, target, timeout, strategy, filter, secret, queue bounds) and
        its SQLite store in the data directory.
        """
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


class DataDirTests(unittest.TestCase):
    """
    The data directory when C{--data-dir} is not given: systemd's, else the
    user's state directory; never the working directory.
    """

    def directory(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        return directory

    def test_stateDirectory(self):
        """
        Under systemd (C{StateDirectory=}), C{$STATE_DIRECTORY} is the data
        directory; of several, the first.
        """
        self.assertEqual(defaultDataDir({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}), "/var/lib/a")

    def test_xdgStateHome(self):
        """
        Otherwise it is C{$XDG_STATE_HOME/clientproxy}, made (mode 0700, the
        queued messages are the users') if missing.
        """
        home = self.directory()
        directory = defaultDataDir({"XDG_STATE_HOME": home})
        self.assertEqual(directory, os.path.join(home, "clientproxy"))
        self.assertEqual(os.stat(directory).st_mode & 0o777, 0o700)

    def test_home(self):
        """
        Without C{$XDG_STATE_HOME}, or with a relative one (which the XDG
        specification says to ignore), it is C{~/.local/state/clientproxy}.
        """
        home = self.directory()
        expected = os.path.join(home, ".local", "state", "clientproxy")
        self.patch(os, "environ", {"HOME": home})
        self.assertEqual(defaultDataDir(), expected)
        self.assertEqual(defaultDataDir({"HOME": home, "XDG_STATE_HOME": "relative"}), expected)
        self.assertTrue(os.path.isdir(expected))

    def test_cannotBeMade(self):
        """
        A user's state directory that cannot be made is a usage error that
        names the directory and says to give C{--data-dir}.
        """
        notADirectory = os.path.join(self.directory(), "file")
        open(notADirectory, "w").close()
        error = self.assertRaises(
            usage.UsageError, defaultDataDir, {"XDG_STATE_HOME": notADirectory}
        )
        self.assertIn(notADirectory, str(error))
        self.assertIn("give --data-dir", str(error))

    def test_optionsUseIt(self):
        """
        Options without C{--data-dir} take the default; one given wins.
        """
        home, given = self.directory(), self.directory()
        self.patch(os, "environ", {"XDG_STATE_HOME": home})
        options = Options()
        options.parseOptions(REQUIRED + ["--secret", "s"])
        self.assertEqual(options["data-dir"], os.path.join(home, "clientproxy"))
        options = Options()
        options.parseOptions(REQUIRED + ["--secret", "s", "--data-dir", given])
        self.assertEqual(options["data-dir"], given)


class VersionAndExtrasTests(unittest.TestCase):
    """
    C{twistd clientproxy --version}, and C{--redis} without the
    C{clientproxy[redis]} extra.
    """

    def test_version(self):
        """
        C{--version} prints clientproxy's version (from
        C{clientproxy.__version__}, the one place it is written) with
        Twisted's, and exits 0.
        """
        import io
        import sys

        import twisted

        from clientproxy import __version__

        out = io.StringIO()
        self.patch(sys, "stdout", out)
        error = self.assertRaises(SystemExit, Options().parseOptions, ["--version"])
        self.assertEqual(error.code, 0)
        self.assertTrue(out.getvalue().startswith("clientproxy %s (" % (__version__,)))
        self.assertIn("Twisted %s" % (twisted.__version__,), out.getvalue())

    def hiredis(self, module):
        """
        Make C{import hiredis} give C{module} (C{None}: an ImportError) for
        the test.
        """
        import sys

        if "hiredis" in sys.modules:
            self.addCleanup(sys.modules.__setitem__, "hiredis", sys.modules["hiredis"])
        else:
            self.addCleanup(sys.modules.pop, "hiredis", None)
        sys.modules["hiredis"] = module

    def test_redisWithoutTheExtra(self):
        """
        C{--redis} where C{hiredis} (the C{clientproxy[redis]} extra) is not
        installed is refused at start with one line saying what to install.
        """
        self.hiredis(None)
        self.patch(os, "environ", {"STATE_DIRECTORY": "."})
        error = self.assertRaises(
            usage.UsageError,
            Options().parseOptions,
            REQUIRED + ["--secret", "s", "--redis", "redis://127.0.0.1:6379/0"],
        )
        self.assertIn("pip install 'clientproxy[redis]'", str(error))
        self.assertNotIn("\n", str(error))

    def test_redisWithTheExtra(self):
        """
        With C{hiredis} importable, C{--redis} is taken.
        """
        self.hiredis(object())
        self.patch(os, "environ", {"STATE_DIRECTORY": "."})
        options = Options()
        options.parseOptions(REQUIRED + ["--secret", "s", "--redis", "redis://127.0.0.1:6379/0"])
        self.assertEqual(options["redis"], "redis://127.0.0.1:6379/0")


class PluginTests(unittest.TestCase):
    """
    The twistd plugin.
    """

    def test_twistdPlugin(self):
        """
        twistd finds the C{clientproxy} plugin, and it parses its command line
        with L{Options}.
        """
        from twisted import plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, plugins)}
        self.assertIn("clientproxy", makers)
        self.assertIs(makers["clientproxy"].options, Options)


class TacTests(unittest.TestCase):
    """
    The tac files build their services with the same makeService.
    """

    def setUp(self):
        # The tac files keep their stores in the default data directory: a
        # fresh one, so no store another test left open is in the way.
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.patch(os, "environ", {SECRET_ENVIRONMENT: "s", "STATE_DIRECTORY": directory})
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
        """
        tac/clientproxy.tac builds one proxy, for proxy.example.org.
        """
        [proxy] = self.load("clientproxy.tac")
        self.assertIsInstance(proxy, ProxyComponent)
        self.assertEqual(proxy.jid, "proxy.example.org")

    def test_two(self):
        """
        tac/two-proxies.tac builds two proxies in one process, each with its
        own JID and target.
        """
        proxies = self.load("two-proxies.tac")
        self.assertEqual(
            [(p.jid, p.dispatcher.target) for p in proxies],
            [
                ("focus.example.org", "focus@auth.example.org"),
                ("search.example.org", "search@example.org"),
            ],
        )


class TLSOptionTests(unittest.TestCase):
    """
    The TLS options: off by default, checked at start, and also in the
    configuration file.
    """

    def setUp(self):
        state = os.path.abspath(self.mktemp())
        os.makedirs(state)
        self.patch(os, "environ", {SECRET_ENVIRONMENT: "s", "STATE_DIRECTORY": state})

    def test_tlsNameDefaultsToHost(self):
        """
        With C{--tls} and no C{--tls-name}, the server's certificate is checked
        for the C{--host} connected to; with no C{--ca-file}, none is set.
        """
        from clientproxy.tap import proxyArgumentsOf

        options = Options()
        options.parseOptions(REQUIRED + ["--tls", "--host", "xmpp.example.org"])
        tls = proxyArgumentsOf(options)["tls"]
        self.assertEqual((tls.name, tls.caFile), ("xmpp.example.org", None))

    def test_plainByDefault(self):
        """
        Without C{--tls}, no TLS is set up.
        """
        from clientproxy.tap import proxyArgumentsOf

        options = Options()
        options.parseOptions(REQUIRED)
        self.assertIsNone(proxyArgumentsOf(options)["tls"])

    def test_caFileMustExist(self):
        """
        A C{--ca-file} that does not exist is a usage error naming the option,
        at start rather than at the first connection.
        """
        options = Options()
        error = self.assertRaises(
            usage.UsageError,
            options.parseOptions,
            REQUIRED + ["--tls", "--ca-file", "/nonexistent"],
        )
        self.assertIn("--ca-file", str(error))

    def test_tlsInTheConfigFile(self):
        """
        C{tls} and C{tls-name} may be set per proxy in the configuration file;
        a C{tls} that is not a boolean is refused, saying so.
        """
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
