"""
The Jitsi Meet swap, tried as docs/jitsi.md says, on a throwaway Prosody
standing in for jitsi-meet-prosody: its host file serves focus.localhost with
mod_client_proxy; contrib/jitsi/focus-clientproxy.cfg.lua goes beside it; the
component runs as `twistd -n clientproxy --config` with
contrib/jitsi/clientproxy.toml (domain, secret file, ports and data directory
filled in); a jicofo-shaped client logs in as focus@auth.localhost/focus
(clientproxy/testing/jicofo.py). Then what a deployment meets, with figures:

  1. jicofo restarts (gone 3 s) while ten users join;
  2. one of two jicofos leaves with ten joins in flight;
  3. jicofo answers with its own errors.

    bash tools/setup.sh && python3 demo/jitsi.py
"""

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request

from twisted.internet import defer, task, threads

from clientproxy.testing.client import Client
from clientproxy.testing.jicofo import (
    CONTRIB,
    Focus,
    applicationError,
    conferenceOf,
    conferenceRequest,
    fill,
    jitsiProsody,
)
from clientproxy.testing.server import freePort
from clientproxy.testing.twistd import ComponentProcess

DOMAIN = "localhost"
FOCUS = "focus." + DOMAIN
ACCOUNT = "focus@auth." + DOMAIN
USERS = 10


def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)


def room(n):
    return "room%d@conference.%s" % (n, DOMAIN)


def readyz(reactor, port):
    """
    A Deferred of /readyz's status and this proxy's part of its body.
    """

    def get():
        try:
            response = urllib.request.urlopen("http://127.0.0.1:%d/readyz" % (port,), timeout=5)
        except urllib.error.HTTPError as e:
            response = e
        return response.status, json.loads(response.read())["proxies"][FOCUS]

    return threads.deferToThread(get)


@defer.inlineCallbacks
def until(reactor, condition, what, seconds=15):
    deadline = reactor.seconds() + seconds
    while not (yield defer.maybeDeferred(condition)):
        if reactor.seconds() > deadline:
            raise RuntimeError("demo: waited %s s for %s" % (seconds, what))
        yield sleep(reactor, 0.05)


