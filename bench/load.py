"""
The load tool: requesters that pipeline IQ get requests over real client
connections, and resources of the target that answer them at once.

Requests and replies are written as prepared strings and replies are
matched by id only, so that the tool itself stays cheap; it reports its own
CPU use next to the server's and the component's, to show it is not the
bottleneck.
"""

import os
import time

from twisted.internet import defer, task
from twisted.words.xish.domish import escapeToXml

#: The benchmark's request payload: about 300 bytes on the wire in all.
PAYLOAD = (
    "<query xmlns='urn:example:conference' room='room1@conference.localhost' "
    "machine-uid='4b5f0c1d9a2e' bridge='jvb-1'><property name='rtcstatsEnabled' "
    "value='true'/></query>"
)
ANSWER = "<query xmlns='urn:example:conference' ready='true' focusjid='focus@auth.localhost'/>"

TICKS = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pid):
    """
    CPU seconds (user + system) used so far by process C{pid}.
    """
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rssBytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Responder:
    """
    Makes a client a resource of the target that answers every request at
    once with a small result.
    """

    def __init__(self, client):
        self.client = client
        self.answered = 0
        xs = client.xmlstream
        xs.removeObserver("/iq[@type='get']", client._onRequest)
        xs.removeObserver("/iq[@type='set']", client._onRequest)
        xs.addObserver("/iq[@type='get']", self.onRequest)

    def onRequest(self, iq):
        self.answered += 1
        self.client.xmlstream.send(
            "<iq type='result' id='%s' to='%s'>%s</iq>"
            % (escapeToXml(iq["id"], True), escapeToXml(iq["from"], True), ANSWER)
        )


class Requester:
    """
    Keeps C{window} requests in flight to one address (see L{aim}), and
    times each.
    """

    def __init__(self, client, tag):
        self.client = client
        self.window = 1
        self.prefix = "%s-" % (tag,)
        self.template = None
        self.sent = {}
        self.counter = 0
        self.running = False
        self.drained = None
        self.reset()
        client.xmlstream.addObserver("/iq", self.onReply, priority=10)

    def aim(self, to, window):
        """
        Send the next requests to C{to}, C{window} at a time.
        """
        self.template = "<iq type='get' id='%%s' to='%s'>%s</iq>" % (escapeToXml(to, True), PAYLOAD)
        self.window = window

    def reset(self):
        self.latencies = []
        self.errors = 0
        self.unknown = 0

    def start(self):
        self.running = True
        for _ in range(self.window - len(self.sent)):
            self.send()

    def stop(self):
        """
        Stop sending; return a Deferred that fires when no request is in
        flight any more.
        """
        self.running = False
        self.drained = defer.Deferred()
        if not self.sent:
            self.drained.callback(None)
        return self.drained

    def send(self):
        self.counter += 1
        stanzaID = self.prefix + str(self.counter)
        self.sent[stanzaID] = time.perf_counter()
        self.client.xmlstream.send(self.template % (stanzaID,))

    def onReply(self, iq):
        iq.handled = True
        started = self.sent.pop(iq.getAttribute("id"), None)
        if started is None:
            self.unknown += 1
            return
        self.latencies.append(time.perf_counter() - started)
        if iq.getAttribute("type") != "result":
            self.errors += 1
        if self.running:
            self.send()
        elif not self.sent and self.drained is not None and not self.drained.called:
            self.drained.callback(None)


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@defer.inlineCallbacks
def measure(reactor, requesters, duration, warmup, pids):
    """
    Run C{requesters} for C{warmup} then C{duration} seconds, and return
    the figures of the measured part. C{pids} maps a name to a process whose
    CPU time is reported per round trip.
    """
    for requester in requesters:
        requester.reset()
        requester.start()
    yield task.deferLater(reactor, warmup, lambda: None)
    for requester in requesters:
        requester.reset()
    cpu0 = {name: cpuSeconds(pid) for name, pid in pids.items()}
    own0, wall0 = time.process_time(), time.perf_counter()
    yield task.deferLater(reactor, duration, lambda: None)
    wall = time.perf_counter() - wall0
    own = time.process_time() - own0
    cpu = {name: cpuSeconds(pid) - cpu0[name] for name, pid in pids.items()}
    latencies = [x for r in requesters for x in r.latencies]
    errors = sum(r.errors for r in requesters)
    unknown = sum(r.unknown for r in requesters)
    try:
        yield defer.DeferredList([r.stop() for r in requesters]).addTimeout(10, reactor)
    except defer.TimeoutError:
        pass
    lost = sum(len(r.sent) for r in requesters)
    for r in requesters:
        r.sent.clear()
    count = len(latencies)
    result = {
        "round_trips": count,
        "per_second": count / wall,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "errors": errors,
        "unknown_replies": unknown,
        "lost": lost,
        "load_tool_cpu_percent": 100 * own / wall,
    }
    for name, seconds in cpu.items():
        result[name + "_cpu_us_per_rt"] = seconds / count * 1e6 if count else float("nan")
        result[name + "_cpu_percent"] = 100 * seconds / wall
    return result
