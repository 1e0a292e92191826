"""
Contract tests of L{clientproxy.state.interfaces}, in the manner of
idavoll's C{StorageTests}: one suite for each interface, run against the
local implementation and the Redis one (a throwaway Debian redis-server on
a loopback port). What only several processes can show (one process's
fact heard by another, an entry taken by another) is tested for the Redis
implementation alone, and what a process alone does instead for the local
one.
"""

from twisted.internet import defer, reactor, task
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.words.xish import domish
from wokkel.test.helpers import XmlStreamStub
from zope.interface.verify import verifyObject

from clientproxy.ops.stats import Stats
from clientproxy.routing.pending import PendingTable
from clientproxy.routing.resources import ResourceSet
from clientproxy.state.interfaces import (
    HERE,
    WRONG_RESOURCE,
    IFacts,
    IRequestsInFlight,
    IStore,
)
from clientproxy.state.local import LocalFacts, LocalRequests
from clientproxy.state.redis.cluster import Cluster
from clientproxy.state.redis.facts import SharedFacts, factFromText, factText
from clientproxy.state.redis.requests import RECORD, SharedRequests
from clientproxy.state.redis.store import Listener, RedisStore, connect
from clientproxy.state.sqlite import Store
from clientproxy.testing.redis import cutAfterRunning, startRedis
from clientproxy.xmpp.caps import Caps
from tests.helpers import COMPONENT, TARGET, waitFor

REQUESTER = "alice@example.org/abc"
RESOURCE = TARGET + "/a"
OTHER = TARGET + "/b"

#: One fact of every kind.
FACTS = [
    ("available", RESOURCE, "a", 5, None),
    ("available", RESOURCE, "a", -1, Caps("urn:n", "ver=", "sha-1")),
    ("available", RESOURCE, "a", 0, Caps("urn:n", "1.0")),
    ("unavailable", RESOURCE),
    ("subscribed",),
    ("unsubscribed",),
    ("bounced",),
    ("refused", RESOURCE, REQUESTER, ("urn:x", "query", "set")),
    ("refused", RESOURCE, REQUESTER, (b"\x01digest", "", "get")),
    ("served", RESOURCE, ("", "q", "get")),
]


class FactTextTests(unittest.TestCase):
    """
    Facts as the Redis implementation publishes them.
    """

    def test_roundTrip(self):
        """
        Every kind of fact reads back as it was written, caps and digests
        included.
        """
        for fact in FACTS:
            self.assertEqual(factFromText(factText(fact)), fact)

    def test_notAFact(self):
        """
        Text of no known kind, or with fields a kind does not have, is
        refused.
        """
        for text in ("nothing", "subscribed\0extra", "available\0only-a-jid"):
            self.assertRaises(ValueError, factFromText, text)


class Process:
    """
    What one process holds of the state under test: a clock, the target's
    resources, a pending table whose answers are kept in C{answered}.
    """

    def __init__(self):
        self.clock = task.Clock()
        self.resources = ResourceSet()
        self.stats = Stats()
        self.answered = []
        self.table = PendingTable(
            self.clock, 30, lambda entry, outcome: self.answered.append((entry, outcome))
        )
        self.resources.update(RESOURCE, "a", 0)
        self.resources.update(OTHER, "b", 0)

    def add(self, stanzaID="1", resource=RESOURCE):
        request = b"<iq type='get' id='%s' to='%s'/>" % (stanzaID.encode(), resource.encode())
        return self.table.add(
            ("enc", stanzaID), REQUESTER, self.resources.get(resource), request, resendable=True
        )


class RedisProcesses:
    """
    Processes of one component sharing a throwaway Redis: each with its own
    L{Cluster} (not connected to any XMPP server: its heartbeat is not
    running, so Redis counts as reachable).
    """

    @defer.inlineCallbacks
    def startRedis(self):
        self.redis = yield startRedis(self)
        self.clusters = []

    @defer.inlineCallbacks
    def cluster(self, process):
        redis = connect(self.redis.url)
        self.addCleanup(redis.disconnect)
        listeners = []

        def listen(onMessage):
            listener = Listener(self.redis.url, onMessage)
            listeners.append(listener)
            self.addCleanup(listener.disconnect)
            return listener

        cluster = Cluster(
            COMPONENT, TARGET, redis, listen, process.resources, process.stats, process.clock
        )
        yield redis.execute("PING")
        yield waitFor(lambda: listeners[0].subscribed, "subscribed")
        return cluster


