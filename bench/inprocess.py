"""
The component's own ceiling: the stanza path in one process, no network, no
server. Serialised stanzas go into the component's real XML stream (the
same parser, handlers and serialiser as in production); what it writes is
counted, not parsed. One round trip is: request in, request out, reply in,
reply out.

    .venv/bin/python bench/inprocess.py [--requests N] [--resources K] [--profile]

Prints round trips per second of CPU time on one core, and with --profile
the functions where the time goes. --dispatch chooses what the dispatch
pipeline does: C{plain} (no feature matching, no affinity), C{matching}
(every resource advertises the request's namespace, learnt through
disco#info, and C{--match-features auto} keeps to the advertisers), or
C{affinity} (matching, plus C{--affinity attribute:room} over 100 rooms).
--dispatch-scale gives the CPU per round trip of each with 1 to 1000
resources. The reactor does not run; its timed-call
bookkeeping (where cancelled timeouts are let go) is run every 64 round
trips, as a running reactor would between reads.
"""

import argparse
import cProfile
import json
import pstats
import sys
import time

from twisted.internet import reactor

from clientproxy.assembly import makeProxy

COMPONENT = "proxy.localhost"
TARGET = "svc@localhost"

HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='%s' id='bench'><handshake/>"
    % COMPONENT.encode()
)

#: The namespace of the requests, which the resources advertise.
NS = "urn:example:conference"

#: Rooms the requests are spread over (their affinity keys).
ROOMS = 100

#: What each --dispatch mode sets: (match-features, affinity).
DISPATCH = {
    "plain": ("off", "none"),
    "matching": ("auto", "none"),
    "affinity": ("auto", "attribute:room"),
}

#: A request of about 300 bytes on the wire, like a small service query.
REQUEST = (
    "<iq type='get' id='%(id)s' from='%(requester)s' to='" + COMPONENT + "'>"
    "<query xmlns='urn:example:conference' room='room%(n)d@conference.localhost' "
    "machine-uid='4b5f0c1d9a2e' bridge='jvb-1'><property name='rtcstatsEnabled' "
    "value='true'/></query></iq>"
)
REPLY = (
    "<iq type='result' id='%(id)s' from='%(resource)s' to='" + COMPONENT + "/%(requester)s'>"
    "<query xmlns='urn:example:conference' ready='true' focusjid='focus@auth.localhost'/>"
    "</iq>"
)


class CountingTransport:
    """
    A transport that only counts what it is given.
    """

    disconnecting = False

    def __init__(self):
        self.writes = 0
        self.bytes = 0

    def write(self, data):
        self.writes += 1
        self.bytes += len(data)

    def writeSequence(self, seq):
        for data in seq:
            self.write(data)

    def loseConnection(self):
        pass

    def getPeer(self):
        return None

    def getHost(self):
        return None


def connectedProxy(resources, strategy, dispatch="plain", **options):
    """
    A proxy whose stream is authenticated, with C{resources} available
    resources of the target, which (unless C{dispatch} is C{plain}) have
    answered the component's disco#info queries with L{NS}. C{options} go
    to L{makeProxy}.
    """
    match, affinity = DISPATCH[dispatch]
    proxy = makeProxy(
        COMPONENT,
        TARGET,
        "secret",
        strategy=strategy,
        timeout=30,
        maxPending=0,
        # The probes for other processes are timed writes: not part of the
        # stanza path measured here.
        probeInstances=False,
        matchFeatures=match,
        affinity=affinity,
        **options,
    )
    xs = proxy.factory.buildProtocol(None)
    transport = CountingTransport()
    xs.makeConnection(transport)
    xs.dataReceived(HEADER)
    xs.dataReceived(b"<presence type='subscribed' from='%s'/>" % TARGET.encode())
    names = ["%s/r%d" % (TARGET, i) for i in range(resources)]
    for name in names:
        xs.dataReceived(("<presence from='%s'/>" % name).encode())
    for queryID, query in list(proxy.parts.capabilities._queries.items()):
        xs.dataReceived(
            (
                "<iq type='result' id='%s' from='%s' to='%s'><query "
                "xmlns='http://jabber.org/protocol/disco#info'><feature var='%s'/></query></iq>"
                % (queryID, query.resource.jid, COMPONENT, NS)
            ).encode()
        )
    assert len(proxy.dispatcher.resources) == resources
    assert not proxy.parts.capabilities._queries
    return proxy, xs, transport, names


