"""
Faults under load, by hand (issue 22 item 7): several `twistd clientproxy`
processes on one component of a throwaway ejabberd, sharing a throwaway
Redis (C{--redis}), while one requester sends requests paced over a few
seconds and the target's two resources answer each after a short delay:

    PYTHONPATH=. python3 bench/faults.py [--only NAME ...]

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
not answered are waited for up to 40 s after the load (past the request
timeout, 30 s by default). Every process started is stopped at the end (a stopped one continued first).
"""

import argparse
import os
import signal
import sys
from collections import Counter

from twisted.internet import defer, task, utils

from clientproxy.testing.client import Client, heldFor, requestFor
from clientproxy.testing.ejabberd import ThrowawayEjabberd
from clientproxy.testing.redis import ThrowawayRedis, ThrowawaySentinel
from clientproxy.testing.twistd import ComponentProcess

PROXY = "proxy.localhost"
TARGET = "svc@localhost"
SECRET = "bench-secret"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)


def now(reactor):
    return reactor.seconds()


@defer.inlineCallbacks
def waitUntil(reactor, predicate, seconds):
    deadline = now(reactor) + seconds
    while not predicate():
        if now(reactor) > deadline:
            return False
        yield sleep(reactor, 0.05)
    return True


@defer.inlineCallbacks
def redisCli(port, *args):
    out = yield utils.getProcessOutput(
        "/usr/bin/redis-cli", ["-h", "127.0.0.1", "-p", str(port)] + list(args), errortoo=True
    )
    return out.decode("utf-8", "replace")


@defer.inlineCallbacks
def endProcess(reactor, process, seconds=15):
    """
    Continue C{process} if stopped, SIGTERM it, and SIGKILL it if it has
    not ended within C{seconds}.
    """
    if process.pid is None or process.ended.called:
        return
    try:
        os.kill(process.pid, signal.SIGCONT)
    except OSError:
        pass
    process.stop()
    if not (yield waitUntil(reactor, lambda: process.ended.called, seconds)):
        try:
            os.kill(process.pid, signal.SIGKILL)
        except OSError:
            pass
        yield waitUntil(reactor, lambda: process.ended.called, 5)


@defer.inlineCallbacks
def endRedis(redis):
    if redis.pid is not None:
        try:
            os.kill(redis.pid, signal.SIGCONT)
        except OSError:
            pass
    yield redis.stop()
    redis.cleanUp()


def condition(reply):
    if reply["type"] == "result":
        return "result"
    for error in reply.elements():
        if error.name == "error":
            for child in error.elements():
                if child.uri == NS_STANZAS and child.name != "text":
                    return child.name
    return "error (no condition)"


class Context:
    """
    What a fault acts on (the processes), and the notes it leaves for the
    report.
    """

    def __init__(self, processes):
        self.processes = processes
        self.notes = []


