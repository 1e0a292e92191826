"""
All of clientproxy's benchmarks, in one command (a few minutes on 2 cores):

    bash tools/setup.sh && .venv/bin/python bench/run.py

1. Network, side by side, interleaved rounds (A B C A B C ...), medians:
   direct (requester to a resource of the target), the bare forwarder
   (bench/forwarder.py, a benchmark baseline), and clientproxy (run as
   `twistd -n clientproxy`), all on one throwaway Prosody on loopback.
   Pipelined load (N requesters, window W each, for W = 8 and 16), then
   light load (N=1, W=1); Prosody on one core, the rest on the other. Requests per second, p50/p99 latency, CPU per round trip of the
   component and of Prosody, and the load tool's own CPU.
2. In process (bench/inprocess.py): the component's own ceiling, CPU per
   round trip with 1 to 1000 resources and 1 to 1000 requesters, and the
   cost of feature matching and affinity with 1 to 1000 resources.
3. Memory (bench/memory.py): RSS with 0, 10k, 100k requests in flight,
   over 1M requests from 1M distinct requesters, and over 100k requests
   carrying element and attribute names never seen before.

Results are printed as tables and written to bench/results.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from twisted.internet import defer, protocol, task

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from load import Requester, Responder, measure  # noqa: E402

from clientproxy.testing.client import Client  # noqa: E402
from clientproxy.testing.prosody import ThrowawayProsody  # noqa: E402
from clientproxy.testing.twistd import ComponentProcess  # noqa: E402

PROXY = "proxy.localhost"
FORWARDER = "fwd.localhost"
TARGET = "svc@localhost"
SECRET = "bench-secret"


class ForwarderProcess(protocol.ProcessProtocol):
    def __init__(self):
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        if b"ready" in data and not self.ready.called:
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(None)


def pin(prosody, *others):
    """
    With two cores or more: Prosody on the first, this process (the load
    tool) and the components on the second, so the server is not slowed by
    what it serves, and the component's time per stanza shows as the
    server waiting for it.
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return
    os.sched_setaffinity(prosody, {cores[0]})
    for pid in (0,) + others:
        os.sched_setaffinity(pid, {cores[1]})


def median(rounds, key):
    return statistics.median(r[key] for r in rounds)


@defer.inlineCallbacks
def network(reactor, args):
    server = ThrowawayProsody({PROXY: SECRET, FORWARDER: SECRET}, loglevel="warn")
    server.register("svc", "pw")
    for i in range(args.requesters):
        server.register("req%d" % i, "pw")
    component = ComponentProcess(python=args.python)
    forwarder = ForwarderProcess()
    forwarderProcess = None
    clients = []
    results = {}
    try:
        yield server.start()
        responders = []
        for i in range(args.resources):
            client = Client("%s/r%d" % (TARGET, i), "pw", "127.0.0.1", server.c2sPort)
            clients.append((yield client.connect()))
            responders.append(Responder(client))
        requesters = []
        for i in range(args.requesters):
            client = Client("req%d@localhost/load" % i, "pw", "127.0.0.1", server.c2sPort)
            clients.append((yield client.connect()))
            requesters.append(Requester(client, "q%d" % i))

        learnt = component.waitForResources(args.resources)
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
                "--strategy",
                "round-robin",
                "--timeout",
                "30",
            ],
            server.directory,
        )
        yield learnt
        forwarderProcess = reactor.spawnProcess(
            forwarder,
            args.python,
            [
                args.python,
                os.path.join(HERE, "forwarder.py"),
                "--jid",
                FORWARDER,
                "--secret",
                SECRET,
                "--port",
                str(server.componentPort),
            ]
            + sum((["--resource", "%s/r%d" % (TARGET, i)] for i in range(args.resources)), []),
            env=dict(os.environ),
        )
        yield forwarder.ready.addTimeout(15, reactor)

        modes = {
            "direct": (lambda i: "%s/r%d" % (TARGET, i % args.resources), None),
            "bare forwarder": (lambda i: FORWARDER, forwarderProcess.pid),
            "clientproxy": (lambda i: PROXY, component.pid),
        }
        pin(server.pid, component.pid, forwarderProcess.pid)
        loads = [("pipelined-%d" % (window,), (requesters, window)) for window in args.windows]
        for load, (active, window) in loads + [("light", (requesters[:1], 1))]:
            rounds = {mode: [] for mode in modes}
            for n in range(args.rounds):
                for mode, (to, pid) in modes.items():
                    for i, requester in enumerate(active):
                        requester.aim(to(i), window)
                    pids = {"prosody": server.pid}
                    if pid is not None:
                        pids["component"] = pid
                    figures = yield measure(reactor, active, args.duration, args.warmup, pids)
                    rounds[mode].append(figures)
                    print(
                        "  %s round %d %-15s %7.0f/s p50 %.2f ms p99 %.2f ms lost %d errors %d"
                        % (
                            load,
                            n + 1,
                            mode,
                            figures["per_second"],
                            figures["p50_ms"],
                            figures["p99_ms"],
                            figures["lost"],
                            figures["errors"],
                        ),
                        flush=True,
                    )
            results[load] = {
                "requesters": len(active),
                "window": window,
                "rounds": rounds,
                "median": {
                    mode: {key: median(rs, key) for key in rs[0]} for mode, rs in rounds.items()
                },
            }
    finally:
        for client in clients:
            yield client.disconnect()
        yield component.stop()
        if forwarderProcess is not None and not forwarder.ended.called:
            forwarderProcess.signalProcess("TERM")
            yield forwarder.ended
        yield server.stop()
        server.cleanUp()
    return results


