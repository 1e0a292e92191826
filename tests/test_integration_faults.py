"""
The faults of issue 22 under load, end to end (the scenarios of
bench/faults.py, run by L{clientproxy.testing.faults}): two or three
`twistd clientproxy` processes on one component of a throwaway ejabberd
(which spreads the component's stanzas over all their connections), their
state in a fresh throwaway Redis (C{--redis}); a requester sends 100-200
requests over 2-4 s, the target's two resources answer each after a short
hold, and one fault strikes meanwhile: Redis killed and restarted, Redis
paused, a process paused, SIGTERM to a process while Redis is away, a
Sentinel failover.

What must hold after each (the issue's "Done when"): every request gets
exactly one answer (none answered twice, none never answered); where the
fault loses no process's work (a process paused, Redis killed), every
request that reached the target is answered with its result; serving
resumes within a few seconds after the fault ends; a process told to end
(SIGTERM) ends within its grace period and a few seconds. The request
timeout is shortened (C{--timeout}) so that a request never answered is
found soon; answers are waited for until every request has one, and no
longer than the timeout and 5 s after the load; then a hold and 2 s more
for late duplicates. A failure names the requests and their answers.

Everything listens on 127.0.0.1, every wait is bounded, and every process
a test starts (continued first if stopped) is ended at its clean-up, also
when it fails or times out.
"""

from twisted.internet import defer, reactor

from clientproxy.testing import faults
from clientproxy.testing.ejabberd import ThrowawayEjabberd
from tests.integration import DOMAIN, PASSWORD, ServerTestCase

#: The request timeout of the processes (--timeout) where the scenario
#: allows one shorter than the default 30 s.
TIMEOUT = 8.0
#: Seconds after the end of a fault within which serving must resume.
RESUMED_WITHIN = 5.0


def oneAnswerEach(run):
    """
    Every request of C{run} got exactly one answer.
    """
    problems = []
    if run.twice:
        problems.append(
            "%d of %d requests answered more than once: %s"
            % (len(run.twice), len(run.sent), run.answersTo(run.twice))
        )
    if run.never:
        problems.append(
            "%d of %d requests never answered: %s"
            % (len(run.never), len(run.sent), " ".join(run.never))
        )
    return problems


def reachedGotResult(run):
    """
    Every request of C{run} that reached the target was answered with its
    result, and only with it.
    """
    wrong = set(run.reachedNoResult)
    wrong.update(i for _, i, c in run.replies if i in run.reached and c != "result")
    if not wrong:
        return []
    return [
        "%d of the %d requests that reached the target were not answered with their result "
        "(only): %s" % (len(wrong), len(run.reached), run.answersTo(wrong))
    ]


def resumed(run, within=RESUMED_WITHIN, since="the end of the fault"):
    """
    A request sent after the fault ended got its result within C{within}
    seconds of it.
    """
    if run.resumedAfter is None:
        return ["serving did not resume after %s" % (since,)]
    if run.resumedAfter > within:
        return [
            "serving resumed %.2f s after %s, not within %g s" % (run.resumedAfter, since, within)
        ]
    return []