@defer.inlineCallbacks
def scenario(reactor, server, name, fault, redisUrl, count=2, options=(), hold=0.3,
             requests=200, span=4.0, margin=40.0):
    """
    Run one fault: C{fault(ctx)} starts with the load and returns the time
    the fault ended.
    """
    processes, clients = [], []
    replies = []  # (time, id, condition)
    try:
        for n in range(count):
            process = ComponentProcess()
            directory = os.path.join(server.directory, "%s-%d" % (name, n))
            os.mkdir(directory)
            args = ["--jid", PROXY, "--target", TARGET, "--secret", SECRET]
            args += ["--port", str(server.componentPort), "--data-dir", directory]
            args += ["--redis", redisUrl] + list(options)
            connected = process.waitForLine(lambda line: "Connected to" in line, timeout=30)
            process.start(args, directory)
            processes.append(process)
            yield connected
        learnt = [p.waitForResources(2, timeout=30) for p in processes]
        targets = []
        for resource in ("a", "b"):
            client = Client("%s/%s" % (TARGET, resource), "pw", "127.0.0.1", server.c2sPort,
                            onRequest=heldFor(hold, reactor))
            clients.append((yield client.connect()))
            targets.append(client)
        yield defer.gatherResults(learnt)
        requester = Client("req@localhost/load", "pw", "127.0.0.1", server.c2sPort)
        clients.append((yield requester.connect()))
        for n in range(10):
            reply = yield requester.request(PROXY).addTimeout(20, reactor)
            assert reply["type"] == "result", reply.toXml()

        def record(iq):
            replies.append((now(reactor), iq.getAttribute("id"), condition(iq)))

        requester.xmlstream.addObserver("/iq[@type='result']", record)
        requester.xmlstream.addObserver("/iq[@type='error']", record)

        ctx = Context(processes)
        sent = {}
        start = now(reactor)

        def send(i):
            stanzaID = "%s-%d" % (name, i)
            sent[stanzaID] = now(reactor)
            iq = requestFor(PROXY, kind="set" if i % 4 == 3 else "get", stanzaID=stanzaID)
            requester.send(iq)

        calls = [reactor.callLater(i * span / requests, send, i) for i in range(requests)]
        recovered = yield fault(ctx, start)
        # Serving resumed: the first result to a request sent once the fault
        # ended (the load's, or probes sent every 0.25 s from then on).
        probes = [0]

        def resumed():
            for t, i, c in sorted(replies):
                if c == "result" and sent.get(i, probeSent.get(i, -1)) >= recovered:
                    return t
            return None

        probeSent = {}

        @defer.inlineCallbacks
        def probe():
            deadline = now(reactor) + 60
            while resumed() is None and now(reactor) < deadline:
                probes[0] += 1
                stanzaID = "%s-probe-%d" % (name, probes[0])
                probeSent[stanzaID] = now(reactor)
                requester.send(requestFor(PROXY, stanzaID=stanzaID))
                yield sleep(reactor, 0.25)

        probing = probe()
        yield waitUntil(reactor, lambda: len(sent) == requests, span + 5)
        answered = lambda: {i for _, i, _ in replies}  # noqa: E731
        yield waitUntil(reactor, lambda: set(sent) <= answered(), margin)
        # Late duplicates come within a hold or a request timeout.
        yield sleep(reactor, hold + 3)
        yield probing
        resumedAt = resumed()

        answers = Counter(i for _, i, _ in replies if i in sent)
        conditions = Counter(c for _, i, c in replies if i in sent)
        reached = {iq["id"] for svc in targets for iq in svc.requests if iq["id"] in sent}
        results = {i for _, i, c in replies if c == "result"}
        never = sorted(set(sent) - set(answers), key=lambda s: int(s.rsplit("-", 1)[1]))
        twice = sorted((i for i, n in answers.items() if n > 1), key=lambda s: int(s.rsplit("-", 1)[1]))
        reachedNoResult = sorted(reached - results, key=lambda s: int(s.rsplit("-", 1)[1]))
        figures = {
            "sent": len(sent),
            "answers": sum(answers.values()),
            "answered more than once": len(twice),
            "never answered": len(never),
            "by condition": dict(conditions),
            "reached the target": len(reached),
            "reached the target, no result": len(reachedNoResult),
            "resumed after (s)": None if resumedAt is None else round(resumedAt - recovered, 2),
            "last answer at (s)": round(max([t for t, i, _ in replies if i in sent] or [start]) - start, 2),
            "probes sent": probes[0],
        }
        print("== %s" % (name,))
        for key, value in figures.items():
            print("   %-32s %s" % (key, value))
        if twice:
            print("   answered more than once: %s" % (" ".join(twice[:20]),))
        if never:
            print("   never answered: %s" % (" ".join(never[:40]),))
        if reachedNoResult:
            print("   reached the target, no result: %s" % (" ".join(reachedNoResult[:40]),))
            for t, i, c in replies:
                if i in reachedNoResult[:10]:
                    print("     %s -> %s at %.2f s" % (i, c, t - start))
        for c in sorted(conditions):
            times = [t - start for t, i, k in replies if i in sent and k == c]
            print("   %-32s first at %.2f s, last at %.2f s after the load began"
                  % (c, min(times), max(times)))
        for note in ctx.notes:
            print("   %s" % (note,))
        sys.stdout.flush()
        for c in calls:
            if c.active():
                c.cancel()
        return figures
    finally:
        for client in clients:
            try:
                yield client.disconnect().addTimeout(5, reactor)
            except Exception:
                pass
        for process in processes:
            yield endProcess(reactor, process)


@defer.inlineCallbacks
def redisKill(reactor, server):
    redis = ThrowawayRedis()
    yield redis.start()

    @defer.inlineCallbacks
    def fault(ctx, start):
        yield sleep(reactor, 1.0)
        os.kill(redis.pid, signal.SIGKILL)
        yield redis._exit.ended
        yield sleep(reactor, 1.5)
        yield redis.start()
        ctx.notes.append("Redis killed at 1.0 s, back on port %d at %.2f s"
                         % (redis.port, now(reactor) - start))
        return now(reactor)

    try:
        return (yield scenario(reactor, server, "redis-kill", fault, redis.url))
    finally:
        yield endRedis(redis)


@defer.inlineCallbacks
def redisPause(reactor, server):
    redis = ThrowawayRedis()
    yield redis.start()

    @defer.inlineCallbacks
    def fault(ctx, start):
        yield sleep(reactor, 0.5)
        os.kill(redis.pid, signal.SIGSTOP)
        yield sleep(reactor, 4.0)
        os.kill(redis.pid, signal.SIGCONT)
        ctx.notes.append("Redis stopped at 0.5 s, continued at %.2f s" % (now(reactor) - start,))
        return now(reactor)

    try:
        return (yield scenario(reactor, server, "redis-pause", fault, redis.url,
                               span=6.0, requests=300))
    finally:
        yield endRedis(redis)