class Joins:
    """
    Conference requests sent, and when each was answered.
    """

    def __init__(self, reactor):
        self.reactor = reactor
        self.sent = {}
        self.ids = set()
        self.answers = {}
        self.seconds = {}

    def join(self, user, n):
        self.sent[n] = self.reactor.seconds()
        iq = conferenceRequest(FOCUS, room(n), token="eyJ.demo.%d" % (n,))
        self.ids.add(iq["id"])
        d = user.sendRequest(iq)

        def answered(reply):
            self.answers[n] = reply
            self.seconds[n] = self.reactor.seconds() - self.sent[n]
            return reply

        return d.addCallback(answered)

    def report(self, users):
        results = [n for n, r in self.answers.items() if r["type"] == "result" and conferenceOf(r)]
        errors = [n for n, r in self.answers.items() if r["type"] == "error"]
        replies = sum(1 for user in users for r in user.replies if r.getAttribute("id") in self.ids)
        print(
            "   %d joins: %d results (conference ready), %d errors, %d answers in all"
            % (len(self.sent), len(results), len(errors), replies)
        )
        times = sorted(self.seconds.values())
        print(
            "   seconds from request to answer: min %.2f, median %.2f, max %.2f"
            % (times[0], times[len(times) // 2], times[-1])
        )
        return results, errors, replies


@defer.inlineCallbacks
def main(reactor):
    work = tempfile.mkdtemp(prefix="clientproxy-jitsi-demo-")
    secret = os.path.join(work, "focus.secret")
    with open(secret, "w") as f:
        f.write(os.urandom(16).hex() + "\n")
    os.chmod(secret, 0o640)
    server = jitsiProsody(secret)
    process = ComponentProcess(echo=lambda line: print("    [clientproxy] " + line))
    clients = []
    failures = []

    @defer.inlineCallbacks
    def login(address, **kwargs):
        client = Client(address, "pw", "127.0.0.1", server.c2sPort, **kwargs)
        clients.append((yield client.connect()))
        return client

    try:
        print("1. Prosody as on a Jitsi host: %s on mod_client_proxy in the host file," % FOCUS)
        print("   contrib/jitsi/focus-clientproxy.cfg.lua beside it (conf.d)")
        server.register("focus", "pw", host="auth." + DOMAIN)
        for n in range(USERS):
            server.register("user%d" % (n,), "pw")
        yield server.start()

        metrics = freePort()
        with open(os.path.join(CONTRIB, "clientproxy.toml"), encoding="utf-8") as f:
            toml = fill(
                f.read(),
                [
                    ("metrics-port = 9347", "metrics-port = %d" % (metrics,)),
                    ('"focus.meet.example.org"', '"%s"' % (FOCUS,)),
                    ('"focus@auth.meet.example.org"', '"%s"' % (ACCOUNT,)),
                    ('"/run/credentials/clientproxy.service/focus.secret"', '"%s"' % (secret,)),
                    ("port = 5347", "port = %d" % (server.componentPort,)),
                    ('"/var/lib/clientproxy"', '"%s"' % (work,)),
                ],
            )
        config = os.path.join(work, "clientproxy.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(toml)
        print("2. twistd -n clientproxy --config contrib/jitsi/clientproxy.toml (filled in)")
        connected = process.waitForLine(lambda line: "Connected to" in line)
        process.start(["--config", config], work)
        yield connected

        print("3. jicofo logs in as %s/focus" % (ACCOUNT,))
        first = Focus(ACCOUNT, delay=None)
        old = yield login(ACCOUNT + "/focus", onRequest=first)
        yield until(
            reactor, lambda: readyz(reactor, metrics).addCallback(lambda r: r[0] == 200), "/readyz"
        )
        print("   /readyz: 200 %s" % (json.dumps((yield readyz(reactor, metrics))[1]),))
        users = []
        for n in range(USERS):
            users.append((yield login("user%d@%s/web" % (n, DOMAIN))))

        print("4. jicofo restarts (gone 3 s) while ten users join")
        joins = Joins(reactor)
        answers = [joins.join(users[n], n) for n in range(3)]
        yield until(reactor, lambda: len(first.requests) == 3, "jicofo to hold three joins")
        print("   jicofo holds 3 joins and stops")
        stopped = reactor.seconds()
        clients.remove(old)
        yield old.disconnect()
        for n in range(3, USERS):
            answers.append(joins.join(users[n], n))
            yield sleep(reactor, 0.3)
        code, body = yield readyz(reactor, metrics)
        print("   /readyz while it is gone: %d %s" % (code, json.dumps(body)))
        yield sleep(reactor, max(0, stopped + 3 - reactor.seconds()))
        focus = Focus(ACCOUNT, delay=0.5)
        yield login(ACCOUNT + "/focus", onRequest=focus)
        print(
            "   jicofo is back after %.1f s (it joins each room in 0.5 s)"
            % (reactor.seconds() - stopped)
        )
        yield defer.gatherResults(answers).addTimeout(30, reactor)
        results, errors, replies = joins.report(users)
        if (len(results), errors, replies) != (USERS, [], USERS):
            failures.append("restart")

        print("5. Two jicofos; one leaves with ten joins in flight")
        leaving = Focus(ACCOUNT, delay=None)
        going = yield login(ACCOUNT + "/focus2", onRequest=leaving)
        yield sleep(reactor, 0.5)
        joins = Joins(reactor)
        answers = [joins.join(user, USERS + n) for n, user in enumerate(users)]
        yield until(
            reactor,
            lambda: len(leaving.requests) + len(focus.requests) >= 2 * USERS,
            "the joins to reach the two jicofos",
        )
        held = len(leaving.requests)
        print("   focus2 holds %d of them (the rooms --affinity gives it) and stops" % (held,))
        clients.remove(going)
        yield going.disconnect()
        yield defer.gatherResults(answers).addTimeout(30, reactor)
        results, errors, replies = joins.report(users)
        if (len(results), errors) != (USERS, []):
            failures.append("leave")

        print("6. jicofo refuses a reservation: the user gets its error as it wrote it")
        focus.reserved[room(99)] = (403, "Room reserved for someone else")
        reply = yield users[0].sendRequest(conferenceRequest(FOCUS, room(99)))
        print("   %s" % (reply.toXml(),))
        sent = focus.answers[-1]
        same = [c.toXml() for c in applicationError(reply).parent.children] == [
            c.toXml() for c in applicationError(sent).parent.children
        ]
        print("   the <error/> is the one jicofo wrote: %s" % (same,))
        if not same:
            failures.append("error")
        print("Demo done%s; cleaning up." % (": FAILED " + ", ".join(failures) if failures else ""))
    finally:
        for client in clients:
            yield client.disconnect()
        yield process.stop()
        yield server.stop()
        server.cleanUp()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(main)