class RequestsInFlightTests:
    """
    The contract of L{IRequestsInFlight}, for a process alone: mixed into a
    test case that provides C{requestsFor(process)} (a Deferred).
    """

    timeout = 30

    @defer.inlineCallbacks
    def recorded(self, requests, entry):
        """
        Record C{entry}; fire with C{then}'s refusal once it is called.
        """
        done = defer.Deferred()
        requests.record(entry, lambda entry, refusal: done.callback(refusal))
        return (yield done)

    @defer.inlineCallbacks
    def taken(self, requests, key, sender):
        done = defer.Deferred()
        requests.take(key, sender, done.callback)
        return (yield done)

    @defer.inlineCallbacks
    def test_provides(self):
        """
        The implementation provides the interface.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        self.assertTrue(verifyObject(IRequestsInFlight, requests))

    @defer.inlineCallbacks
    def test_recordedThenSent(self):
        """
        A request recorded may be sent: C{then} is called with no refusal,
        and the entry stays in the table.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        entry = process.add()
        self.assertIsNone((yield self.recorded(requests, entry)))
        self.assertIs(process.table.get(entry.key), entry)

    @defer.inlineCallbacks
    def test_replyTakesItsEntry(self):
        """
        The reply of the resource asked takes the entry; once answered, a
        second reply with the same key finds nothing.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        entry = process.add()
        yield self.recorded(requests, entry)
        taken = yield self.taken(requests, entry.key, RESOURCE)
        self.assertIs(taken, entry)
        process.table.complete(taken, domish.Element((None, "iq")))
        self.assertIsNone((yield self.taken(requests, entry.key, RESOURCE)))
        self.assertEqual(len(process.answered), 1)

    @defer.inlineCallbacks
    def test_replyFromAnotherResource(self):
        """
        A reply from another resource than the one asked takes nothing: the
        entry stays for the right one.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        entry = process.add()
        yield self.recorded(requests, entry)
        self.assertIs((yield self.taken(requests, entry.key, OTHER)), WRONG_RESOURCE)
        self.assertIs((yield self.taken(requests, entry.key, RESOURCE)), entry)

    @defer.inlineCallbacks
    def test_unknownKey(self):
        """
        A reply whose key matches no request, or has no id at all, takes
        nothing.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        self.assertIsNone((yield self.taken(requests, ("enc", "nothing"), RESOURCE)))
        self.assertIsNone((yield self.taken(requests, ("enc", None), RESOURCE)))

    @defer.inlineCallbacks
    def test_claimedByItsOwner(self):
        """
        An entry nobody else answered may be answered by its owner (a
        timeout, its resource gone), and then settles.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        entry = process.add()
        yield self.recorded(requests, entry)
        claimed = defer.Deferred()
        requests.claim(entry, False, claimed.callback)
        self.assertIs((yield claimed), entry)
        yield requests.settled()


class LocalRequestsTests(RequestsInFlightTests, unittest.TestCase):
    """
    L{LocalRequests}: the contract, and a lost connection answered here.
    """

    def requestsFor(self, process):
        return defer.succeed(LocalRequests(process.table))

    def test_connectionLostAnswersEach(self):
        """
        With nobody else to answer them, each request in flight is answered
        C{recipient-unavailable} when the connection is lost.
        """
        process = Process()
        requests = LocalRequests(process.table)
        process.add("1")
        process.add("2")
        requests.connectionLost()
        self.assertEqual(
            [outcome.condition for _, outcome in process.answered], ["recipient-unavailable"] * 2
        )