@defer.inlineCallbacks
def processPause(reactor, server):
    redis = ThrowawayRedis()
    yield redis.start()

    @defer.inlineCallbacks
    def fault(ctx, start):
        yield sleep(reactor, 0.5)
        os.kill(ctx.processes[0].pid, signal.SIGSTOP)
        yield sleep(reactor, 6.0)
        os.kill(ctx.processes[0].pid, signal.SIGCONT)
        ctx.notes.append("process 0 stopped at 0.5 s, continued at %.2f s"
                         % (now(reactor) - start,))
        return now(reactor)

    try:
        return (yield scenario(reactor, server, "process-pause", fault, redis.url,
                               options=["--timeout", "15"], span=8.0, requests=400,
                               margin=30.0))
    finally:
        yield endRedis(redis)


@defer.inlineCallbacks
def termRedisAway(reactor, server):
    redis = ThrowawayRedis()
    yield redis.start()
    grace = 5.0

    @defer.inlineCallbacks
    def fault(ctx, start):
        process = ctx.processes[0]
        yield sleep(reactor, 1.0)
        os.kill(redis.pid, signal.SIGSTOP)
        yield sleep(reactor, 0.3)
        termAt = now(reactor)
        os.kill(process.pid, signal.SIGTERM)
        ended = yield waitUntil(reactor, lambda: process.ended.called, grace + 25)
        took = now(reactor) - termAt
        ctx.notes.append(
            "Redis stopped at 1.0 s; SIGTERM to process 0 at 1.3 s; it %s %.2f s later "
            "(--grace %g)" % ("ended" if ended else "had NOT ended", took, grace)
        )
        os.kill(redis.pid, signal.SIGCONT)
        ctx.notes.append("Redis continued at %.2f s" % (now(reactor) - start,))
        return now(reactor)

    try:
        return (yield scenario(reactor, server, "term-redis-away", fault, redis.url,
                               options=["--grace", str(grace)], hold=2.0, requests=100,
                               span=2.0, margin=40.0))
    finally:
        yield endRedis(redis)


@defer.inlineCallbacks
def sentinelFailover(reactor, server):
    master = ThrowawayRedis()
    yield master.start()
    replica = ThrowawayRedis(replicaOf=("127.0.0.1", master.port))
    sentinel = ThrowawaySentinel(("127.0.0.1", master.port))
    try:
        yield replica.start()
        synced = lambda out: "master_link_status:up" in out  # noqa: E731
        for _ in range(200):
            if synced((yield redisCli(replica.port, "INFO", "replication"))):
                break
            yield sleep(reactor, 0.1)
        yield sentinel.start()
        for _ in range(300):
            out = yield redisCli(sentinel.port, "SENTINEL", "replicas", sentinel.service)
            if str(replica.port) in out:
                break
            yield sleep(reactor, 0.1)
        url = "redis+sentinel://127.0.0.1:%d/%s/0" % (sentinel.port, sentinel.service)

        @defer.inlineCallbacks
        def fault(ctx, start):
            yield sleep(reactor, 1.0)
            killedAt = now(reactor)
            os.kill(master.pid, signal.SIGKILL)
            for _ in range(300):
                out = yield redisCli(sentinel.port, "SENTINEL", "get-master-addr-by-name",
                                     sentinel.service)
                if str(replica.port) in out:
                    break
                yield sleep(reactor, 0.1)
            ctx.notes.append(
                "master (port %d) killed at 1.0 s; Sentinel names the replica (port %d) "
                "%.2f s later" % (master.port, replica.port, now(reactor) - killedAt)
            )
            # Serving resumed is measured from the kill.
            return killedAt

        return (yield scenario(reactor, server, "sentinel-failover", fault, url))
    finally:
        yield endRedis(sentinel)
        yield endRedis(replica)
        yield endRedis(master)


SCENARIOS = [
    ("redis-kill", redisKill),
    ("redis-pause", redisPause),
    ("process-pause", processPause),
    ("term-redis-away", termRedisAway),
    ("sentinel-failover", sentinelFailover),
]


@defer.inlineCallbacks
def main(reactor, argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    server = ThrowawayEjabberd({PROXY: SECRET})
    server.register("svc", "pw")
    server.register("req", "pw")
    try:
        yield server.start()
        for name, run in SCENARIOS:
            if args.only and name not in args.only:
                continue
            try:
                yield run(reactor, server)
            except Exception as e:
                print("== %s: FAILED TO RUN: %r" % (name, e))
                sys.stdout.flush()
    finally:
        yield server.stop()
        server.cleanUp()


if __name__ == "__main__":
    task.react(main, [sys.argv[1:]])
