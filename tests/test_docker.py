"""
The container image (Dockerfile at the checkout's root): built, looked at
(a user of its own, no compiler, /readyz as its health check) and run
against a throwaway Prosody, when the machine has a container engine and
the base image. Otherwise every test is skipped, saying which is missing:
the base image is never pulled (the suite does not assume a registry is
reachable).
"""

import os
import shutil
import socket
import subprocess

from twisted.internet import defer, threads
from twisted.trial import unittest

from clientproxy.testing.prosody import ThrowawayProsody
from tests.integration import COMPONENT, SECRET, TARGET, ServerTestCase, withTimeout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The Dockerfile's base image, and the tag the test builds.
BASE = "python:3.11-slim"
IMAGE = "clientproxy-test:latest"
#: The port the image's health check asks /readyz on.
HEALTH_PORT = 9347


def docker(*arguments, timeout=60):
    """
    Run C{docker ARGUMENTS}: C{(exit status, output, errors)}.
    """
    done = subprocess.run(
        ["docker"] + list(arguments), capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stdout.strip(), done.stderr.strip()


def missing():
    """
    Why the image cannot be built and run here, or C{None}.
    """
    if shutil.which("docker") is None:
        return "no docker client on the PATH"
    status, out, err = docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    if status != 0 or not out:
        return "no container engine reachable (docker info: %s)" % (
            (err.splitlines() or ["no answer"])[-1],
        )
    if docker("image", "inspect", BASE)[0] != 0:
        return "the base image %s is not on this machine (not pulled: no registry assumed)" % (
            BASE,
        )
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", HEALTH_PORT)) == 0:
            return "port %d, which the image's health check asks, is taken here" % (HEALTH_PORT,)
    return None


class ImageTests(ServerTestCase):
    """
    The image, built once per test run, on Prosody.
    """

    serverClass = ThrowawayProsody
    timeout = 900

    def setUp(self):
        why = missing()
        if why is not None:
            raise unittest.SkipTest(why)
        return ServerTestCase.setUp(self)

    def build(self):
        status, out, err = docker("build", "--network", "host", "-t", IMAGE, ROOT, timeout=800)
        self.assertEqual(status, 0, "docker build failed: %s" % (err[-4000:],))

    @defer.inlineCallbacks
    def test_imageRunsAgainstProsody(self):
        """
        The image runs as a user of its own with no compiler in it; started
        with a configuration and a secret file mounted (as Docker secrets
        are), it connects to the throwaway Prosody, turns healthy once the
        target's resource is online, and serves a request.
        """
        yield threads.deferToThread(self.build)
        self.assertNotEqual(docker("run", "--rm", "--entrypoint", "id", IMAGE, "-u")[1], "0")
        tools = docker(
            "run", "--rm", "--entrypoint", "sh", IMAGE, "-c", "command -v gcc cc make || true"
        )[1]
        self.assertEqual(tools, "")
        health = docker("image", "inspect", "--format", "{{json .Config.Healthcheck}}", IMAGE)[1]
        self.assertIn("/readyz", health)

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        secret = os.path.join(directory, "secret")
        with open(secret, "w") as f:
            f.write(SECRET + "\n")
        config = os.path.join(directory, "clientproxy.toml")
        with open(config, "w") as f:
            f.write(
                "metrics-port = %d\n\n[[proxy]]\njid = %r\ntarget = %r\n"
                'secret-file = "/run/secrets/clientproxy_secret"\nhost = "127.0.0.1"\n'
                "port = %d\n" % (HEALTH_PORT, COMPONENT, TARGET, self.server.componentPort)
            )
        os.chmod(secret, 0o644)
        os.chmod(config, 0o644)
        name = "clientproxy-test-%d" % (os.getpid(),)
        self.addCleanup(docker, "rm", "-f", name)
        status, _, err = docker(
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "--health-interval",
            "1s",
            "--health-start-period",
            "1s",
            "-v",
            "%s:/etc/clientproxy/clientproxy.toml:ro" % (config,),
            "-v",
            "%s:/run/secrets/clientproxy_secret:ro" % (secret,),
            IMAGE,
        )
        self.assertEqual(status, 0, err)
        yield self.connect("svc", "a")

        def healthy():
            return docker("inspect", "--format", "{{.State.Health.Status}}", name)[1] == "healthy"

        yield self.waitUntil(healthy, "the container to be healthy", seconds=60)
        alice = yield self.connect("alice", "x")
        reply = yield withTimeout(alice.request(COMPONENT), what="a request through the image")
        self.assertEqual(reply["type"], "result")
        logs = docker("logs", name)
        self.assertNotIn("Traceback", logs[1] + logs[2])
