"""
Tests of the Jitsi Meet deployment to copy (contrib/jitsi/, docs/jitsi.md):
its clientproxy configurations load with the Jitsi options, and its Prosody
file makes a Prosody laid out as a Jitsi Meet host (jitsi-meet-prosody's
focus address on mod_client_proxy) serve the focus address as an external
component, whichever of the two files Prosody reads last, so that the
focus behind it answers through clientproxy.
"""

import os

from twisted.internet import defer
from twisted.trial import unittest

from clientproxy.assembly import makeProxy
from clientproxy.tap import Options
from clientproxy.testing.client import Client
from clientproxy.testing.jicofo import (
    CONTRIB,
    NS_FOCUS,
    Focus,
    conferenceOf,
    conferenceRequest,
    fill,
    jitsiProsody,
)
from tests.helpers import waitFor
from tests.integration import withTimeout

SECRET = "a long random secret"


class ConfigurationTests(unittest.TestCase):
    """
    contrib/jitsi/clientproxy.toml (a Debian host) and
    contrib/jitsi/docker/clientproxy.toml (docker-jitsi-meet) are valid
    configurations with the Jitsi options.
    """

    def load(self, relative, edits):
        """
        Parse the file at C{relative} (under contrib/jitsi) as
        C{twistd clientproxy --config} does, with C{edits} made (its secret
        file and data directory pointed at temporary ones).
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        secret = os.path.join(directory, "focus.secret")
        with open(secret, "w") as f:
            f.write(SECRET + "\n")
        with open(os.path.join(CONTRIB, relative), encoding="utf-8") as f:
            text = fill(
                f.read(), [(old, new.format(secret=secret, dir=directory)) for old, new in edits]
            )
        path = os.path.join(directory, "clientproxy.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        options = Options()
        options.parseOptions(["--config", path])
        [proxy] = options["proxies"]
        return options, proxy

    def assertJitsiOptions(self, proxy):
        self.assertEqual(proxy["idempotent"], [NS_FOCUS])
        self.assertEqual(proxy["affinity"], "attribute:room")
        self.assertGreater(proxy["hold"], 0)
        self.assertGreater(proxy["timeout"], proxy["hold"])
        self.assertEqual(proxy["secret"], SECRET)

    def test_debianHost(self):
        """
        The configuration for a Debian host: the focus address of the
        domain, the focus account, the local Prosody, /readyz on loopback.
        """
        options, proxy = self.load(
            "clientproxy.toml",
            [
                ('"/run/credentials/clientproxy.service/focus.secret"', '"{secret}"'),
                ('"/var/lib/clientproxy"', '"{dir}"'),
            ],
        )
        self.assertJitsiOptions(proxy)
        self.assertEqual(
            (proxy["jid"], proxy["target"], proxy["host"]),
            ("focus.meet.example.org", "focus@auth.meet.example.org", "127.0.0.1"),
        )
        self.assertEqual(
            (options["metrics-port"], options["metrics-interface"]), (9347, "127.0.0.1")
        )

    def test_dockerJitsiMeet(self):
        """
        The configuration for docker-jitsi-meet: its default domains, Prosody
        on the compose network, the secret a Docker secret, and /readyz on
        the port the image's health check asks.
        """
        options, proxy = self.load(
            "docker/clientproxy.toml",
            [
                ('"/run/secrets/clientproxy_secret"', '"{secret}"'),
                ('"/var/lib/clientproxy"', '"{dir}"'),
            ],
        )
        self.assertJitsiOptions(proxy)
        self.assertEqual(
            (proxy["jid"], proxy["target"], proxy["host"]),
            ("focus.meet.jitsi", "focus@auth.meet.jitsi", "xmpp.meet.jitsi"),
        )
        self.assertEqual(options["metrics-port"], 9347)
        with open(os.path.join(os.path.dirname(CONTRIB), "..", "Dockerfile")) as f:
            self.assertIn("http://127.0.0.1:9347/readyz", f.read())


class ProsodyFileTests(unittest.TestCase):
    """
    contrib/jitsi/focus-clientproxy.cfg.lua on a throwaway Prosody laid out
    as a Jitsi Meet host: Prosody reads conf.d's files in the order the
    directory lists them, so both orders are tried.
    """

    timeout = 60

    @defer.inlineCallbacks
    def serve(self, order):
        """
        Start the Prosody with the two files in C{order}, clientproxy for
        the focus address, the focus and a user; the user's conference
        request is answered by the focus through clientproxy.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        secret = os.path.join(directory, "focus.secret")
        with open(secret, "w") as f:
            f.write(SECRET + "\n")
        server = jitsiProsody(secret, order)
        self.addCleanup(server.cleanUp)
        for user, host in (("focus", "auth." + server.domain), ("alice", server.domain)):
            server.register(user, "pw", host=host)
        self.addCleanup(server.stop)
        # The component port opens only if focus.<domain> is an external
        # component: the start waits for it.
        yield server.start()
        focusAddress = "focus." + server.domain
        proxy = makeProxy(
            focusAddress,
            "focus@auth." + server.domain,
            SECRET,
            port=server.componentPort,
            grace=0.2,
            hold=5,
            idempotent=[NS_FOCUS],
        )
        proxy.startService()
        self.addCleanup(proxy.stopService)
        focus = Focus("focus@auth." + server.domain, delay=0)
        clients = []
        for address, handler in (("focus@auth.%s/focus", focus), ("alice@%s/web", None)):
            client = Client(
                address % (server.domain,),
                "pw",
                "127.0.0.1",
                server.c2sPort,
                **({"onRequest": handler} if handler else {}),
            )
            yield withTimeout(client.connect(), what="a login")
            self.addCleanup(client.disconnect)
            clients.append(client)
        yield waitFor(lambda: len(proxy.dispatcher.resources) == 1, "the focus to be known")
        reply = yield withTimeout(
            clients[1].sendRequest(conferenceRequest(focusAddress, "r@conference.localhost")),
            what="the conference",
        )
        self.assertEqual((reply["type"], conferenceOf(reply)["ready"]), ("result", "true"))
        self.assertEqual(len(focus.requests), 1)

    def test_clientproxyFileReadLast(self):
        """
        Read after jitsi-meet-prosody's file, the clientproxy file's
        declaration of the focus address is the one in force.
        """
        return self.serve(("jitsi", "clientproxy"))

    def test_jitsiFileReadLast(self):
        """
        Read before jitsi-meet-prosody's file, it is in force too: it sets
        itself again once the configuration is read, before hosts start.
        """
        return self.serve(("clientproxy", "jitsi"))