class SharedRequestsTests(RequestsInFlightTests, RedisProcesses, unittest.TestCase):
    """
    L{SharedRequests}: the contract, and what several processes add to it.
    """

    def setUp(self):
        return self.startRedis()

    @defer.inlineCallbacks
    def requestsFor(self, process):
        cluster = yield self.cluster(process)
        return SharedRequests(cluster, process.table)

    @defer.inlineCallbacks
    def test_takenByAnother(self):
        """
        A reply that reaches another process is taken there, with the
        entry as its owner recorded it; the owner forgets the entry
        unanswered (its timer will not answer it).
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        entry = owner.add()
        yield self.recorded(mine, entry)
        taken = yield self.taken(theirs, entry.key, RESOURCE)
        self.assertEqual(
            (taken.key, taken.requester, taken.request, taken.resource),
            (entry.key, entry.requester, entry.request, other.resources.get(RESOURCE)),
        )
        yield waitFor(lambda: entry.key not in owner.table, "the owner told")
        owner.clock.advance(60)
        self.assertEqual(owner.answered, [])

    @defer.inlineCallbacks
    def test_claimAfterAnotherTook(self):
        """
        An owner that claims an entry another process has just taken (its
        timeout and the reply elsewhere at once) does not answer it.
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        # The notice of the take is on its way: not handled before the
        # claim (once handled, the entry has left the table and is never
        # claimed).
        mine.takenElsewhere = lambda notice: None
        entry = owner.add()
        yield self.recorded(mine, entry)
        yield theirs._take(entry.key, RESOURCE)
        claimed = []
        mine.claim(entry, False, claimed.append)
        yield mine.settled()
        self.assertEqual(claimed, [])

    @defer.inlineCallbacks
    def test_replyRacingTimeoutForgotten(self):
        """
        A reply taken while the timeout's claim is on its way (the entry
        left the table meanwhile) is answered once, by the reply, and
        nothing is kept of the entry afterwards.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        entry = process.add()
        yield self.recorded(requests, entry)
        replied, claimed = [], []
        requests.take(entry.key, RESOURCE, replied.append)
        process.table.fail(entry, "remote-server-timeout")
        requests.claim(entry, True, claimed.append)
        yield requests.settled()
        self.assertEqual((len(replied), claimed), (1, []))
        self.assertEqual(requests._untaken, {})

    @defer.inlineCallbacks
    def test_lateTakenNoticeSparesTheNewEntry(self):
        """
        A "taken" notice that arrives after its key was recorded again (the
        owner's timeout found the entry gone, the requester used the id
        again) leaves the new entry alone: it keeps its timer and is
        answered once.
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        held = []
        mine.takenElsewhere = lambda *args: held.append(args)
        first = owner.add()
        yield self.recorded(mine, first)
        yield theirs._take(first.key, RESOURCE)
        yield waitFor(lambda: held, "the notice")
        claimed = []
        owner.table.fail(first, "remote-server-timeout")
        mine.claim(first, True, claimed.append)
        yield mine.settled()
        self.assertEqual(claimed, [])
        second = owner.add()
        self.assertIsNone((yield self.recorded(mine, second)))
        SharedRequests.takenElsewhere(mine, *held[0])
        self.assertIs(owner.table.get(second.key), second)
        owner.clock.advance(31)
        yield mine.settled()
        self.assertEqual([entry for entry, _ in owner.answered], [first, second])

    @defer.inlineCallbacks
    def test_recordReplyLost(self):
        """
        A RECORD whose reply is lost (the script ran) is run again with its
        token, which finds its own entry: the request is sent, not refused,
        and its entry is in Redis once.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        entry = process.add()
        cutAfterRunning(requests.cluster.redis)
        self.assertIsNone((yield self.recorded(requests, entry)))
        self.assertIs(process.table.get(entry.key), entry)
        self.assertIs((yield self.taken(requests, entry.key, RESOURCE)), entry)

    @defer.inlineCallbacks
    def test_recordRunAgainAfterATake(self):
        """
        A RECORD run again with its token once its entry was taken
        elsewhere says so (2: answered there) instead of writing the entry
        again; with another token, it writes over what is left of the
        taken entry (the requester used the id again).
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        entry = owner.add()
        yield self.recorded(mine, entry)
        token = mine._untaken[entry.key][1]
        yield theirs._take(entry.key, RESOURCE)
        cluster = mine.cluster
        keys = [
            mine._redisKey(entry.key),
            cluster.prefix + "owned:" + cluster.instanceID,
            cluster.prefix + "superseded:" + cluster.instanceID,
        ]
        fields = ["owner", cluster.instanceID, "resource", RESOURCE, "data", "x"]
        again = yield cluster.redis.eval(RECORD, keys, [60000] + fields + ["token", token])
        self.assertEqual(again, 2)
        new = yield cluster.redis.eval(RECORD, keys, [60000] + fields + ["token", "new"])
        self.assertEqual(new, 1)
        self.assertEqual((yield cluster.redis.execute("HGET", keys[0], "taker")), None)

    @defer.inlineCallbacks
    def test_supersededRecordRefused(self):
        """
        A process whose id another counted gone (it was paused) records
        nothing more under it: the request is refused
        C{service-unavailable}, as with Redis away, until its heartbeat
        gives it a new id.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        cluster = requests.cluster
        yield cluster.redis.execute("SET", cluster.prefix + "superseded:" + cluster.instanceID, "1")
        entry = process.add()
        refusal = yield self.recorded(requests, entry)
        self.assertEqual(refusal.condition, "service-unavailable")
        self.assertNotIn(entry.key, process.table)

    @defer.inlineCallbacks
    def test_shutdownStopsRetrying(self):
        """
        With Redis away, a take whose command misses its deadline is run
        again, but not once a shutdown waits for the takes: they settle
        within a command's deadline, not the request's.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        entry = process.add()
        yield self.recorded(requests, entry)
        yield self.redis.stop()
        taken = []
        requests.take(entry.key, RESOURCE, taken.append)
        started = reactor.seconds()
        yield requests.settled()
        self.assertLess(reactor.seconds() - started, 10)
        self.assertEqual(taken, [])

    @defer.inlineCallbacks
    def test_takeReplyLost(self):
        """
        A TAKE whose reply is lost (the script ran: the entry is taken) is
        run again with its token, and is given the entry it took: the
        reply is answered; nobody else can take it.
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        entry = owner.add()
        yield self.recorded(mine, entry)
        cutAfterRunning(theirs.cluster.redis)
        taken = yield self.taken(theirs, entry.key, RESOURCE)
        self.assertEqual((taken.key, taken.requester), (entry.key, entry.requester))
        self.assertIsNone((yield self.taken(mine, entry.key, RESOURCE)))

    @defer.inlineCallbacks
    def test_failuresLoggedRateLimited(self):
        """
        Redis commands failing one per outsider's request (a stall before
        the heartbeat says so) are each counted, and written one line per
        interval: an outsider's rate cannot become the log's.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        failure = Failure(RuntimeError("did not answer within 3 s"))
        with capturedLogs() as events:
            for _ in range(200):
                requests.cluster.failed(failure, "recording a request")
        lines = [e for e in events if "failed" in e.get("log_format", "")]
        self.assertEqual((len(lines), process.stats.cluster["redis-errors"]), (1, 200))

    @defer.inlineCallbacks
    def test_sameKeyThroughAnother(self):
        """
        The same requester and id in flight through two processes: the
        second is refused (C{bad-request}, as a duplicate id in one
        process is), and leaves the table.
        """
        first, second = Process(), Process()
        one = yield self.requestsFor(first)
        two = yield self.requestsFor(second)
        yield self.recorded(one, first.add())
        entry = second.add()
        refusal = yield self.recorded(two, entry)
        self.assertEqual(refusal.condition, "bad-request")
        self.assertNotIn(entry.key, second.table)

    @defer.inlineCallbacks
    def test_connectionLostLeavesThem(self):
        """
        A process that loses its connection answers nothing: its entries
        stay in Redis, for the processes still connected to adopt.
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        entry = owner.add()
        yield self.recorded(mine, entry)
        mine.connectionLost()
        self.assertEqual((len(owner.table), owner.answered), (0, []))
        self.assertIs((yield self.taken(theirs, entry.key, RESOURCE)).key, entry.key)

    @defer.inlineCallbacks
    def restartRedis(self):
        """
        Kill Redis and start it again on its port, without its data (no
        persistence, as a throwaway or a cache is run).
        """
        yield self.redis.stop()
        yield self.redis.start()

    @defer.inlineCallbacks
    def test_redisRestartedEntriesWrittenAgain(self):
        """
        Redis restarted without its data while a request is in flight, the
        reply reaching another process while Redis is away: the owner
        writes its entry again on its new connection, and the other
        process's take, run again until Redis answers and then for as long
        as the others take to come back, finds it: the reply is answered,
        once, and the owner's timer answers nothing.
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        entry = owner.add()
        yield self.recorded(mine, entry)
        yield self.redis.stop()
        taken = defer.Deferred()
        theirs.take(entry.key, RESOURCE, taken.callback)
        yield self.redis.start()
        result = yield taken
        self.assertEqual((result.key, result.requester), (entry.key, entry.requester))
        # The owner's timer: it claims the entry (unless the notice of the
        # take reached it first, its channel subscribed again in time).
        claimed = []
        if entry.key in owner.table:
            mine.claim(entry, True, claimed.append)
            stats = mine.cluster.stats.cluster
            yield waitFor(lambda: stats["answered-elsewhere"], "the claim decided")
        self.assertEqual(claimed, [])

    @defer.inlineCallbacks
    def test_noLookingAgainWhenRedisKeptItsData(self):
        """
        A take that meets a new connection and finds nothing looks again
        only if Redis lost its data (its epoch changed): after a
        connection made again to a Redis that kept it, a reply to nothing
        (an outsider's, say) costs one take, not one every 0.1 s for 3 s;
        after a restart, the loss is counted.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        stats = requests.cluster.stats.cluster
        requests.cluster.redis.reconnect()
        taken = yield self.taken(requests, ("enc", "nothing"), RESOURCE)
        self.assertEqual((taken, stats["redis-restarts"]), (None, 0))
        self.assertLessEqual(stats["retried"], 1)
        yield self.restartRedis()
        yield waitFor(lambda: stats["redis-restarts"], "the loss of data found")

    @defer.inlineCallbacks
    def test_takesBoundedWhileRedisAway(self):
        """
        Replies keep coming while Redis does not answer (anyone may send
        one): no more takes wait on Redis than this process could hold
        requests; the others are dropped at once as replies to nothing,
        counted.
        """
        process = Process()
        requests = yield self.requestsFor(process)
        process.table.maxPending, process.table.maxPendingFromTarget = 2, 1
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        taken = []
        for n in range(5):
            requests.take(("enc", str(n)), RESOURCE, taken.append)
        self.assertEqual((len(requests._waiting), taken), (3, [None, None]))
        self.assertEqual(requests.cluster.stats.cluster["takes-refused"], 2)
        self.redis.resume()
        yield waitFor(lambda: len(taken) == 5, "the waiting takes decided")

    @defer.inlineCallbacks
    def test_redisRestartedTakenSinceForgotten(self):
        """
        An entry taken by another process while the owner could not hear
        the notice is found taken when the owner writes it again on its
        new connection: forgotten there, its timer answers nothing.
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        entry = owner.add()
        yield self.recorded(mine, entry)
        # The notice never reaches the owner (its channel down meanwhile).
        mine.takenElsewhere = lambda notice: None
        yield theirs._take(entry.key, RESOURCE)
        self.assertIn(entry.key, owner.table)
        mine.cluster.redis.reconnect()
        yield waitFor(lambda: entry.key not in owner.table, "the owner finds it taken")
        owner.clock.advance(60)
        self.assertEqual(owner.answered, [])

    @defer.inlineCallbacks
    def test_claimWaitsForRedis(self):
        """
        An owner's claim (its timeout, say) made while Redis is away is
        run again until Redis is back, not answered at once without
        knowing whether another process answered: here another did, just
        before, so the owner stays silent.
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        entry = owner.add()
        yield self.recorded(mine, entry)
        mine.takenElsewhere = lambda notice: None
        yield theirs._take(entry.key, RESOURCE)
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        # As the heartbeat finds once it has no answer.
        mine.cluster.reachable = False
        claimed = []
        mine.claim(entry, True, claimed.append)
        stats = mine.cluster.stats.cluster
        yield waitFor(lambda: stats["retried"], "the claim run again")
        self.redis.resume()
        yield waitFor(lambda: stats["answered-elsewhere"], "the claim decided")
        self.assertEqual(claimed, [])

    @defer.inlineCallbacks
    def test_claimAnsweredOnceRedisIsBack(self):
        """
        A claim nobody else could have beaten, made while Redis is away,
        is decided once Redis is back: the owner answers.
        """
        owner = Process()
        mine = yield self.requestsFor(owner)
        entry = owner.add()
        yield self.recorded(mine, entry)
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        # As the heartbeat finds once it has no answer.
        mine.cluster.reachable = False
        claimed = []
        mine.claim(entry, True, claimed.append)
        yield waitFor(lambda: mine.cluster.stats.cluster["retried"], "the claim run again")
        self.assertEqual(claimed, [])
        self.redis.resume()
        yield waitFor(lambda: claimed, "the claim decided")
        self.assertEqual(claimed, [entry])

    @defer.inlineCallbacks
    def test_stoppingWithARecordUndecided(self):
        """
        A process that stops while the record of a request is undecided
        (Redis stopped just after it was sent) answers that request
        itself, once: given up, its record never runs, so no other
        process can know of it.
        """
        owner = Process()
        mine = yield self.requestsFor(owner)
        entry = owner.add()
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        refusals = []
        mine.record(entry, lambda entry, refusal: refusals.append(refusal))
        # The shutdown's grace is over: the table answers what is left.
        owner.table.discard(entry.key)
        claimed = []
        mine.claim(entry, True, claimed.append)
        yield mine.settled()
        self.assertEqual((claimed, refusals), ([entry], []))

    @defer.inlineCallbacks
    def test_stoppingWithRedisAwayLeavesThem(self):
        """
        A process that stops while Redis is away answers nothing it could
        not take: its entries stay in Redis, for another process to adopt
        and answer once Redis is back (answering them here too could
        answer them twice).
        """
        owner, other = Process(), Process()
        mine = yield self.requestsFor(owner)
        theirs = yield self.requestsFor(other)
        entry = owner.add()
        yield self.recorded(mine, entry)
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        # As the heartbeat finds once it has no answer.
        mine.cluster.reachable = False
        claimed = []
        mine.claim(entry, True, claimed.append)
        yield mine.settled()
        self.assertEqual((claimed, mine.cluster.stats.cluster["left"]), ([], 1))
        self.redis.resume()
        self.assertIs((yield self.taken(theirs, entry.key, RESOURCE)).key, entry.key)


class FactsTests:
    """
    The contract of L{IFacts}: mixed into a test case that provides
    C{factsFor(process)} (a Deferred).
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_provides(self):
        """
        The implementation provides the interface.
        """
        facts = yield self.factsFor(Process())
        self.assertTrue(verifyObject(IFacts, facts))

    @defer.inlineCallbacks
    def test_ownFactsNotToldBack(self):
        """
        A process has acted on what it learnt itself: its observers are not
        told it again.
        """
        facts = yield self.factsFor(Process())
        heard = []
        facts.observe(lambda fact, origin: heard.append((fact, origin)))
        for fact in FACTS:
            facts.learnt(fact)
        yield self.settle(facts)
        self.assertEqual(heard, [])


