"""
Faults under load (issue 22 item 7), for bench/faults.py (by hand, with
figures) and tests/test_integration_faults.py (in CI, with assertions):
several `twistd clientproxy` processes on one component of a throwaway
ejabberd, sharing a throwaway Redis (C{--redis}), while one requester sends
requests paced over a few seconds and the target's two resources answer
each after a short delay (C{hold}); a fault acts meanwhile.

L{scenario} runs the load and one fault and returns a L{Run}: what was
sent, every answer, what reached the target, when serving resumed after
the fault. The faults (L{killRedis}, L{pauseRedis}, L{pauseProcess},
L{termWhileRedisAway}, L{failover}) are made for the Redis or processes
they act on; L{SCENARIOS} are the five of the issue, each on fresh Redis
servers.

Every wait is bounded; everything listens on 127.0.0.1 only; every process
started is ended at the end of a run (a stopped one continued first), and
also given to C{cleanup} (a test's C{addCleanup}) where one is given, so
that it is ended even when a test is timed out in the middle.
"""

import os
import signal
from collections import Counter

from twisted.internet import defer, task, utils

from clientproxy.testing.client import NS_STANZAS, Client, heldFor, requestFor
from clientproxy.testing.redis import ThrowawayRedis, ThrowawaySentinel
from clientproxy.testing.twistd import ComponentProcess

PROXY = "proxy.localhost"
TARGET = "svc@localhost"
SECRET = "bench-secret"
PASSWORD = "pw"
#: The account that sends the load (the bench registers it).
REQUESTER = "req@localhost/load"


def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)


def now(reactor):
    return reactor.seconds()


@defer.inlineCallbacks
def waitUntil(reactor, predicate, seconds):
    """
    Wait until C{predicate()} (a value, or a Deferred of one) is true, for
    at most C{seconds}.

    @return: a Deferred that fires with whether it became true in time.
    """
    deadline = now(reactor) + seconds
    while not (yield defer.maybeDeferred(predicate)):
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


def signalled(pid, number):
    """
    Send signal C{number} to C{pid}, if it still runs.
    """
    if pid is None:
        return
    try:
        os.kill(pid, number)
    except OSError:
        pass


@defer.inlineCallbacks
def endProcess(reactor, process, seconds=15):
    """
    Continue C{process} if stopped, SIGTERM it, and SIGKILL it if it has
    not ended within C{seconds}.
    """
    if process.pid is None or process.ended.called:
        return
    signalled(process.pid, signal.SIGCONT)
    process.stop()
    if not (yield waitUntil(reactor, lambda: process.ended.called, seconds)):
        signalled(process.pid, signal.SIGKILL)
        yield waitUntil(reactor, lambda: process.ended.called, 5)


@defer.inlineCallbacks
def endRedis(redis):
    """
    Continue C{redis} (a L{ThrowawayRedis}) if stopped, stop it, and
    remove its directory.
    """
    signalled(redis.pid, signal.SIGCONT)
    yield redis.stop()
    redis.cleanUp()


@defer.inlineCallbacks
def startRedis(redis, cleanup=None):
    """
    Start C{redis}; it is ended by L{endRedis} at C{cleanup} if given.
    """
    if cleanup is not None:
        cleanup(endRedis, redis)
    yield redis.start()
    return redis


def condition(reply):
    """
    C{"result"}, or the stanza error condition of the IQ C{reply}.
    """
    if reply["type"] == "result":
        return "result"
    for error in reply.elements():
        if error.name == "error":
            for child in error.elements():
                if child.uri == NS_STANZAS and child.name != "text":
                    return child.name
    return "error (no condition)"


def byNumber(ids):
    """
    Request ids (C{NAME-N}) in the order they were sent.
    """
    return sorted(ids, key=lambda s: int(s.rsplit("-", 1)[1]))


class Context:
    """
    What a fault acts on (the processes), and the notes and facts it leaves
    for the report and the tests.
    """

    def __init__(self, processes):
        self.processes = processes
        self.notes = []
        self.facts = {}


