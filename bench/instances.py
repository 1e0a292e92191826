"""
Several clientproxy processes on one component of ejabberd, sharing their
state in Redis (C{--redis}, L{clientproxy.state.redis.cluster}), against one process
with the embedded default:

    .venv/bin/python bench/instances.py [--requesters N] [--window W] [--duration S]

For each set-up (one process embedded; 1, 2 and 3 processes with Redis), a
throwaway ejabberd and Redis on loopback, two resources of the target that
answer at once, and N requesters pipelining W requests each. Prints
requests per second, p50 and p99 latency, and CPU per round trip of
ejabberd, of all the clientproxy processes together and of Redis. Set-ups
run one after the other, each on fresh processes.
"""

import argparse
import json
import os
import sys

from twisted.internet import defer, task

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from load import Requester, Responder, measure  # noqa: E402

from clientproxy.testing.client import Client  # noqa: E402
from clientproxy.testing.ejabberd import ThrowawayEjabberd  # noqa: E402
from clientproxy.testing.redis import ThrowawayRedis  # noqa: E402
from clientproxy.testing.twistd import ComponentProcess  # noqa: E402

PROXY = "proxy.localhost"
TARGET = "svc@localhost"
SECRET = "bench-secret"
RESOURCES = 2


@defer.inlineCallbacks
def setup(reactor, args, count, redis):
    """
    Measure C{count} processes (with Redis when C{redis} is given).
    """
    server = ThrowawayEjabberd({PROXY: SECRET})
    server.register("svc", "pw")
    for i in range(args.requesters):
        server.register("req%d" % i, "pw")
    processes, clients = [], []
    try:
        yield server.start()
        for n in range(count):
            process = ComponentProcess()
            directory = os.path.join(server.directory, "proxy%d" % n)
            os.mkdir(directory)
            options = ["--jid", PROXY, "--target", TARGET, "--secret", SECRET]
            options += ["--port", str(server.componentPort), "--data-dir", directory]
            if redis is not None:
                options += ["--redis", redis.url]
            connected = process.waitForLine(lambda line: "Connected to" in line)
            process.start(options, directory)
            processes.append(process)
            yield connected
        learnt = [p.waitForResources(RESOURCES, timeout=30) for p in processes]
        for i in range(RESOURCES):
            client = Client("%s/r%d" % (TARGET, i), "pw", "127.0.0.1", server.c2sPort)
            clients.append((yield client.connect()))
            Responder(client)
        yield defer.gatherResults(learnt)
        requesters = []
        for i in range(args.requesters):
            client = Client("req%d@localhost/load" % i, "pw", "127.0.0.1", server.c2sPort)
            clients.append((yield client.connect()))
            requester = Requester(client, "q%d" % i)
            requester.aim(PROXY, args.window)
            requesters.append(requester)
        pids = {"ejabberd": server.pid}
        for n, process in enumerate(processes):
            pids["clientproxy%d" % n] = process.pid
        if redis is not None:
            pids["redis"] = redis.pid
        figures = yield measure(reactor, requesters, args.duration, args.warmup, pids)
        figures["clientproxy_cpu_us_per_rt"] = sum(
            figures.pop("clientproxy%d_cpu_us_per_rt" % n) for n in range(count)
        )
        figures["clientproxy_cpu_percent"] = sum(
            figures.pop("clientproxy%d_cpu_percent" % n) for n in range(count)
        )
        return figures
    finally:
        for client in clients:
            yield client.disconnect()
        for process in processes:
            yield process.stop()
        yield server.stop()
        server.cleanUp()


@defer.inlineCallbacks
def main(reactor, argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requesters", type=int, default=4)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    redis = ThrowawayRedis()
    yield redis.start()
    results = {}
    try:
        for name, count, shared in (
            ("1 process, embedded", 1, None),
            ("1 process, Redis", 1, redis),
            ("2 processes, Redis", 2, redis),
            ("3 processes, Redis", 3, redis),
        ):
            figures = yield setup(reactor, args, count, shared)
            results[name] = figures
            print(
                "%-22s %7.0f/s p50 %5.2f ms p99 %6.2f ms  CPU/rt: ejabberd %4.0f us, "
                "clientproxy %4.0f us, redis %3.0f us  lost %d errors %d"
                % (
                    name,
                    figures["per_second"],
                    figures["p50_ms"],
                    figures["p99_ms"],
                    figures["ejabberd_cpu_us_per_rt"],
                    figures["clientproxy_cpu_us_per_rt"],
                    figures.get("redis_cpu_us_per_rt", 0),
                    figures["lost"],
                    figures["errors"],
                ),
                flush=True,
            )
    finally:
        yield redis.stop()
        redis.cleanUp()
    print(json.dumps(results))


if __name__ == "__main__":
    task.react(main, [sys.argv[1:]])