class LocalFactsTests(FactsTests, unittest.TestCase):
    """
    L{LocalFacts}: the contract.
    """

    def factsFor(self, process):
        return defer.succeed(LocalFacts())

    def settle(self, facts):
        pass


class SharedFactsTests(FactsTests, RedisProcesses, unittest.TestCase):
    """
    L{SharedFacts}: the contract, and facts heard by the other processes.
    """

    def setUp(self):
        return self.startRedis()

    @defer.inlineCallbacks
    def factsFor(self, process):
        cluster = yield self.cluster(process)
        # Connected to a server (a stream stub): a process hears the
        # others' facts only while it is.
        cluster.makeConnection(XmlStreamStub().xmlstream)
        return SharedFacts(cluster)

    def settle(self, facts):
        return facts.cluster.redis.execute("PING")

    @defer.inlineCallbacks
    def test_heardElsewhere(self):
        """
        Every fact one process learns reaches the other's observers, as it
        was, with the first process's id as its origin.
        """
        mine = yield self.factsFor(Process())
        theirs = yield self.factsFor(Process())
        heard = []
        theirs.observe(lambda fact, origin: heard.append((fact, origin)))
        for fact in FACTS:
            mine.learnt(fact)
        yield waitFor(lambda: len(heard) == len(FACTS), "every fact heard")
        origin = mine.cluster.instanceID
        self.assertEqual(heard, [(fact, origin) for fact in FACTS])
        self.assertNotEqual(origin, HERE)