class Run:
    """
    What one scenario gave.

    @ivar sent: the time each request was sent, by id.
    @ivar replies: C{(time, id, condition)} of every answer received, the
        probes' included.
    @ivar reached: the ids of the requests that reached the target.
    @ivar start: when the load began.
    @ivar recovered: when the fault ended.
    @ivar resumedAt: when the first result to a request sent after the
        fault ended came, or C{None}.
    @ivar notes: what the fault said it did.
    @ivar facts: what the fault measured, by name.
    """

    def __init__(self, name, sent, replies, reached, start, recovered, resumedAt, probes, ctx):
        self.name = name
        self.sent = sent
        self.replies = replies
        self.reached = reached
        self.start = start
        self.recovered = recovered
        self.resumedAt = resumedAt
        self.probes = probes
        self.notes = ctx.notes
        self.facts = ctx.facts
        self.answers = Counter(i for _, i, _ in replies if i in sent)
        self.conditions = Counter(c for _, i, c in replies if i in sent)
        results = {i for _, i, c in replies if c == "result"}
        #: Requests never answered, in order.
        self.never = byNumber(set(sent) - set(self.answers))
        #: Requests answered more than once, in order.
        self.twice = byNumber(i for i, n in self.answers.items() if n > 1)
        #: Requests that reached the target and got no result, in order.
        self.reachedNoResult = byNumber(reached - results)

    @property
    def resumedAfter(self):
        """
        Seconds from the end of the fault until serving resumed, or C{None}.
        """
        return None if self.resumedAt is None else self.resumedAt - self.recovered

    def answersTo(self, ids):
        """
        C{"ID (CONDITION at T s, ...)"} for each of the requests C{ids}, in
        order, with its answers (none: C{"ID (no answer)"}), times counted
        from the start of the load.
        """
        return ", ".join(
            "%s (%s)"
            % (
                i,
                ", ".join(
                    "%s at %.2f s" % (c, t - self.start)
                    for t, j, c in sorted(self.replies)
                    if j == i
                )
                or "no answer",
            )
            for i in byNumber(set(ids))
        )

    def figures(self):
        last = max([t for t, i, _ in self.replies if i in self.sent] or [self.start])
        resumed = self.resumedAfter
        return {
            "sent": len(self.sent),
            "answers": sum(self.answers.values()),
            "answered more than once": len(self.twice),
            "never answered": len(self.never),
            "by condition": dict(self.conditions),
            "reached the target": len(self.reached),
            "reached the target, no result": len(self.reachedNoResult),
            "resumed after (s)": None if resumed is None else round(resumed, 2),
            "last answer at (s)": round(last - self.start, 2),
            "probes sent": self.probes,
        }

    def report(self):
        """
        The lines bench/faults.py prints, the figures first.
        """
        lines = ["== %s" % (self.name,)]
        for key, value in self.figures().items():
            lines.append("   %-32s %s" % (key, value))
        if self.twice:
            lines.append("   answered more than once: %s" % (" ".join(self.twice[:20]),))
        if self.never:
            lines.append("   never answered: %s" % (" ".join(self.never[:40]),))
        if self.reachedNoResult:
            lines.append(
                "   reached the target, no result: %s" % (" ".join(self.reachedNoResult[:40]),)
            )
            for t, i, c in self.replies:
                if i in self.reachedNoResult[:10]:
                    lines.append("     %s -> %s at %.2f s" % (i, c, t - self.start))
        for c in sorted(self.conditions):
            times = [t - self.start for t, i, k in self.replies if i in self.sent and k == c]
            lines.append(
                "   %-32s first at %.2f s, last at %.2f s after the load began"
                % (c, min(times), max(times))
            )
        for note in self.notes:
            lines.append("   %s" % (note,))
        return lines


