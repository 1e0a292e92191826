"""
Soak run: several minutes of mixed valid and hostile traffic against
clientproxy (run as `twistd -n clientproxy`) on a throwaway Prosody.

    bash tools/setup.sh && .venv/bin/python bench/soak.py [--minutes 3]

Valid: requesters pipelining IQ gets to two echoing resources; every one
must get its result (no error, none lost). Hostile, each with the answer
it must get:

- a denied account (--deny) sending requests: forbidden;
- a flooder sending bursts over --burst: policy-violation for the excess,
  nothing lost;
- oversized requests (over --max-stanza-size): policy-violation;
- forged results to encoded addresses, from an outsider and from a target
  session: dropped (never reach the requesters, who count unknown replies);
- presence subscribe/unsubscribe floods and messages to the component;
- a second external component sending what Prosody does not check for
  components: IQs with two children (bad-request), without an id, with bogus
  types, results nobody asked for (dropped), and with no child (Prosody 0.12
  itself loses a childless get sent from a component to a component's
  bare domain: nothing reaches the component).

At the end: the process is alive, memory is flat (RSS sampled every 10 s),
and the metrics endpoint's counters are printed.
"""

import argparse
import json
import os
import sys

from twisted.internet import defer, task
from twisted.web.client import Agent, readBody
from twisted.words.xish import domish
from wokkel.component import Component
from wokkel.subprotocols import XMPPHandler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from load import Requester, Responder, rssBytes  # noqa: E402

from clientproxy.testing.client import Client, requestFor  # noqa: E402
from clientproxy.testing.prosody import ThrowawayProsody  # noqa: E402
from clientproxy.testing.server import freePort  # noqa: E402
from clientproxy.testing.twistd import ComponentProcess  # noqa: E402

PROXY = "proxy.localhost"
EVIL = "evil.localhost"
TARGET = "svc@localhost"
SECRET = "soak-secret"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def condition(iq):
    for error in iq.elements():
        if error.name == "error":
            for c in error.elements():
                if c.uri == NS_STANZAS:
                    return c.name
    return None


class Tally:
    """
    Answers a hostile client got, by type or condition.
    """

    def __init__(self, client):
        self.counts = {}
        self.sent = 0
        client.xmlstream.addObserver("/iq[@type='result']", self.count, priority=10)
        client.xmlstream.addObserver("/iq[@type='error']", self.count, priority=10)
        client.xmlstream.addObserver("/message[@type='error']", self.count, priority=10)

    def count(self, stanza):
        key = condition(stanza) or stanza.getAttribute("type")
        self.counts[key] = self.counts.get(key, 0) + 1


class EvilHandler(XMPPHandler):
    """
    Sends malformed IQs as a component, counting the answers.
    """

    def __init__(self):
        XMPPHandler.__init__(self)
        self.counts = {}
        self.sent = {}

    def connectionInitialized(self):
        self.xmlstream.addObserver("/iq", self.count)

    def count(self, iq):
        key = "%s:%s" % (iq.getAttribute("id", "").split("-")[0], condition(iq) or iq["type"])
        self.counts[key] = self.counts.get(key, 0) + 1

    def burst(self, n):
        raws = {
            "nochild": "<iq type='get' id='nochild-%d' from='evil.localhost/x' to='proxy.localhost'/>",
            "twochildren": "<iq type='get' id='twochildren-%d' from='evil.localhost/x' "
            "to='proxy.localhost'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>",
            "noid": "<iq type='get' from='evil.localhost/x' to='proxy.localhost'><a xmlns='urn:a'/></iq>",
            "bogus": "<iq type='bogus' id='bogus-%d' from='evil.localhost/x' to='proxy.localhost'/>",
            "forged": "<iq type='result' id='r%d' from='evil.localhost/x' "
            "to='proxy.localhost/req0@localhost/load'/>",
        }
        for name, raw in raws.items():
            self.sent[name] = self.sent.get(name, 0) + 1
            self.xmlstream.send(raw % n if "%d" in raw else raw)