class FaultsOnEjabberd(ServerTestCase):
    """
    Each test: a fresh ejabberd (L{ServerTestCase}), fresh Redis servers and
    fresh processes, one fault under load, and what must hold after it.
    """

    serverClass = ThrowawayEjabberd
    components = {faults.PROXY: faults.SECRET}
    timeout = 150

    def runScenario(self, name, **options):
        """
        Run the scenario C{name} of L{faults.SCENARIOS} with C{options}, the
        processes' request timeout L{TIMEOUT} unless given, answers waited
        for no longer than 5 s past it after the load, and alice as the
        requester.
        """
        options.setdefault("timeout", TIMEOUT)
        options.setdefault("margin", options["timeout"] + 5.0)
        options.setdefault("resumeWithin", 20.0)
        return faults.SCENARIOS[name](
            reactor,
            self.server,
            cleanup=self.addCleanup,
            requester="alice@%s/load" % (DOMAIN,),
            password=PASSWORD,
            **options,
        )

    def assertHeld(self, run, *problems):
        """
        Fail, naming every problem found in C{run} (each check gives a list
        of them), with the run's figures.
        """
        problems = [p for found in problems for p in found]
        if problems:
            self.fail(
                "%s: %s\n%s"
                % (run.name, "\n".join("- " + p for p in problems), "\n".join(run.report()))
            )

    @defer.inlineCallbacks
    def test_redisKilled(self):
        """
        Redis is SIGKILLed 1 s into the load and started again on its port
        1.5 s later (empty: nothing is saved to disk), with three processes.
        Requests that reached the target just before the kill are answered
        by the target while Redis is down: their results must still reach
        the requester, once, and no request may be left without an answer.
        Serving resumes once Redis is back.
        """
        run = yield self.runScenario("redis-kill", count=3, requests=200, span=4.0)
        self.assertHeld(run, oneAnswerEach(run), reachedGotResult(run), resumed(run))

    @defer.inlineCallbacks
    def test_redisPaused(self):
        """
        Redis is SIGSTOPped 0.5 s into the load for 4 s, longer than a
        heartbeat: the processes refuse what they cannot record meanwhile,
        but every request is answered exactly once, and serving resumes
        once Redis is continued.
        """
        run = yield self.runScenario("redis-pause", requests=200, span=5.0)
        self.assertHeld(run, oneAnswerEach(run), resumed(run))

    @defer.inlineCallbacks
    def test_processPaused(self):
        """
        One of two processes is SIGSTOPped 0.5 s into the load for 6 s, with
        C{--timeout 15} (longer than the pause). The other serves meanwhile;
        the paused one, continued, must not answer a second time what the
        other took over, and every request that reached the target gets
        its result.
        """
        run = yield self.runScenario("process-pause", timeout=15.0, requests=200, span=4.0)
        self.assertHeld(run, oneAnswerEach(run), reachedGotResult(run), resumed(run))

    @defer.inlineCallbacks
    def test_terminatedWhileRedisAway(self):
        """
        Redis is SIGSTOPped 1 s into the load (requests held 2 s by the
        target are in flight), and 0.3 s later one process gets SIGTERM
        (C{--grace 5}); Redis is continued once it ended. The process must
        end within its grace and 5 s although it cannot reach Redis, and
        the requests must be answered exactly once each, those it held by
        it or by the other process, never by both and never by neither.
        Serving by the other resumes once Redis is back. Redis is away some
        9 s, so the request timeout is 15 s here: a shorter one would
        answer the requests held meanwhile C{remote-server-timeout}.
        """
        grace = 5.0
        run = yield self.runScenario(
            "term-redis-away", grace=grace, timeout=15.0, hold=2.0, requests=100, span=2.0
        )
        ended = []
        if not run.facts["ended"] or run.facts["ended after"] > grace + 5:
            ended.append(
                "the process did not end within --grace %g and 5 s of SIGTERM (%s %.2f s)"
                % (
                    grace,
                    "ended after" if run.facts["ended"] else "still running after",
                    run.facts["ended after"],
                )
            )
        self.assertHeld(run, ended, oneAnswerEach(run), resumed(run, since="Redis was continued"))

    @defer.inlineCallbacks
    def test_sentinelFailover(self):
        """
        Through a Sentinel watching a master and its replica: the master is
        SIGKILLed 1 s into the load, and the Sentinel promotes the replica.
        The processes follow it: every request is answered exactly once,
        and serving resumes within 5 s of the promotion (the end of the
        fault; the Sentinel takes a second or two to call the master down).
        """
        run = yield self.runScenario("sentinel-failover", requests=200, span=4.0)
        promoted = [] if run.facts["promoted"] else ["the Sentinel did not promote the replica"]
        took = run.facts["promoted after"]
        self.assertHeld(
            run,
            promoted,
            oneAnswerEach(run),
            resumed(
                run,
                within=took + RESUMED_WITHIN,
                since="the kill (the promotion %.2f s after it)" % (took,),
            ),
        )