@defer.inlineCallbacks
def scenario(
    reactor,
    server,
    name,
    fault,
    redisUrl,
    count=2,
    options=(),
    hold=0.3,
    requests=200,
    span=4.0,
    timeout=None,
    margin=None,
    late=None,
    resumeWithin=60.0,
    requester=REQUESTER,
    password=PASSWORD,
    cleanup=None,
):
    """
    Run one fault under load: C{count} processes for L{PROXY} on C{server}
    (a started L{ThrowawayEjabberd} that knows L{PROXY} with L{SECRET} and
    the accounts of L{TARGET} and C{requester}, with C{password}), with
    C{--redis redisUrl}, C{--timeout timeout} if given, and C{options}; the
    target's resources C{a} and C{b} answer each request C{hold} seconds
    after it came; C{requests} requests sent evenly over C{span} seconds,
    every fourth a C{set}. C{fault(ctx, start)} starts with the load and
    returns (a Deferred of) the time the fault ended; from then on, probes
    are sent every 0.25 s until one result comes to a request sent after
    it, for at most C{resumeWithin} seconds.

    The answers are waited for until every request has one, for at most
    C{margin} seconds after the load was sent (past the request timeout:
    C{timeout}, 30 s by default, plus 10 s), then C{late} seconds more for
    late duplicates (C{hold} plus 2 s by default).

    @param cleanup: a test's C{addCleanup}, or C{None}: each process is
        given to it as it starts, to be ended even if the run is cut short.
    @return: a Deferred that fires with a L{Run}.
    """
    options = list(options)
    if timeout is not None:
        options += ["--timeout", "%g" % (timeout,)]
    if margin is None:
        margin = (30.0 if timeout is None else timeout) + 10.0
    if late is None:
        late = hold + 2.0
    processes, clients = [], []
    replies = []  # (time, id, condition)
    calls = []
    try:
        for n in range(count):
            process = ComponentProcess(reactor=reactor)
            if cleanup is not None:
                cleanup(endProcess, reactor, process)
            directory = os.path.join(server.directory, "%s-%d" % (name, n))
            os.mkdir(directory)
            args = ["--jid", PROXY, "--target", TARGET, "--secret", SECRET]
            args += ["--port", str(server.componentPort), "--data-dir", directory]
            args += ["--redis", redisUrl] + options
            connected = process.waitForLine(lambda line: "Connected to" in line, timeout=30)
            process.start(args, directory)
            processes.append(process)
            yield connected
        learnt = [p.waitForResources(2, timeout=30) for p in processes]
        targets = []
        for resource in ("a", "b"):
            client = Client(
                "%s/%s" % (TARGET, resource),
                password,
                "127.0.0.1",
                server.c2sPort,
                onRequest=heldFor(hold, reactor),
                reactor=reactor,
            )
            clients.append(client)
            yield client.connect().addTimeout(20, reactor)
            targets.append(client)
        yield defer.gatherResults(learnt)
        loader = Client(requester, password, "127.0.0.1", server.c2sPort, reactor=reactor)
        clients.append(loader)
        yield loader.connect().addTimeout(20, reactor)
        # Every process knows both resources once requests to each work
        # (sent at once: each is held by the target).
        warmUp = [loader.request(PROXY).addTimeout(20, reactor) for n in range(10)]
        for reply in (yield defer.gatherResults(warmUp, consumeErrors=True)):
            if reply["type"] != "result":
                raise RuntimeError("a warm-up request was answered %s" % (reply.toXml(),))

        def record(iq):
            replies.append((now(reactor), iq.getAttribute("id"), condition(iq)))

        loader.xmlstream.addObserver("/iq[@type='result']", record)
        loader.xmlstream.addObserver("/iq[@type='error']", record)

        ctx = Context(processes)
        sent = {}
        probeSent = {}
        start = now(reactor)

        def send(i):
            stanzaID = "%s-%d" % (name, i)
            sent[stanzaID] = now(reactor)
            iq = requestFor(PROXY, kind="set" if i % 4 == 3 else "get", stanzaID=stanzaID)
            loader.send(iq)

        calls += [reactor.callLater(i * span / requests, send, i) for i in range(requests)]
        recovered = yield fault(ctx, start)

        # Serving resumed: the first result to a request sent once the fault
        # ended (the load's, or probes sent every 0.25 s from then on).
        def resumed():
            for t, i, c in sorted(replies):
                if c == "result" and sent.get(i, probeSent.get(i, -1)) >= recovered:
                    return t
            return None

        @defer.inlineCallbacks
        def probe():
            deadline = now(reactor) + resumeWithin
            while resumed() is None and now(reactor) < deadline:
                stanzaID = "%s-probe-%d" % (name, len(probeSent) + 1)
                probeSent[stanzaID] = now(reactor)
                loader.send(requestFor(PROXY, stanzaID=stanzaID))
                yield sleep(reactor, 0.25)

        probing = probe()
        yield waitUntil(reactor, lambda: len(sent) == requests, span + 5)
        answered = lambda: set(sent) <= {i for _, i, _ in replies}  # noqa: E731
        yield waitUntil(
            reactor, answered, max(0, max(sent.values(), default=start) + margin - now(reactor))
        )
        # Late duplicates come within a hold (or, for a request never
        # answered, past the margin anyway).
        yield sleep(reactor, late)
        yield probing
        reached = {iq["id"] for svc in targets for iq in svc.requests if iq["id"] in sent}
        return Run(name, sent, replies, reached, start, recovered, resumed(), len(probeSent), ctx)
    finally:
        for c in calls:
            if c.active():
                c.cancel()
        for client in clients:
            try:
                yield client.disconnect().addTimeout(5, reactor)
            except Exception:
                pass
        for process in processes:
            yield endProcess(reactor, process)


