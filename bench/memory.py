"""
The component's memory, in process (no network, no server): the same
stream, handlers and tables as in production, fed serialised stanzas.

- RSS with 0, 10k and 100k requests in flight (resources that hold them)
  from 1,000 requesters, and the bytes each pending request costs; the same
  with every request from a distinct requester (the worst case: the
  per-requester in-flight count then costs an entry per request);
- RSS while 1M requests from 1M distinct requester resources are served
  (must stay flat: no cache grows with the requesters).

    python3 bench/memory.py [--in-flight 100000] [--distinct 1000000]
"""

import argparse
import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from twisted.internet import reactor  # noqa: E402

from inprocess import REPLY, REQUEST, connectedProxy  # noqa: E402
from load import rssBytes  # noqa: E402


def rss():
    gc.collect()
    return rssBytes(os.getpid())


def inFlight(total, requesters, marks=(10000,)):
    """
    RSS with requests in flight from C{requesters} distinct requesters
    (each holding about total / requesters of them).
    """
    proxy, xs, transport, names = connectedProxy(10, "round-robin")
    figures = {"0": rss()}
    sent = 0
    for mark in sorted(set(marks) | {total}):
        while sent < mark:
            requester = "user%d@localhost/r" % (sent % requesters,)
            xs.dataReceived(
                (REQUEST % {"id": "m%d" % sent, "requester": requester, "n": sent}).encode()
            )
            sent += 1
        assert len(proxy.dispatcher.pending) == sent
        reactor.runUntilCurrent()
        figures[str(mark)] = rss()
    perRequest = (figures[str(total)] - figures["0"]) / total
    proxy.dispatcher.pending.failAll("recipient-unavailable")
    reactor.runUntilCurrent()
    return {"rss_by_in_flight": figures, "bytes_per_pending_request": round(perRequest)}


def distinctRequesters(total, samples=10):
    proxy, xs, transport, names = connectedProxy(1, "round-robin")
    step = total // samples
    figures = {}
    feed = xs.dataReceived
    for i in range(total):
        values = {
            "id": "d%d" % i,
            "requester": "u%d@localhost/r%d" % (i, i),
            "n": i,
            "resource": names[0],
        }
        feed((REQUEST % values).encode())
        feed((REPLY % values).encode())
        if i % 64 == 0:
            reactor.runUntilCurrent()
        if (i + 1) % step == 0:
            figures[str(i + 1)] = rss()
    assert proxy.stats.requests["answered"] == total
    values = list(figures.values())
    return {
        "rss_by_distinct_requesters": figures,
        "rss_growth_after_first_sample": values[-1] - values[0],
    }


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--in-flight", type=int, default=100000)
    parser.add_argument("--distinct", type=int, default=1000000)
    args = parser.parse_args(argv)
    result = inFlight(args.in_flight, 1000)
    worst = inFlight(args.in_flight, args.in_flight)
    result["bytes_per_pending_request_all_distinct"] = worst["bytes_per_pending_request"]
    result.update(distinctRequesters(args.distinct))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