def stanzas(count, names, requesters, selector=None):
    """
    The serialised requests and their replies. With round-robin dispatch
    the resource of request i is known in advance: names[i % K]; with
    affinity, the C{selector} says (and its answer is cached, as it would
    be by the first request of each room).
    """
    out = []
    for i in range(count):
        requester = "user%d@localhost/res%d" % (i % requesters, i % requesters)
        room = "room%d@conference.localhost" % (i % ROOMS,)
        if selector is not None:
            resource = selector.choose(NS, (NS, "conference", "set"), room, requester).jid
        else:
            resource = names[i % len(names)]
        values = {
            "id": "b%d" % i,
            "requester": requester,
            "n": i % ROOMS,
            "resource": resource,
        }
        out.append(((REQUEST % values).encode(), (REPLY % values).encode()))
    return out


def run(count, resources, requesters, profile=False, window=1, dispatch="plain"):
    """
    Send C{count} round trips through the stanza path, C{window} requests
    in flight at a time. Return the figures as a dict.
    """
    proxy, xs, transport, names = connectedProxy(resources, "round-robin", dispatch)
    selector = proxy.dispatcher.selector if dispatch == "affinity" else None
    work = stanzas(count, names, requesters, selector)
    feed = xs.dataReceived
    profiler = cProfile.Profile() if profile else None
    before = transport.writes
    if profiler:
        profiler.enable()
    tick = reactor.runUntilCurrent
    cpu0 = time.process_time()
    for start in range(0, count, window):
        batch = work[start : start + window]
        for request, _ in batch:
            feed(request)
        for _, reply in batch:
            feed(reply)
        if start % 64 < window:
            tick()
    cpu = time.process_time() - cpu0
    if profiler:
        profiler.disable()
    answered = proxy.stats.requests["answered"]
    assert answered == count, (answered, dict(proxy.stats.requests), dict(proxy.stats.dropped))
    assert transport.writes - before == 2 * count
    for call in reactor.getDelayedCalls():
        call.cancel()
    result = {
        "round_trips": count,
        "resources": resources,
        "requesters": requesters,
        "window": window,
        "dispatch": dispatch,
        "cpu_s": round(cpu, 3),
        "round_trips_per_cpu_s": round(count / cpu),
        "cpu_us_per_round_trip": round(cpu / count * 1e6, 2),
    }
    if profiler:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
        result["profile_shares"] = shares(stats)
    return result


#: Parts of the stanza path, by where their code lives (first match wins);
#: cProfile's own time per call makes absolute figures meaningless, shares
#: are what it tells.
PARTS = [
    (
        "parse and build elements",
        ("clientproxy/xmpp/parser.py", "pyexpat", "Parse", "domish.py:_on"),
    ),
    ("XPath observer dispatch", ("xish/xpath.py", "xish/utility.py")),
    ("serialise", ("clientproxy/xmpp/writer.py", "domish.py:toXml", "domish.py:_Serializer")),
    ("pending table", ("clientproxy/routing/pending.py", "internet/defer.py")),
    ("timers", ("internet/base.py",)),
    (
        "request handling",
        tuple(
            "clientproxy/%s.py" % m
            for m in ("dispatch", "selection", "stanzas", "policy", "jat", "stats", "strategies")
        ),
    ),
    (
        "stream, send, write",
        (
            "xish/xmlstream.py",
            "subprotocols.py",
            "wokkel/component.py",
            "clientproxy/xmpp/stream.py",
        ),
    ),
    ("domish element methods", ("domish.py",)),
    ("interface checks", ("zope", "providedBy")),
]


def shares(stats):
    """
    The share of the profiled time (own time of each function) by part
    of the stanza path (L{PARTS}); built-in functions count as "built-ins".
    """
    totals = {}
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():
        where = "%s:%s" % (filename, name)
        part = next(
            (part for part, marks in PARTS if any(mark in where for mark in marks)),
            "built-ins" if filename == "~" else "other",
        )
        totals[part] = totals.get(part, 0.0) + own
    whole = sum(totals.values())
    return {
        part: round(100 * t / whole, 1) for part, t in sorted(totals.items(), key=lambda i: -i[1])
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--resources", type=int, default=1)
    parser.add_argument("--requesters", type=int, default=100)
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--dispatch", choices=sorted(DISPATCH), default="plain")
    parser.add_argument(
        "--dispatch-scale",
        action="store_true",
        help="CPU per round trip of each --dispatch mode for 1 to 1000 resources",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="CPU per round trip for 1 to 1000 resources and requesters",
    )
    args = parser.parse_args(argv)
    if args.dispatch_scale:
        result = {
            "dispatch_scale": [
                run(args.requests, resources, args.requesters, dispatch=mode)
                for resources in (1, 10, 100, 1000)
                for mode in ("plain", "matching", "affinity")
            ]
        }
    elif args.scale:
        counts = (1, 10, 100, 1000)
        result = {
            "scale": [
                run(args.requests, resources, requesters)
                for resources in counts
                for requesters in counts
            ]
        }
    else:
        result = run(
            args.requests,
            args.resources,
            args.requesters,
            args.profile,
            args.window,
            args.dispatch,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