# The faults: each returns fault(ctx, start), which acts once the load has
# begun and gives the time the fault ended.


def killRedis(reactor, redis, at=1.0, down=1.5):
    """
    Redis SIGKILLed C{at} seconds into the load, started again on its port
    C{down} seconds after it died.
    """

    @defer.inlineCallbacks
    def fault(ctx, start):
        yield sleep(reactor, at)
        os.kill(redis.pid, signal.SIGKILL)
        # Once it has died (stop() only waits for that, and is bounded).
        yield redis.stop()
        yield sleep(reactor, down)
        yield redis.start()
        ctx.notes.append(
            "Redis killed at %g s, back on port %d at %.2f s"
            % (at, redis.port, now(reactor) - start)
        )
        return now(reactor)

    return fault


def pauseRedis(reactor, redis, at=0.5, seconds=4.0):
    """
    Redis SIGSTOPped C{at} seconds into the load, continued C{seconds}
    later.
    """

    @defer.inlineCallbacks
    def fault(ctx, start):
        yield sleep(reactor, at)
        os.kill(redis.pid, signal.SIGSTOP)
        yield sleep(reactor, seconds)
        os.kill(redis.pid, signal.SIGCONT)
        ctx.notes.append("Redis stopped at %g s, continued at %.2f s" % (at, now(reactor) - start))
        return now(reactor)

    return fault


def pauseProcess(reactor, at=0.5, seconds=6.0, index=0):
    """
    Process C{index} SIGSTOPped C{at} seconds into the load, continued
    C{seconds} later.
    """

    @defer.inlineCallbacks
    def fault(ctx, start):
        pid = ctx.processes[index].pid
        yield sleep(reactor, at)
        os.kill(pid, signal.SIGSTOP)
        yield sleep(reactor, seconds)
        os.kill(pid, signal.SIGCONT)
        ctx.notes.append(
            "process %d stopped at %g s, continued at %.2f s" % (index, at, now(reactor) - start)
        )
        return now(reactor)

    return fault


def termWhileRedisAway(reactor, redis, grace, at=1.0, after=0.3, within=30.0):
    """
    Redis SIGSTOPped C{at} seconds into the load; SIGTERM to process 0
    C{after} seconds later (it runs with C{--grace grace}); Redis continued
    once the process ended, or C{within} seconds after the SIGTERM. Its
    facts: C{"ended"} (whether the process ended) and C{"ended after"}
    (seconds from the SIGTERM).
    """

    @defer.inlineCallbacks
    def fault(ctx, start):
        process = ctx.processes[0]
        yield sleep(reactor, at)
        os.kill(redis.pid, signal.SIGSTOP)
        yield sleep(reactor, after)
        termAt = now(reactor)
        os.kill(process.pid, signal.SIGTERM)
        ended = yield waitUntil(reactor, lambda: process.ended.called, within)
        took = now(reactor) - termAt
        ctx.facts.update({"ended": ended, "ended after": took})
        ctx.notes.append(
            "Redis stopped at %g s; SIGTERM to process 0 at %g s; it %s %.2f s later "
            "(--grace %g)" % (at, at + after, "ended" if ended else "had NOT ended", took, grace)
        )
        os.kill(redis.pid, signal.SIGCONT)
        ctx.notes.append("Redis continued at %.2f s" % (now(reactor) - start,))
        return now(reactor)

    return fault


@defer.inlineCallbacks
def startReplicated(reactor, master, replica, sentinel, cleanup=None, within=30.0):
    """
    Start C{master}, its C{replica} and the C{sentinel} watching it, and
    wait until the replica is in sync and the Sentinel knows it.

    @return: a Deferred that fires with the C{--redis} URL through the
        Sentinel.
    """
    for redis in (master, replica):
        yield startRedis(redis, cleanup)

    def synced():
        d = redisCli(replica.port, "INFO", "replication")
        return d.addCallback(lambda out: "master_link_status:up" in out)

    if not (yield waitUntil(reactor, synced, within)):
        raise RuntimeError("the replica was not in sync within %g s" % (within,))
    yield startRedis(sentinel, cleanup)

    def known():
        d = redisCli(sentinel.port, "SENTINEL", "replicas", sentinel.service)
        return d.addCallback(lambda out: str(replica.port) in out)

    if not (yield waitUntil(reactor, known, within)):
        raise RuntimeError("the Sentinel did not know the replica within %g s" % (within,))
    return "redis+sentinel://127.0.0.1:%d/%s/0" % (sentinel.port, sentinel.service)