class StoreTests:
    """
    The contract of L{IStore}: mixed into a test case that provides
    C{store()} (a Deferred firing with an empty store) and C{settle(store)}
    (what waits until the writes made are done).
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_provides(self):
        """
        The implementation provides the interface.
        """
        store = yield self.store()
        self.assertTrue(verifyObject(IStore, store))

    @defer.inlineCallbacks
    def test_queueBoundsAndOrder(self):
        """
        Messages are queued within the bounds, in all and per sender, and
        come back oldest first; a batch given back stays at the head, one
        delivered leaves.
        """
        store = yield self.store()
        self.assertIsNone((yield store.enqueue("a@x", "<m1/>", 3, 2)))
        self.assertIsNone((yield store.enqueue("a@x", "<m2/>", 3, 2)))
        self.assertEqual(
            (yield store.enqueue("a@x", "<m3/>", 3, 2)),
            "the queue holds its limit from this sender",
        )
        self.assertIsNone((yield store.enqueue("b@x", "<m4/>", 3, 2)))
        self.assertEqual((yield store.enqueue("c@x", "<m5/>", 3, 2)), "the queue is full")
        self.assertEqual((store.queueLength(), store.queueLength("a@x")), (3, 2))
        batch = yield store.queued(2)
        self.assertEqual([stanza for _, stanza in batch], ["<m1/>", "<m2/>"])
        store.giveBack(batch)
        yield self.settle(store)
        batch = yield store.queued(2)
        self.assertEqual([stanza for _, stanza in batch], ["<m1/>", "<m2/>"])
        store.delivered([ident for ident, _ in batch])
        rest = yield store.queued()
        self.assertEqual([stanza for _, stanza in rest], ["<m4/>"])

    @defer.inlineCallbacks
    def test_subscribers(self):
        """
        Subscribers are added once, counted in all and per domain, and
        removed.
        """
        store = yield self.store()
        for jid in ("a@x", "b@x", "c@y", "a@x"):
            store.addSubscriber(jid)
        self.assertEqual(store.subscribers(), ["a@x", "b@x", "c@y"])
        self.assertEqual((store.subscriberCount(), store.subscriberCount("x")), (3, 2))
        store.removeSubscriber("b@x")
        yield self.settle(store)
        self.assertEqual(
            (store.isSubscriber("b@x"), store.isSubscriber("a@x"), store.subscriberCount("x")),
            (False, True, 1),
        )
        yield store.recount()
        self.assertEqual(store.subscriberCount(), 2)


class SQLiteStoreTests(StoreTests, unittest.TestCase):
    """
    L{Store} (SQLite): the contract.
    """

    def store(self):
        store = Store(":memory:")
        self.addCleanup(store.close)
        return defer.succeed(store)

    def settle(self, store):
        pass


class RedisStoreContractTests(StoreTests, unittest.TestCase):
    """
    L{RedisStore}: the contract (what several stores share:
    tests/test_redisstore.py).
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.redis = yield startRedis(self)

    @defer.inlineCallbacks
    def store(self):
        store = RedisStore(connect(self.redis.url), COMPONENT)
        self.addCleanup(store.close)
        yield store.recount()
        return store

    def settle(self, store):
        """
        Wait until Redis has done what C{store} sent it: a command sent
        now is answered after those before it (a script's first use
        included, sent again once Redis says it does not know it).
        """
        return store.redis.execute("PING")
