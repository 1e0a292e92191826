"""
The component's memory, in process (no network, no server): the same
stream, handlers and tables as in production, fed serialised stanzas.

- RSS with 0, 10k and 100k requests in flight (resources that hold them)
  from 1,000 requesters, and the bytes each pending request costs; the same
  with every request from a distinct requester (the worst case: the
  per-requester in-flight count then costs an entry per request);
- RSS while 1M requests from 1M distinct requester resources are served
  (must stay flat: no cache grows with the requesters);
- RSS while 100k requests are served whose payloads carry element and
  attribute names never seen before (must stay flat: the parser keeps no
  names across stanzas).

    .venv/bin/python bench/memory.py [--in-flight 100000] [--distinct 1000000]
        [--fresh-names 100000]
"""

import argparse
import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from twisted.internet import reactor  # noqa: E402

from inprocess import COMPONENT, REPLY, REQUEST, connectedProxy  # noqa: E402
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


def roundTrips(total, request, values, samples=10):
    """
    Serve C{total} round trips of C{request} (with C{values(i, resource)}
    for round trip i) and the reply to each; return the RSS sampled
    C{samples} times along the way, and its growth after the first sample.
    """
    proxy, xs, transport, names = connectedProxy(1, "round-robin")
    step = total // samples
    figures = {}
    feed = xs.dataReceived
    for i in range(total):
        these = values(i, names[0])
        feed((request % these).encode())
        feed((REPLY % these).encode())
        if i % 64 == 0:
            reactor.runUntilCurrent()
        if (i + 1) % step == 0:
            figures[str(i + 1)] = rss()
    assert proxy.stats.requests["answered"] == total
    samples = list(figures.values())
    return figures, samples[-1] - samples[0]


def distinctRequesters(total):
    """
    RSS while C{total} round trips are served, each from a requester never
    seen before.
    """
    figures, growth = roundTrips(
        total,
        REQUEST,
        lambda i, resource: {
            "id": "d%d" % i,
            "requester": "u%d@localhost/r%d" % (i, i),
            "n": i,
            "resource": resource,
        },
    )
    return {"rss_by_distinct_requesters": figures, "rss_growth_after_first_sample": growth}


#: A request whose payload has element and attribute names of its own
#: (ten of each), as a peer minting names would send.
FRESH_REQUEST = (
    "<iq type='get' id='%(id)s' from='user@localhost/r' to='" + COMPONENT + "'>"
    "<query xmlns='urn:example:conference'>%(payload)s</query></iq>"
)
FRESH_ELEMENT = "<element-%(n)d-%(k)d attribute-%(n)d-%(k)d='v'/>"


def freshNames(total):
    """
    RSS while C{total} round trips are served whose requests carry names
    never seen before.
    """
    figures, growth = roundTrips(
        total,
        FRESH_REQUEST,
        lambda i, resource: {
            "id": "f%d" % i,
            "requester": "user@localhost/r",
            "resource": resource,
            "payload": "".join(FRESH_ELEMENT % {"n": i, "k": k} for k in range(10)),
        },
    )
    return {
        "rss_by_fresh_names_requests": figures,
        "rss_growth_fresh_names_after_first_sample": growth,
    }


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--in-flight", type=int, default=100000)
    parser.add_argument("--distinct", type=int, default=1000000)
    parser.add_argument("--fresh-names", type=int, default=100000)
    parser.add_argument("--only-fresh-names", action="store_true", help="only the fresh names run")
    args = parser.parse_args(argv)
    if args.only_fresh_names:
        print(json.dumps(freshNames(args.fresh_names)))
        return
    result = inFlight(args.in_flight, 1000)
    worst = inFlight(args.in_flight, args.in_flight)
    result["bytes_per_pending_request_all_distinct"] = worst["bytes_per_pending_request"]
    result.update(distinctRequesters(args.distinct))
    result.update(freshNames(args.fresh_names))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
