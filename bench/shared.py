"""
The cost of the shared pending table (C{--redis}, L{clientproxy.state.redis.cluster})
against the embedded default, on the component's real stream in one
process, as bench/inprocess.py, but with the reactor running, since Redis
answers asynchronously; a throwaway Redis (Debian's redis-server) on
loopback.

    .venv/bin/python bench/shared.py [--requests N] [--window W]

Prints, for each set-up, the CPU of the component process per round trip
(request in, request out, reply in, reply out), the CPU of redis-server
per round trip, the Redis commands per round trip (from INFO
commandstats), and round trips per second of wall-clock time.
"""

import argparse
import json
import os
import sys
import time

from twisted.internet import defer, reactor, task

from clientproxy.state.redis.store import connect
from clientproxy.testing.redis import ThrowawayRedis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inprocess import connectedProxy, stanzas  # noqa: E402


def redisCPU(pid):
    with open("/proc/%d/stat" % (pid,)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@defer.inlineCallbacks
def commands(port):
    connection = connect("redis://127.0.0.1:%d/0" % (port,))
    info = yield connection.execute("INFO", "commandstats")
    yield connection.disconnect()
    total = scripts = 0
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name = line.split(":", 1)[0]
            calls = int(line.split("calls=", 1)[1].split(",", 1)[0])
            total += calls
            if name in ("cmdstat_eval", "cmdstat_evalsha"):
                scripts += calls
    return total, scripts


def waitingFor(transport):
    """
    Make C{transport.until(n)} return a Deferred that fires once it has
    been written to C{n} times in all (no polling: the wait costs no CPU).
    """
    write = transport.write
    transport.waiting = None

    def counted(data):
        write(data)
        waiting = transport.waiting
        if waiting is not None and transport.writes >= waiting[0]:
            transport.waiting = None
            waiting[1].callback(None)

    def until(n):
        if transport.writes >= n:
            return defer.succeed(None)
        d = defer.Deferred()
        transport.waiting = (n, d)
        return d

    transport.write = counted
    transport.until = until


@defer.inlineCallbacks
def run(count, window, redis=None):
    options = {"redis": redis.url} if redis is not None else {}
    proxy, xs, transport, names = connectedProxy(1, "round-robin", **options)
    waitingFor(transport)
    if redis is not None:
        # The resource's presence was published; let the process settle.
        yield task.deferLater(reactor, 0.5, lambda: None)
        commands0 = yield commands(redis.port)
        server0 = redisCPU(redis.pid)
    work = stanzas(count, names, 100)
    feed = xs.dataReceived
    written = transport.writes
    cpu0, wall0 = time.process_time(), time.monotonic()
    for start in range(0, count, window):
        batch = work[start : start + window]
        for request, _ in batch:
            feed(request)
        written += len(batch)
        yield transport.until(written)
        for _, reply in batch:
            feed(reply)
        written += len(batch)
        yield transport.until(written)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    # The last answer is counted just after it is written.
    yield task.deferLater(reactor, 0, lambda: None)
    assert proxy.stats.requests["answered"] == count, dict(proxy.stats.requests)
    result = {
        "setup": "redis" if redis is not None else "embedded",
        "round_trips": count,
        "window": window,
        "component_cpu_us_per_round_trip": round(cpu / count * 1e6, 1),
        "round_trips_per_s": round(count / wall),
    }
    if redis is not None:
        served = yield commands(redis.port)
        result["redis_scripts_per_round_trip"] = round((served[1] - commands0[1]) / count, 2)
        result["redis_commands_per_round_trip"] = round((served[0] - commands0[0] - 1) / count, 2)
        result["redis_cpu_us_per_round_trip"] = round(
            (redisCPU(redis.pid) - server0) / count * 1e6, 1
        )
        yield proxy.parts.cluster.stop()
        yield proxy.store.close()
    return result


@defer.inlineCallbacks
def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--window", type=int, default=16)
    args = parser.parse_args(argv)
    redis = ThrowawayRedis()
    yield redis.start()
    try:
        results = []
        for setup in (None, redis, None, redis):
            result = yield run(args.requests, args.window, setup)
            print(json.dumps(result))
            results.append(result)
    finally:
        yield redis.stop()
        redis.cleanUp()


if __name__ == "__main__":
    task.react(lambda _reactor: main(sys.argv[1:]))