def failover(reactor, master, replica, sentinel, at=1.0, within=30.0):
    """
    The master SIGKILLed C{at} seconds into the load; the fault ends at the
    kill (serving resumed is measured from it), once the Sentinel names the
    replica master (for at most C{within} seconds). Its facts: C{"promoted"}
    (whether it did) and C{"promoted after"} (seconds from the kill).
    """

    @defer.inlineCallbacks
    def fault(ctx, start):
        yield sleep(reactor, at)
        killedAt = now(reactor)
        os.kill(master.pid, signal.SIGKILL)

        def promoted():
            d = redisCli(sentinel.port, "SENTINEL", "get-master-addr-by-name", sentinel.service)
            return d.addCallback(lambda out: str(replica.port) in out)

        done = yield waitUntil(reactor, promoted, within)
        took = now(reactor) - killedAt
        ctx.facts.update({"promoted": done, "promoted after": took})
        ctx.notes.append(
            "master (port %d) killed at %g s; Sentinel %s the replica (port %d) "
            "%.2f s later"
            % (master.port, at, "names" if done else "did NOT name", replica.port, took)
        )
        return killedAt

    return fault


# The scenarios of the issue, each on fresh Redis servers; options (for
# scenario) override the bench's defaults.


@defer.inlineCallbacks
def onOneRedis(reactor, server, name, makeFault, cleanup, options):
    """
    Run L{scenario} C{name} with C{options} on a fresh L{ThrowawayRedis}, the
    fault C{makeFault(redis)}; the Redis is ended after it.
    """
    redis = yield startRedis(ThrowawayRedis(reactor), cleanup)
    try:
        fault = makeFault(redis)
        return (yield scenario(reactor, server, name, fault, redis.url, cleanup=cleanup, **options))
    finally:
        yield endRedis(redis)


def redisKill(reactor, server, cleanup=None, at=1.0, down=1.5, **options):
    return onOneRedis(
        reactor,
        server,
        "redis-kill",
        lambda redis: killRedis(reactor, redis, at, down),
        cleanup,
        options,
    )


def redisPause(reactor, server, cleanup=None, at=0.5, seconds=4.0, **options):
    options = dict({"span": 6.0, "requests": 300}, **options)
    return onOneRedis(
        reactor,
        server,
        "redis-pause",
        lambda redis: pauseRedis(reactor, redis, at, seconds),
        cleanup,
        options,
    )


def processPause(reactor, server, cleanup=None, at=0.5, seconds=6.0, **options):
    options = dict({"timeout": 15, "span": 8.0, "requests": 400, "margin": 30.0}, **options)
    return onOneRedis(
        reactor,
        server,
        "process-pause",
        lambda redis: pauseProcess(reactor, at, seconds),
        cleanup,
        options,
    )


def termRedisAway(reactor, server, cleanup=None, grace=5.0, **options):
    options = dict({"hold": 2.0, "requests": 100, "span": 2.0}, **options)
    options["options"] = list(options.get("options", ())) + ["--grace", "%g" % (grace,)]
    return onOneRedis(
        reactor,
        server,
        "term-redis-away",
        lambda redis: termWhileRedisAway(reactor, redis, grace),
        cleanup,
        options,
    )


@defer.inlineCallbacks
def sentinelFailover(reactor, server, cleanup=None, at=1.0, **options):
    master = ThrowawayRedis(reactor)
    replica = ThrowawayRedis(reactor, replicaOf=("127.0.0.1", master.port))
    sentinel = ThrowawaySentinel(("127.0.0.1", master.port), reactor=reactor)
    try:
        url = yield startReplicated(reactor, master, replica, sentinel, cleanup)
        fault = failover(reactor, master, replica, sentinel, at)
        return (
            yield scenario(
                reactor, server, "sentinel-failover", fault, url, cleanup=cleanup, **options
            )
        )
    finally:
        for redis in (sentinel, replica, master):
            yield endRedis(redis)


#: The scenarios by name, in order: each runs as C{run(reactor, server,
#: cleanup=None, **options)} and gives a L{Run}.
SCENARIOS = {
    "redis-kill": redisKill,
    "redis-pause": redisPause,
    "process-pause": processPause,
    "term-redis-away": termRedisAway,
    "sentinel-failover": sentinelFailover,
}
