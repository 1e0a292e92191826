"""
The deployment examples in contrib/ work as shipped: the systemd unit
passes C{systemd-analyze verify}, the unit and the example configuration
agree (one credential per proxy, the state directory as the data
directory), and the unit's command line, run under the environment systemd
gives it (C{$CREDENTIALS_DIRECTORY}, C{$STATE_DIRECTORY}, C{$NOTIFY_SOCKET}),
connects every proxy of the example to a real Prosody on loopback.
"""

import os
import shlex
import shutil
import socket
import subprocess
import tempfile

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from clientproxy.ops.config import tomllib
from clientproxy.ops.metrics import COUNTERS
from clientproxy.testing.prosody import ThrowawayProsody
from clientproxy.testing.server import freePort
from clientproxy.testing.twistd import ComponentProcess, twistdPath
from tests.helpers import waitFor
from tests.integration import ServerTestCase

CONTRIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "contrib")
UNIT = os.path.join(CONTRIB, "clientproxy.service")
EXAMPLE = os.path.join(CONTRIB, "clientproxy.toml")

#: Where the unit's comments say to install clientproxy, and its twistd.
INSTALLED = "/opt/clientproxy/bin/twistd"
#: The configuration file the unit runs.
CONFIG = "/etc/clientproxy/clientproxy.toml"
#: The component secrets the test's server knows, by component.
SECRETS = {"focus.example.org": "focus-secret", "search.example.org": "search-secret"}


def directives(path=UNIT):
    """
    The unit's directives, C{(name, value)} in order, with continued lines
    (a trailing backslash) joined and comments left out.
    """
    found, pending = [], ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not pending and (not line or line[0] in "#;["):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            name, _, value = (pending + line).partition("=")
            found.append((name.strip(), value.strip()))
            pending = ""
    return found


def execStart():
    """
    The unit's command line, as a list of arguments.
    """
    [command] = [value for name, value in directives() if name == "ExecStart"]
    return shlex.split(command)


def credentials():
    """
    The unit's credentials: C{{name: file}} of its C{LoadCredential=} lines.
    """
    loaded = [value.split(":", 1) for name, value in directives() if name == "LoadCredential"]
    return dict(loaded)


def exampleProxies():
    with open(EXAMPLE, "rb") as f:
        return tomllib.load(f)["proxy"]


