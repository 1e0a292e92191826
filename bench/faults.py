"""
Faults under load, by hand (issue 22 item 7): several `twistd clientproxy`
processes on one component of a throwaway ejabberd, sharing a throwaway
Redis (C{--redis}), while one requester sends requests paced over a few
seconds and the target's two resources answer each after a short delay:

    PYTHONPATH=. python3 bench/faults.py [--only NAME ...] [--processes N]
        [--timeout S] [--requests N] [--span S]

Scenarios, each on fresh clientproxy processes and a fresh Redis:

 - C{redis-kill}: Redis killed (SIGKILL), back on its port 1.5 s later;
 - C{redis-pause}: Redis stopped (SIGSTOP) for 4 s, then SIGCONT;
 - C{process-pause}: one process stopped for 6 s, C{--timeout 15};
 - C{term-redis-away}: SIGTERM to a process while Redis is stopped, with
   requests in flight;
 - C{sentinel-failover}: through Sentinel, the master killed, the replica
   promoted.

For each: requests sent, answers received, requests answered more than
once, requests never answered, answers by condition, requests that reached
the target and were not answered with their result, and the time from the
end of the fault until a request sent after it got its result. Requests
not answered are waited for up to 10 s past the request timeout (30 s by
default) after the load, and not longer once every one has an answer.
Every process started is stopped at the end (a stopped one continued
first). The machinery is L{clientproxy.testing.faults}, which the tests of
tests/test_integration_faults.py run too.
"""

import argparse
import sys

from twisted.internet import defer, task

from clientproxy.testing.ejabberd import ThrowawayEjabberd
from clientproxy.testing.faults import PASSWORD, PROXY, SCENARIOS, SECRET


@defer.inlineCallbacks
def main(reactor, argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--only", nargs="*", default=None, choices=list(SCENARIOS))
    parser.add_argument("--processes", type=int, default=None, help="twistd processes (2)")
    parser.add_argument("--timeout", type=float, default=None, help="--timeout of the processes")
    parser.add_argument("--requests", type=int, default=None, help="requests in the load")
    parser.add_argument("--span", type=float, default=None, help="seconds the load is sent over")
    args = parser.parse_args(argv)
    options = {
        key: value
        for key, value in (
            ("count", args.processes),
            ("timeout", args.timeout),
            ("requests", args.requests),
            ("span", args.span),
        )
        if value is not None
    }
    server = ThrowawayEjabberd({PROXY: SECRET})
    server.register("svc", PASSWORD)
    server.register("req", PASSWORD)
    try:
        yield server.start()
        for name, run in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            try:
                result = yield run(reactor, server, **options)
            except Exception as e:
                print("== %s: FAILED TO RUN: %r" % (name, e))
            else:
                print("\n".join(result.report()))
            sys.stdout.flush()
    finally:
        yield server.stop()
        server.cleanUp()


if __name__ == "__main__":
    task.react(main, [sys.argv[1:]])