@defer.inlineCallbacks
def soak(reactor, args):
    server = ThrowawayProsody({PROXY: SECRET, EVIL: SECRET}, loglevel="warn")
    for user in ["svc", "mallory", "flooder", "big", "forger", "subscriber"] + [
        "req%d" % i for i in range(args.requesters)
    ]:
        server.register(user, "pw")
    metricsPort = freePort()
    component = ComponentProcess()
    evil = None
    clients = []
    report = {}
    try:
        yield server.start()
        host, port = "127.0.0.1", server.c2sPort

        @defer.inlineCallbacks
        def login(address):
            client = yield Client(address, "pw", host, port).connect()
            clients.append(client)
            return client

        for name in ("a", "b"):
            Responder((yield login("%s/%s" % (TARGET, name))))
        garbage = yield login(TARGET + "/garbage")
        learnt = component.waitForResources(2)
        component.start(
            [
                "--jid",
                PROXY,
                "--target",
                TARGET,
                "--secret",
                SECRET,
                "--port",
                str(server.componentPort),
                "--data-dir",
                server.directory,
                "--timeout",
                "5",
                "--resources",
                "^(a|b)$",
                "--deny",
                "mallory@localhost",
                "--rate",
                "2000",
                "--burst",
                "500",
                "--max-stanza-size",
                "4096",
                "--metrics-port",
                str(metricsPort),
            ],
            server.directory,
        )
        yield learnt
        evil = Component("127.0.0.1", server.componentPort, EVIL, SECRET)
        evilHandler = EvilHandler()
        evilHandler.setHandlerParent(evil)
        evil.startService()

        requesters = []
        for i in range(args.requesters):
            requester = Requester((yield login("req%d@localhost/load" % i)), "q%d" % i)
            requester.aim(PROXY, 4)
            requesters.append(requester)
        mallory = yield login("mallory@localhost/m")
        flooder = yield login("flooder@localhost/f")
        big = yield login("big@localhost/b")
        forger = yield login("forger@localhost/f")
        subscriber = yield login("subscriber@localhost/s")
        tallies = {
            name: Tally(c) for name, c in [("mallory", mallory), ("flooder", flooder), ("big", big)]
        }

        def hostile(n):
            for _ in range(5):
                mallory.send(requestFor(PROXY))
                tallies["mallory"].sent += 1
            for _ in range(3000):
                flooder.send(requestFor(PROXY))
                tallies["flooder"].sent += 1
            payload = domish.Element(("urn:big", "q"))
            payload.addContent("x" * 8000)
            big.send(requestFor(PROXY, payload))
            tallies["big"].sent += 1
            for i in range(20):
                for client, stanzaID in ((forger, "q0-%d" % i), (garbage, "q1-%d" % i)):
                    iq = domish.Element((None, "iq"))
                    iq["type"] = "result"
                    iq["id"] = stanzaID
                    iq["to"] = PROXY + "/req0@localhost/load"
                    client.send(iq)
            for kind in ("subscribe", "unsubscribe") * 10:
                subscriber.sendPresence(kind, to=PROXY)
            forger.sendMessage(PROXY, "hello from a stranger")
            evilHandler.burst(n)

        for requester in requesters:
            requester.reset()
            requester.start()
        rounds = int(args.minutes * 60 / 10)
        samples = []
        for n in range(rounds):
            hostile(n)
            yield task.deferLater(reactor, 10, lambda: None)
            samples.append(rssBytes(component.pid))
            print(
                "  %3d s: component RSS %.1f MiB, valid answered %d"
                % ((n + 1) * 10, samples[-1] / 2**20, sum(len(r.latencies) for r in requesters)),
                flush=True,
            )
        yield task.deferLater(reactor, 6, lambda: None)
        drained = defer.DeferredList([r.stop() for r in requesters])
        yield drained.addTimeout(15, reactor)
        agent = Agent(reactor)
        response = yield agent.request(b"GET", b"http://127.0.0.1:%d/metrics" % metricsPort)
        metrics = (yield readBody(response)).decode()
        alive = os.path.exists("/proc/%d" % component.pid) and not component.ended.called
        report = {
            "minutes": args.minutes,
            "valid_answered": sum(len(r.latencies) for r in requesters),
            "valid_errors": sum(r.errors for r in requesters),
            "valid_lost": sum(len(r.sent) for r in requesters),
            "unknown_replies_at_requesters": sum(r.unknown for r in requesters),
            "hostile_clients": {
                name: {"sent": t.sent, "answers": t.counts} for name, t in tallies.items()
            },
            "evil_component": {"sent": evilHandler.sent, "answers": evilHandler.counts},
            "component_alive": alive,
            "rss_mib": [round(s / 2**20, 1) for s in samples],
            "metrics": [
                line
                for line in metrics.splitlines()
                if line.startswith(
                    (
                        "clientproxy_requests_",
                        "clientproxy_request_errors_total",
                        "clientproxy_dropped_total",
                        "clientproxy_messages_",
                        "clientproxy_message_errors_total",
                        "clientproxy_pending",
                    )
                )
            ],
        }
        checks = {
            "every valid request answered with a result": report["valid_errors"] == 0
            and report["valid_lost"] == 0
            and report["valid_answered"] > 0,
            "no forged reply reached a requester": report["unknown_replies_at_requesters"] == 0,
            "denied requester always forbidden": tallies["mallory"].counts
            == {"forbidden": tallies["mallory"].sent},
            "flooder: every request answered": sum(tallies["flooder"].counts.values())
            == tallies["flooder"].sent,
            "flooder: excess refused": tallies["flooder"].counts.get("policy-violation", 0) > 0,
            "oversized refused": tallies["big"].counts == {"policy-violation": tallies["big"].sent},
            "malformed IQs from a component: bad-request": evilHandler.counts.get(
                "twochildren:bad-request"
            )
            == evilHandler.sent["twochildren"],
            "component alive": alive,
            "memory flat (last sample within 10% of the one at 60 s)": len(samples) < 7
            or samples[-1] <= samples[5] * 1.10,
        }
        report["checks"] = checks
    finally:
        for client in clients:
            yield client.disconnect()
        if evil is not None:
            evil.stopService()
        yield component.stop()
        yield server.stop()
        server.cleanUp()
    print(json.dumps(report, indent=1))
    failed = [name for name, ok in report.get("checks", {}).items() if not ok]
    print("soak: %d passed, %d failed" % (len(report.get("checks", {})) - len(failed), len(failed)))
    if failed:
        raise SystemExit("soak failed: " + "; ".join(failed))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--requesters", type=int, default=3)
    task.react(soak, [parser.parse_args()])


if __name__ == "__main__":
    main()