class UnitTests(unittest.TestCase):
    """
    The unit, checked by systemd, and agreeing with the example
    configuration.
    """

    def test_verify(self):
        """
        The unit passes C{systemd-analyze verify} without a complaint, once
        its twistd is one that exists (this environment's, for the
        documented C{/opt/clientproxy}; verify checks the program is there).
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise unittest.SkipTest("systemd-analyze is not installed (Debian's systemd)")
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        with open(UNIT, encoding="utf-8") as f:
            text = f.read()
        self.assertIn(INSTALLED, text)
        unit = os.path.join(directory, "clientproxy.service")
        with open(unit, "w", encoding="utf-8") as f:
            f.write(text.replace(INSTALLED, twistdPath()))
        result = subprocess.run(
            [analyze, "verify", unit], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(
            (result.returncode, result.stdout + result.stderr), (0, ""), "systemd-analyze verify"
        )

    def test_commandLine(self):
        """
        The unit runs the twistd of the documented installation (its
        comments say how to make it) in the foreground, logging to standard
        output (the journal), with the configuration file.
        """
        command = execStart()
        self.assertEqual(command[0], INSTALLED)
        self.assertIn("--nodaemon", command)
        self.assertIn("--logfile=-", command)
        self.assertEqual(command[command.index("--config") + 1], CONFIG)
        with open(UNIT, encoding="utf-8") as f:
            self.assertIn("python3 -m venv /opt/clientproxy", f.read())

    def test_oneCredentialPerProxy(self):
        """
        Each proxy of the example takes its secret from a credential of its
        own that the unit loads (C{LoadCredential=NAME:/etc/clientproxy/NAME}),
        and no proxy reads a secret file the service's dynamic user could
        not read.
        """
        proxies = exampleProxies()
        names = [p["secret-credential"] for p in proxies]
        self.assertEqual(len(set(names)), len(proxies))
        self.assertEqual(set(credentials()), set(names))
        for name, path in credentials().items():
            self.assertEqual(path, "/etc/clientproxy/" + name)
        self.assertEqual([p for p in proxies if "secret-file" in p], [])

    def test_stateDirectory(self):
        """
        The unit gives the service a state directory, and the example sets
        no C{data-dir}: the queue and subscribers go to C{$STATE_DIRECTORY}.
        """
        self.assertIn(("StateDirectory", "clientproxy"), directives())
        self.assertIn(("DynamicUser", "yes"), directives())
        self.assertEqual([p for p in exampleProxies() if "data-dir" in p], [])


class UnitRunTests(ServerTestCase):
    """
    The unit's command line, run as systemd runs it, against Prosody.
    """

    serverClass = ThrowawayProsody
    components = SECRETS

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="clientproxy-unit-")
        self.addCleanup(shutil.rmtree, self.root, True)
        return ServerTestCase.setUp(self)

    def directory(self, name):
        path = os.path.join(self.root, name)
        os.mkdir(path, 0o700)
        return path

    def notifications(self):
        """
        A datagram socket standing for systemd's C{$NOTIFY_SOCKET}; returns
        its path and the list of what is received on it.
        """
        path = os.path.join(self.directory("notify"), "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(path)
        listener.setblocking(False)
        self.addCleanup(listener.close)
        received = []

        def read():
            while True:
                try:
                    received.extend(listener.recv(4096).decode("utf-8").splitlines())
                except BlockingIOError:
                    return received

        return path, read

    @defer.inlineCallbacks
    def test_unitRunsTheExample(self):
        """
        The unit's command line with the example configuration (its ports
        pointed at the test's Prosody and a free metrics port), the secrets
        as the credentials the unit loads, and the state directory systemd
        makes: both proxies connect, systemd is told READY=1, the stores are
        in the state directory (nothing in the working directory or the
        home), and /metrics shows every counter, at zero but for the one
        attempt to connect each proxy made.
        """
        proxies = exampleProxies()
        with open(EXAMPLE, encoding="utf-8") as f:
            text = f.read()
        self.assertEqual(text.count("port = 5347\n"), len(proxies))
        self.assertEqual(text.count("metrics-port = 9347\n"), 1)
        metricsPort = freePort()
        text = text.replace("port = 5347\n", "port = %d\n" % (self.server.componentPort,))
        text = text.replace("metrics-port = 9347\n", "metrics-port = %d\n" % (metricsPort,))
        configuration = os.path.join(self.directory("etc"), "clientproxy.toml")
        with open(configuration, "w", encoding="utf-8") as f:
            f.write(text)

        credentialsDirectory = self.directory("credentials")
        for proxy in proxies:
            path = os.path.join(credentialsDirectory, proxy["secret-credential"])
            with open(path, "w") as f:
                f.write(SECRETS[proxy["jid"]] + "\n")
        state, home, working = (self.directory(n) for n in ("state", "home", "working"))
        notifySocket, notified = self.notifications()
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": home,
            "CREDENTIALS_DIRECTORY": credentialsDirectory,
            "STATE_DIRECTORY": state,
            "NOTIFY_SOCKET": notifySocket,
        }

        command = execStart()
        command[0] = twistdPath()
        command[command.index(CONFIG)] = configuration
        process = ComponentProcess()
        self.addCleanup(process.stop)
        connected = [
            process.waitForLine(lambda line, jid=p["jid"]: "Connected to" in line and jid in line)
            for p in proxies
        ]
        process.run(command, working, environment)
        yield defer.gatherResults(connected)
        yield waitFor(lambda: "READY=1" in notified(), "READY=1 on $NOTIFY_SOCKET")

        self.assertEqual(
            sorted(f for f in os.listdir(state) if f.endswith(".sqlite")),
            sorted("clientproxy-%s.sqlite" % (p["jid"],) for p in proxies),
        )
        self.assertEqual(os.listdir(working), [])
        self.assertEqual(os.listdir(home), [])

        response = yield Agent(reactor).request(
            b"GET", b"http://127.0.0.1:%d/metrics" % (metricsPort,)
        )
        body = (yield readBody(response)).decode("utf-8")
        self.assertEqual(response.code, 200)
        # Right after the start, every counter of each proxy is there, at
        # zero but the one attempt each made to connect.
        counted = {
            (family.name + "_total", sample.labels["component"]): sample.value
            for family in text_string_to_metric_families(body)
            if family.type == "counter" and family.name.startswith("clientproxy_")
            for sample in family.samples
            if sample.value
        }
        present = {
            (family.name + "_total", sample.labels.get("component"))
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }
        for p in proxies:
            for name in COUNTERS:
                self.assertIn((name, p["jid"]), present)
            attempts = ("clientproxy_server_connection_attempts_total", p["jid"])
            self.assertEqual(counted.pop(attempts), 1)
        self.assertEqual(counted, {})
        yield process.stop()
        self.assertIn("STOPPING=1", notified())