def inProcess(script, *arguments):
    output = subprocess.run(
        [sys.executable, os.path.join(HERE, script)] + list(arguments),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def report(results):
    lines = []
    for load in results["network"]:
        net = results["network"][load]
        m = net["median"]
        lines.append("")
        lines.append(
            "%s load: %d requesters, window %d, median of %d rounds"
            % (load, net["requesters"], net["window"], len(net["rounds"]["direct"]))
        )
        lines.append(
            "| | req/s | p50 ms | p99 ms | component CPU µs/rt | Prosody CPU µs/rt | load tool CPU % | lost | errors |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for mode, f in m.items():
            lines.append(
                "| %s | %.0f | %.2f | %.2f | %s | %.0f | %.0f | %d | %d |"
                % (
                    mode,
                    f["per_second"],
                    f["p50_ms"],
                    f["p99_ms"],
                    "%.0f" % f["component_cpu_us_per_rt"]
                    if "component_cpu_us_per_rt" in f
                    else "-",
                    f["prosody_cpu_us_per_rt"],
                    f["load_tool_cpu_percent"],
                    f["lost"],
                    f["errors"],
                )
            )
        cp, bare, direct = m["clientproxy"], m["bare forwarder"], m["direct"]
        lines.append("")
        lines.append(
            "clientproxy / bare forwarder: throughput %.2f, p99 %.2f; clientproxy / direct: throughput %.2f; "
            "p50 added over direct: %.3f ms"
            % (
                cp["per_second"] / bare["per_second"],
                cp["p99_ms"] / bare["p99_ms"],
                cp["per_second"] / direct["per_second"],
                cp["p50_ms"] - direct["p50_ms"],
            )
        )
    ceiling = results["ceiling"]
    lines.append("")
    lines.append(
        "In-process ceiling (feature matching and room affinity on): %d round trips per CPU "
        "second (%.1f µs each)"
        % (ceiling["round_trips_per_cpu_s"], ceiling["cpu_us_per_round_trip"])
    )
    lines.append(
        "Where the in-process time goes (cProfile, share of own time): "
        + ", ".join("%s %.0f%%" % item for item in results["profile"].items())
    )
    lines.append("")
    lines.append("CPU µs per round trip, in process (rows: resources; columns: requesters)")
    scale = results["scale"]
    lines.extend(byResources(scale, "requesters", sorted({s["requesters"] for s in scale})))
    dispatch = results.get("dispatch_scale")
    if dispatch:
        lines.append("")
        lines.append(
            "CPU µs per round trip, in process, by dispatch pipeline (rows: resources; plain: "
            "no matching; matching: --match-features auto, every resource advertising the "
            "namespace; affinity: matching plus --affinity attribute:room over 100 rooms)"
        )
        lines.extend(byResources(dispatch, "dispatch", ["plain", "matching", "affinity"]))
    memory = results["memory"]
    lines.append("")
    lines.append(
        "Memory: RSS by requests in flight (from 1,000 requesters): %s; %d bytes per "
        "pending request (%d when every request comes from a distinct requester)"
        % (
            ", ".join(
                "%s: %.1f MiB" % (k, v / 2**20) for k, v in memory["rss_by_in_flight"].items()
            ),
            memory["bytes_per_pending_request"],
            memory["bytes_per_pending_request_all_distinct"],
        )
    )
    for title, key in (
        ("RSS over distinct requesters", "rss_by_distinct_requesters"),
        ("RSS over requests with fresh element and attribute names", "rss_by_fresh_names_requests"),
    ):
        lines.append(
            "%s: %s"
            % (title, ", ".join("%s: %.1f MiB" % (k, v / 2**20) for k, v in memory[key].items()))
        )
    lines.append("")
    lines.extend(targets(results))
    return "\n".join(lines)


def targets(results):
    """
    The figures this run gives for the performance targets, met or not.
    """
    lines = ["Targets:"]

    def check(what, value, bound, met):
        lines.append("- %s: %s (target %s): %s" % (what, value, bound, "met" if met else "MISSED"))

    network = results["network"]
    for load, net in network.items():
        m = net["median"]
        cp, bare = m["clientproxy"], m["bare forwarder"]
        if load == "light":
            added = cp["p50_ms"] - bare["p50_ms"]
            check(
                "light load, p50 added over the bare forwarder",
                "%.3f ms" % added,
                "<= 0.05 ms",
                added <= 0.05,
            )
            continue
        throughput = cp["per_second"] / bare["per_second"]
        p99 = cp["p99_ms"] / bare["p99_ms"]
        cpu = cp["component_cpu_us_per_rt"] / bare["component_cpu_us_per_rt"]
        check(
            "%s, throughput / bare forwarder" % load,
            "%.2f" % throughput,
            ">= 0.95",
            throughput >= 0.95,
        )
        check("%s, p99 / bare forwarder" % load, "%.2f" % p99, "<= 1.2", p99 <= 1.2)
        check(
            "%s, component CPU per round trip / bare forwarder" % load,
            "%.2f" % cpu,
            "<= 2",
            cpu <= 2,
        )
    rate = results["ceiling"]["round_trips_per_cpu_s"]
    check("in process, round trips per CPU second", "%d" % rate, ">= 50000", rate >= 50000)
    memory = results["memory"]["bytes_per_pending_request"]
    check("bytes per pending request", "%d" % memory, "<= 1024", memory <= 1024)
    return lines


def byResources(samples, column, columns):
    """
    A table of CPU µs per round trip: a row per number of resources, a
    column per value of C{column}.
    """
    lines = ["| resources | " + " | ".join(str(c) for c in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for resources in sorted({s["resources"] for s in samples}):
        row = {
            s[column]: s["cpu_us_per_round_trip"] for s in samples if s["resources"] == resources
        }
        lines.append("| %d | " % resources + " | ".join("%.1f" % row[c] for c in columns) + " |")
    return lines


@defer.inlineCallbacks
def run(reactor, args):
    results = {"parameters": vars(args)}
    if not args.skip_network:
        print("1. Network: direct, bare forwarder, clientproxy on one Prosody", flush=True)
        results["network"] = yield network(reactor, args)
    else:
        results["network"] = {}
    if args.network_only:
        print(json.dumps(results["network"], indent=1))
        return
    print("2. In process: the component's ceiling, and its scale", flush=True)
    results["ceiling"] = inProcess("inprocess.py", "--requests", "50000", "--dispatch", "affinity")
    results["profile"] = inProcess(
        "inprocess.py", "--requests", "20000", "--dispatch", "affinity", "--profile"
    )["profile_shares"]
    results["scale"] = inProcess("inprocess.py", "--scale", "--requests", "20000")["scale"]
    results["dispatch_scale"] = inProcess(
        "inprocess.py", "--dispatch-scale", "--requests", "20000"
    )["dispatch_scale"]
    print("3. Memory", flush=True)
    results["memory"] = inProcess("memory.py", "--distinct", str(args.distinct))
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)
    print(report(results))


def main():
    parser = argparse.ArgumentParser(description="clientproxy benchmarks")
    parser.add_argument("--requesters", type=int, default=4)
    parser.add_argument("--resources", type=int, default=2)
    parser.add_argument(
        "--windows",
        type=lambda text: [int(w) for w in text.split(",")],
        default=[8, 16],
        help="the windows of the pipelined load, comma-separated",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--distinct", type=int, default=1000000)
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter (its environment's twistd) that runs clientproxy and the bare "
        "forwarder in the network benchmark, e.g. a PyPy virtualenv's",
    )
    parser.add_argument("--skip-network", action="store_true")
    parser.add_argument("--network-only", action="store_true")
    parser.add_argument("--output", default=os.path.join(HERE, "results.json"))
    task.react(run, [parser.parse_args()])


if __name__ == "__main__":
    main()
