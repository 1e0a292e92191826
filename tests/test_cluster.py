"""
Tests for L{clientproxy.state.redis.cluster}: several processes of one component
sharing their state in a real Redis (Debian's redis-server, a throwaway
one on a loopback port). Each process is the real assembly of handlers on
an in-memory stream (L{tests.helpers.Harness}), so the test plays the
server: it decides which process receives each stanza, as ejabberd does at
random. Redis answers asynchronously, so the tests wait for what they
expect, bounded by L{waitFor}.
"""

import os

from hypothesis import given, settings, strategies as st
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from clientproxy.state.redis.cluster import HEARTBEAT
from clientproxy.ops.metrics import readiness
from clientproxy.xmpp.connection import ProxyComponent
from clientproxy.state.redis.address import parseURL
from clientproxy.state.redis.client import RedisError
from clientproxy.state.redis.lease import RELEASE, RENEW_SCRIPT, TAKE
from clientproxy.state.redis.store import Listener, RedisStore, aclRules, connect, prefixOf
from clientproxy.testing.redis import cutAfterRunning, startRedis
from tests.helpers import COMPONENT, TARGET, Harness, errorCondition, waitFor
from tests.xmlgen import RECIPIENTS, RESOURCES, attribute, readStanzas, stanzas

REQUESTER = "alice@example.org/abc"


class Connected:
    """
    What /readyz reads of a proxy, for a harness's handlers: connected and
    authenticated, no standby lock.
    """

    standby = None
    xmlstream = object()
    authenticated = True
    jid = COMPONENT
    status = ProxyComponent.status

    def __init__(self, harness):
        self.parts = harness.handlers
        self.dispatcher = harness.dispatcher


def readinessOf(process):
    """
    The conditions /readyz finds unmet for C{process}.
    """
    _, report = readiness([Connected(process)])
    return report["proxies"][COMPONENT]["unmet"]


class SharedProcesses(unittest.TestCase):
    """
    Processes of one component in memory, sharing a throwaway Redis.
    """

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.redis = yield startRedis(self)

    def redisURL(self):
        """
        The URL the processes reach Redis by.
        """
        return self.redis.url

    def process(self, name, **options):
        """
        One process of the component, sharing its state through Redis;
        C{options} go to L{Harness}.
        """
        url = self.redisURL()
        redis = connect(url)
        store = RedisStore(redis, COMPONENT)
        listeners = []

        def listen(onMessage):
            listener = Listener(url, onMessage)
            listeners.append(listener)
            return listener

        harness = Harness(store=store, redis=redis, listen=listen, **options)
        harness.name = name
        self.addCleanup(lambda: [listener.disconnect() for listener in listeners])
        self.addCleanup(redis.disconnect)
        beat = harness.handlers.cluster._beat
        self.addCleanup(lambda: beat.running and beat.stop())
        return harness

    @defer.inlineCallbacks
    def processes(self, count=2, **options):
        """
        C{count} processes, each subscribed to the channels and heard of
        by Redis; the target's resource C{a} online (seen by the first,
        passed on to the others).
        """
        processes = [self.process(chr(ord("A") + n), **options) for n in range(count)]
        for p in processes:
            yield p.handlers.cluster.redis.execute("PING")
        # A presence published before the others subscribe would be lost.
        yield waitFor(lambda: all(p.handlers.cluster.listener.subscribed for p in processes))
        yield deferLater(reactor, 0.05, lambda: None)
        processes[0].online("a")
        yield waitFor(lambda: all(TARGET + "/a" in p.resources for p in processes))
        for p in processes:
            p.take()
        return processes

    def collect(self, *processes):
        """
        Everything the processes sent since the last call, in one list.
        """
        out = []
        for p in processes:
            out.extend(p.take())
        return out

    @defer.inlineCallbacks
    def forwarded(self, process, **request):
        """
        Send a request to C{process}, and wait until it forwarded it (once
        its entry is in Redis).
        """
        out = []
        process.request(**request)
        yield waitFor(lambda: out.extend(process.take()) or out)
        return out


class ClusterTests(SharedProcesses):
    """
    Requests, replies, presences and queued messages across processes
    sharing one Redis, and what a process does when another goes or Redis
    cannot be reached.
    """

    @defer.inlineCallbacks
    def test_replyReachesAnotherProcess(self):
        """
        A reply that reaches a process other than the one that forwarded
        the request is routed to the requester by it, once; the first
        forgets the request and sends nothing when its timeout passes.
        """
        a, b = yield self.processes()
        (forwarded,) = yield self.forwarded(a, requester=REQUESTER, stanzaID="q1")
        self.assertEqual(forwarded["to"], TARGET + "/a")
        self.assertEqual(forwarded["id"], "q1")
        b.reply("a", requester=forwarded["from"].split("/", 1)[1], stanzaID="q1")
        out = []
        yield waitFor(lambda: out.extend(b.take()) or out)
        (answer,) = out
        self.assertEqual((answer["type"], answer["to"], answer["id"]), ("result", REQUESTER, "q1"))
        yield waitFor(lambda: len(a.pending) == 0)
        a.clock.advance(31)
        yield a.handlers.cluster.redis.execute("PING")
        self.assertEqual(self.collect(a, b), [])

    @defer.inlineCallbacks
    def test_replyAndTimeoutRace(self):
        """
        The reply reaches one process as the timeout passes on the other:
        the requester gets exactly one answer.
        """
        a, b = yield self.processes()
        requests = []
        for n in range(20):
            requests.extend((yield self.forwarded(a, stanzaID="r%d" % n)))
        for request in requests:
            b.reply("a", requester=request["from"].split("/", 1)[1], stanzaID=request["id"])
        a.clock.advance(31)
        answers = []
        yield waitFor(lambda: answers.extend(self.collect(a, b)) or len(answers) >= 20)
        yield deferLater(reactor, 0.2, lambda: None)
        answers.extend(self.collect(a, b))
        self.assertEqual(sorted(s["id"] for s in answers), sorted(r["id"] for r in requests))

    @defer.inlineCallbacks
    def test_processGone(self):
        """
        The requests held by a process that went away are taken over by
        another within a heartbeat or two: a C{get} is sent again, a
        C{set} whose resource is there waits for its reply (it may have
        been carried out), and one whose resource left is answered
        C{recipient-unavailable}; the replies are routed.
        """
        a, b = yield self.processes()
        a.online("b")
        yield waitFor(lambda: TARGET + "/b" in b.resources)
        a.take()
        yield self.forwarded(a, stanzaID="g", kind="get")
        (sent,) = yield self.forwarded(a, stanzaID="s", kind="set")
        (gone,) = yield self.forwarded(a, stanzaID="t", kind="set")
        # The least pending: one set on each resource.
        self.assertNotEqual(sent["to"], gone["to"])
        a.manager.disconnect()
        yield a.handlers.cluster.redis.execute("PING")
        left = gone["to"].split("/", 1)[1]
        b.offline(left)
        out = []
        b.clock.advance(HEARTBEAT)
        yield waitFor(lambda: out.extend(b.take()) or len(out) >= 2)
        yield b.handlers.cluster.redis.execute("PING")
        out.extend(b.take())
        byID = {s["id"]: s for s in out if s.name == "iq"}
        self.assertEqual(sorted(byID), ["g", "t"])
        self.assertEqual(byID["t"]["to"], REQUESTER)
        self.assertEqual(errorCondition(byID["t"]), ("recipient-unavailable", "wait"))
        self.assertEqual(byID["g"]["from"].split("/", 1)[1], REQUESTER)
        resource = byID["g"]["to"].split("/", 1)[1]
        b.reply(resource, requester=REQUESTER, stanzaID="g")
        b.reply(sent["to"].split("/", 1)[1], requester=REQUESTER, stanzaID="s")
        answers = []
        yield waitFor(lambda: answers.extend(b.take()) or len(answers) >= 2)
        self.assertEqual(
            sorted((s["id"], s["type"], s["to"]) for s in answers),
            [("g", "result", REQUESTER), ("s", "result", REQUESTER)],
        )
        self.assertEqual(b.stats.cluster["adopted"], 3)

    @defer.inlineCallbacks
    def test_presenceShared(self):
        """
        Presence of the target one process receives reaches the others'
        view; the service's subscribers are told once, by that process.
        """
        a, b, c = yield self.processes(3)
        a.offline("a")
        yield waitFor(lambda: all(len(p.resources) == 0 for p in (a, b, c)))
        c.online("b")
        yield waitFor(lambda: all(TARGET + "/b" in p.resources for p in (a, b, c)))
        self.assertEqual([p.servicePresence.available for p in (a, b, c)], [True] * 3)
        self.assertEqual([p.stats.presence["broadcasts"] for p in (a, b, c)], [2, 0, 1])

    @defer.inlineCallbacks
    def test_queuedMessageDeliveredOnce(self):
        """
        A message queued through one process while the target is offline is
        delivered once, by the process that sees a resource come online.
        """
        a, b = yield self.processes()
        a.offline("a")
        yield waitFor(lambda: len(b.resources) == 0)
        a.receive(
            "<message from='%s' to='%s' id='m1'><body>hi</body></message>" % (REQUESTER, COMPONENT)
        )
        yield waitFor(lambda: b.handlers.store.queueLength() == 1)
        b.online("c")
        delivered = []
        yield waitFor(lambda: delivered.extend(self.collect(a, b)) or delivered)
        yield deferLater(reactor, 0.2, lambda: None)
        delivered.extend(self.collect(a, b))
        self.assertEqual([(m.name, m["id"]) for m in delivered], [("message", "m1")])
        self.assertEqual((a.handlers.store.queueLength(), b.handlers.store.queueLength()), (0, 0))

    @defer.inlineCallbacks
    def test_redisUnreachable(self):
        """
        With Redis silent for a heartbeat, a new request is refused with
        C{service-unavailable} (wait) rather than sent.
        """
        (a,) = yield self.processes(1)
        yield self.redis.stop()
        a.clock.advance(HEARTBEAT)
        a.clock.advance(HEARTBEAT)
        yield waitFor(lambda: not a.handlers.cluster.reachable)
        a.request(stanzaID="x")
        (refusal,) = a.take()
        self.assertEqual(errorCondition(refusal), ("service-unavailable", "wait"))
        self.assertEqual(
            readinessOf(a), ["Redis answering (new requests are refused until it does)"]
        )

    @defer.inlineCallbacks
    def test_readyAgain(self):
        """
        Once Redis answers again, and the process has read back what it
        may have missed, it is ready and requests are taken again.
        """
        (a,) = yield self.processes(1)
        self.assertEqual(readinessOf(a), [])
        yield self.redis.stop()
        a.clock.advance(HEARTBEAT)
        a.clock.advance(HEARTBEAT)
        yield waitFor(lambda: not a.handlers.cluster.reachable)
        yield self.redis.start()
        yield waitFor(lambda: a.clock.advance(HEARTBEAT) or a.handlers.cluster.reachable, 15)
        # Subscribed again, the process resyncs (and probes the target).
        yield waitFor(lambda: a.handlers.cluster.synced, "resynced")
        self.assertEqual(readinessOf(a), [])
        a.take()
        (forwarded,) = yield self.forwarded(a, stanzaID="y")
        self.assertEqual(forwarded["to"], TARGET + "/a")


#: Replies from the target's resources, to any address of the component,
#: with any id: what the shared table is looked up by, most often.
targetReplies = st.builds(
    lambda type_, sender, recipient, ident: (
        "<iq%s%s%s%s/>"
        % (
            attribute("type", type_),
            attribute("from", sender),
            attribute("to", recipient),
            attribute("id", ident),
        ),
        "iq",
        type_,
        sender,
    ),
    st.sampled_from(["result", "error"]),
    st.sampled_from(RESOURCES),
    st.one_of(st.none(), st.sampled_from(RECIPIENTS)),
    st.one_of(st.none(), st.sampled_from(["1", "2", "cp-1", "x.caps-1", "", "\u2603"])),
)


class SharedHoldTests(SharedProcesses):
    """
    The line (C{--hold}) with shared state: a waiting request is in Redis
    too, so it is served by its process when another sees a resource come,
    and taken over by another when its process goes.
    """

    @defer.inlineCallbacks
    def test_servedWhenAnotherProcessSeesTheResource(self):
        """
        A request waits in line in one process; the resource's presence
        reaches the other, which publishes it: the first sends the request,
        and the reply, wherever it arrives, answers it once.
        """
        a, b = yield self.processes(hold=10)
        a.offline("a")
        yield waitFor(lambda: all(len(p.resources) == 0 for p in (a, b)))
        a.request(requester=REQUESTER, stanzaID="h", kind="set")
        yield waitFor(lambda: a.pending.lineLength == 1)
        b.online("b")
        out = []
        yield waitFor(lambda: out.extend(a.take()) or out)
        (sent,) = out
        self.assertEqual((sent["to"], sent["id"]), (TARGET + "/b", "h"))
        b.reply("b", requester=sent["from"].split("/", 1)[1], stanzaID="h", kind="result")
        answers = []
        yield waitFor(lambda: answers.extend(self.collect(a, b)) or answers)
        yield deferLater(reactor, 0.1, lambda: None)
        answers.extend(self.collect(a, b))
        self.assertEqual([(s["type"], s["to"]) for s in answers], [("result", REQUESTER)])

    @defer.inlineCallbacks
    def test_waitingRequestTakenOver(self):
        """
        The process holding a waiting request goes away: another takes it
        over, keeps it waiting, and sends it when a resource comes.
        """
        a, b = yield self.processes(hold=10)
        a.offline("a")
        yield waitFor(lambda: all(len(p.resources) == 0 for p in (a, b)))
        a.request(requester=REQUESTER, stanzaID="h", kind="set")
        yield waitFor(lambda: a.pending.lineLength == 1)
        # Its entry is in Redis once recorded: the next PING comes after.
        yield a.handlers.cluster.redis.execute("PING")
        a.manager.disconnect()
        yield a.handlers.cluster.redis.execute("PING")
        b.clock.advance(HEARTBEAT)
        yield waitFor(lambda: b.pending.lineLength == 1)
        self.assertEqual(b.take(), [])
        b.online("b")
        out = []
        yield waitFor(lambda: out.extend(b.take()) or out)
        self.assertEqual(
            [(s["to"], s["id"], s["type"]) for s in out], [(TARGET + "/b", "h", "set")]
        )


class HostileSharedTests(SharedProcesses):
    """
    The fuzz run of L{tests.test_properties} with two processes sharing a
    real Redis: hostile stanzas go to either process at random, as
    ejabberd hands them out. Whatever comes in, no exception leaves a
    handler or a callback of a Redis answer (trial fails a test with an
    error logged), and whatever either process writes is well-formed and
    goes only where it may.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_hostileStanzas(self):
        """
        Random hostile stanzas and target replies, each to either process with
        time passing between them: whatever either writes, then and after a
        heartbeat, goes only to the target, its resources, a sender of the
        input, or a peer a resource addressed.
        """
        a, b = yield self.processes()
        for p in (a, b):
            p.manager.takeBytes()
        allowed = {TARGET + "/a", TARGET + "/b", TARGET}
        out = []

        @settings(max_examples=150, deadline=None)
        @given(
            st.lists(
                st.tuples(st.one_of(stanzas, targetReplies), st.booleans(), st.floats(0, 20)),
                max_size=25,
            )
        )
        def run(inputs):
            for (xml, kind, type_, sender), second, pause in inputs:
                if sender:
                    allowed.add(sender)
                    allowed.add(sender.partition("/")[0])
                if kind in ("iq", "message") and sender and sender.startswith(TARGET + "/"):
                    allowed.update(["alice@example.org/abc", "bob@example.org"])
                p = b if second else a
                p.receive(xml)
                p.clock.advance(pause)
                out.extend(readStanzas(p.manager.takeBytes()))

        run()
        # What Redis answers meanwhile is handled on the reactor.
        for p in (a, b):
            yield p.handlers.cluster.redis.execute("PING")
        yield deferLater(reactor, 0.5, lambda: None)
        for p in (a, b):
            p.clock.advance(HEARTBEAT)
            yield p.handlers.cluster.redis.execute("PING")
            out.extend(readStanzas(p.manager.takeBytes()))
        self.assertTrue(out)
        for stanza in out:
            self.assertIn(stanza[1].get("to"), allowed, stanza)


class SharedViewTests(SharedProcesses):
    """
    What the processes learn about the target's resources is the same in
    each, whichever receives the stanzas it is learnt from.
    """

    @defer.inlineCallbacks
    def test_factsIgnoredWhileDisconnected(self):
        """
        A process whose connection to the server is down acts on no fact
        the others learn: it learns the target's resources again from the
        probe when it connects, so that what it does on a resource's
        arrival (ask its features, show the service available) is done
        then, not skipped as already known.
        """
        a, b = yield self.processes()
        b.manager.disconnect()
        a.online("b")
        # A store notice published after the fact: once B has it, B has
        # had the fact too (one channel, in order).
        a.handlers.store.addSubscriber("carol@example.org")
        yield waitFor(lambda: b.handlers.store.isSubscriber("carol@example.org"))
        self.assertNotIn(TARGET + "/b", b.resources)

    @defer.inlineCallbacks
    def test_affinityAcrossProcesses(self):
        """
        With affinity, a key goes to the same resource whichever process
        receives the request.
        """
        a, b = yield self.processes(affinity="requester")
        a.online("b", "c")
        yield waitFor(lambda: all(len(p.resources) == 3 for p in (a, b)))
        for p in (a, b):
            p.take()
        for n in range(10):
            requester = "user%d@example.org/r" % (n,)
            (first,) = yield self.forwarded(a, requester=requester, stanzaID="a%d" % n)
            (second,) = yield self.forwarded(b, requester=requester, stanzaID="b%d" % n)
            self.assertEqual(first["to"], second["to"])

    @defer.inlineCallbacks
    def test_queryAnswerPassedOn(self):
        """
        The answer to one process's disco#info query that the server hands
        to another is passed on to the one that asked, which learns what
        the resource supports.
        """
        a, b = yield self.processes(matchFeatures="auto")
        a.online("q")
        query = None
        for stanza in a.take():
            if stanza.getAttribute("id", "").startswith(a.handlers.cluster.instanceID + "."):
                query = stanza
        self.assertIsNotNone(query)
        b.receive(
            "<iq type='result' id='%s' from='%s' to='%s'><query "
            "xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:x'/></query></iq>"
            % (query["id"], query["to"], COMPONENT)
        )
        yield waitFor(lambda: a.resources.get(query["to"]).features is not None)
        self.assertEqual(a.resources.get(query["to"]).features, frozenset(["urn:x"]))
        self.assertEqual(b.stats.cluster["passed-on"], 1)

    @defer.inlineCallbacks
    def test_onlyRepliesToTheBareComponentPassedOn(self):
        """
        An IQ whose id carries another process's prefix is passed on to
        that process only when it is a C{result} or C{error} to the
        component's bare JID, from the target or a domain (what the
        component's own queries are answered with). A requester's id is
        never interpreted: a request with such an id, or a reply to a
        requester's encoded address, is handled where it arrived.
        """
        a, b = yield self.processes()
        ownID = a.handlers.cluster.ids("caps")
        notPassed = [
            "<iq type='get' id='%s' from='alice@example.org/abc' to='%s'><q xmlns='urn:x'/></iq>"
            % (ownID, COMPONENT),
            "<iq type='set' id='%s' from='%s/a' to='%s'><q xmlns='urn:x'/></iq>"
            % (ownID, TARGET, COMPONENT),
            "<iq type='result' id='%s' from='%s/a' to='%s/alice@example.org/abc'/>"
            % (ownID, TARGET, COMPONENT),
            "<iq type='get' id='%s' from='example.org' to='%s/alice@example.org'>"
            "<q xmlns='urn:x'/></iq>" % (ownID, COMPONENT),
            "<iq type='result' id='%s' from='alice@example.org/abc' to='%s'/>" % (ownID, COMPONENT),
        ]
        for xml in notPassed:
            b.receive(xml)
            self.assertEqual(b.stats.cluster["passed-on"], 0, xml)
        b.receive("<iq type='result' id='%s' from='%s/a' to='%s'/>" % (ownID, TARGET, COMPONENT))
        b.receive("<iq type='error' id='%s' from='example.org' to='%s'/>" % (ownID, COMPONENT))
        self.assertEqual(b.stats.cluster["passed-on"], 2)
        # What Redis answers meanwhile is handled before the test ends.
        for p in (a, b):
            yield p.handlers.cluster.redis.execute("PING")
        yield deferLater(reactor, 0.1, lambda: None)

    @defer.inlineCallbacks
    def test_resultForgetsEverywhere(self):
        """
        A result from a learnt refuser forgets the refusal in every process,
        not only in the one it reached.
        """
        a, b = yield self.processes()
        topic = ("urn:test", "query", "get")
        for p in (a, b):
            resource = p.resources.get(TARGET + "/a")
            for requester in ("m@x/1", "n@y/1"):
                p.dispatcher.selector.refusals.refused(resource, topic, requester)
        (request,) = yield self.forwarded(a, requester=REQUESTER, stanzaID="s")
        self.assertEqual(request["to"], TARGET + "/a")
        a.reply("a", requester=REQUESTER, stanzaID="s")
        resource = b.resources.get(TARGET + "/a")
        yield waitFor(lambda: not b.dispatcher.selector.refusals.concerns(resource))
        self.assertIsNone(b.dispatcher.selector.refusals.refusersOf(topic))

    @defer.inlineCallbacks
    def test_outsidersRepliesPassedOnWithinThePolicy(self):
        """
        A domain's replies shaped like another process's own are passed on
        only within the policy: over the rate or denied, they are dropped
        where they arrived and cost Redis nothing.
        """
        a, b = yield self.processes(rate=1, burst=1, deny=["denied.example"])
        ownID = a.handlers.cluster.ids("caps")
        for _ in range(5):
            b.receive(
                "<iq type='error' id='%s' from='flood.example' to='%s'/>" % (ownID, COMPONENT)
            )
            b.receive(
                "<iq type='error' id='%s' from='denied.example' to='%s'/>" % (ownID, COMPONENT)
            )
        self.assertEqual(b.stats.cluster["passed-on"], 1)
        self.assertEqual(b.stats.dropped["reply-too-fast"], 4)
        self.assertEqual(b.stats.dropped["reply-from-peer-refused"], 5)
        for p in (a, b):
            yield p.handlers.cluster.redis.execute("PING")
        yield deferLater(reactor, 0.1, lambda: None)

    @defer.inlineCallbacks
    def test_refusalShared(self, payload="<query xmlns='urn:test'/>", namespace="urn:test"):
        """
        Refusals seen by different processes add up: a resource that
        refused one requester on one process and another requester on the
        other is learnt as a refuser of that namespace and type by both.
        """
        a, b = yield self.processes()
        a.online("b")
        yield waitFor(lambda: all(len(p.resources) == 2 for p in (a, b)))
        for p in (a, b):
            p.take()
        refuser = None
        for process, requester in ((a, "mallory@example.org/m"), (b, "eve@example.net/e")):
            (request,) = yield self.forwarded(
                process, requester=requester, stanzaID="r", payload=payload
            )
            refuser = refuser or request["to"].split("/", 1)[1]
            if request["to"] != TARGET + "/" + refuser:
                # The other resource was asked first: it serves.
                process.reply(request["to"].split("/", 1)[1], requester=requester, stanzaID="r")
                continue
            process.reply(
                refuser,
                requester=requester,
                stanzaID="r",
                kind="error",
                payload="<error type='cancel'><feature-not-implemented "
                "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
            )
        for process in (a, b):
            resource = process.resources.get(TARGET + "/" + refuser)
            yield waitFor(lambda: process.dispatcher.selector.refusals.refusedBy(resource))
            self.assertEqual(
                process.dispatcher.selector.refusals.refusedBy(resource),
                [(namespace, "query", "get")],
            )

    def test_refusalOfNoNamespaceShared(self):
        """
        The same for a request whose child is in no namespace (C{xmlns=''}):
        the empty namespace is published and read back as itself (it was
        read back as C{None}, another key).
        """
        return self.test_refusalShared(payload="<query xmlns=''/>", namespace="")


class MembershipTests(SharedProcesses):
    """
    How a process keeps its place among the processes of the component in
    Redis.
    """

    @defer.inlineCallbacks
    def test_membershipRenewed(self):
        """
        A process counts itself a member again at every heartbeat: one
        another process counted gone (while Redis was away) is looked
        after again when it does go.
        """
        (a,) = yield self.processes(1)
        cluster = a.handlers.cluster
        key = cluster.prefix + "instances"
        yield cluster.redis.execute("SREM", key, cluster.instanceID)
        a.clock.advance(HEARTBEAT)
        yield cluster.redis.execute("PING")
        self.assertEqual((yield cluster.redis.execute("SMEMBERS", key)), [cluster.instanceID])


#: The ACL user's password in L{LockedRedisTests}.
ACL_PASSWORD = "acl-pw"


class AdoptionTests(SharedProcesses):
    """
    What is answered after a process went and another took its requests
    over.
    """

    @defer.inlineCallbacks
    def test_peerReplyToAnAdoptedRequest(self):
        """
        A domain peer's reply to a request of the target that a process
        gone had sent, reaching a third process after another adopted the
        request, is routed to the resource that asked (not passed on to
        the process gone).
        """
        a, b, c = yield self.processes(3)
        a.receive(
            "<iq type='get' id='t1' from='%s/a' to='%s/peer.example.net'>"
            "<q xmlns='urn:x'/></iq>" % (TARGET, COMPONENT)
        )
        out = []
        yield waitFor(lambda: out.extend(a.take()) or out)
        (sent,) = out
        self.assertEqual(sent["to"], "peer.example.net")
        a.manager.disconnect()
        yield a.handlers.cluster.redis.execute("PING")
        b.clock.advance(HEARTBEAT)
        yield waitFor(lambda: len(b.pending) == 1, "adopted")
        c.receive(
            "<iq type='result' id='%s' from='peer.example.net' to='%s'/>" % (sent["id"], COMPONENT)
        )
        answers = []
        yield waitFor(lambda: answers.extend(self.collect(b, c)) or answers, "the answer")
        yield waitFor(lambda: len(b.pending) == 0, "the adopter told")
        (answer,) = answers + self.collect(b, c)
        self.assertEqual(
            (answer["type"], answer["id"], answer["to"]), ("result", "t1", TARGET + "/a")
        )

    @defer.inlineCallbacks
    def test_adoptionReplyLost(self):
        """
        An adoption whose reply is lost (the link cut after the script
        moved the entries of a process gone to this one) is not lost with
        it: at the next heartbeat the process reads back the entries Redis
        says it owns and does not know of, and sends the C{get} again.
        """
        a, b = yield self.processes()
        yield self.forwarded(a, stanzaID="g", kind="get")
        a.manager.disconnect()
        yield a.handlers.cluster.redis.execute("PING")
        cluster = b.handlers.cluster
        cutAfterRunning(cluster.redis)
        cluster._lookForGone(cluster.instanceID)
        yield waitFor(lambda: cluster.stats.cluster["redis-errors"], "the reply lost")
        self.assertEqual((len(b.pending), b.stats.cluster["adopted"]), (0, 0))
        b.clock.advance(HEARTBEAT)
        out = []
        yield waitFor(lambda: out.extend(b.take()) or out, "the get sent again")
        self.assertEqual([s["id"] for s in out if s.name == "iq"], ["g"])
        self.assertEqual(b.stats.cluster["adopted"], 1)

    @defer.inlineCallbacks
    def test_orphansLeaveWhatWasGivenUpHere(self):
        """
        Reading back what an adoption took leaves alone an entry this
        process recorded itself and no longer knows of (its record given
        up after its replies were lost, and the request answered here):
        adopting it would answer it again.
        """
        (a,) = yield self.processes(1)
        yield self.forwarded(a, stanzaID="g", kind="get")
        requests = a.dispatcher.requests
        (entry,) = [entry for entry, _ in requests._untaken.values()]
        requests._forget(entry)
        cluster = a.handlers.cluster
        cluster._orphans = True
        a.clock.advance(HEARTBEAT)
        self.assertFalse(cluster._orphans)
        yield cluster.redis.execute("PING")
        self.assertEqual((a.stats.cluster["adopted"], a.take()), (0, []))

    @defer.inlineCallbacks
    def test_pausedProcessSetAnsweredWithItsResult(self):
        """
        A process paused longer than the heartbeat's TTL (its key expired)
        is counted gone: the C{set} it held waits in the adopter for its
        reply (its resource is there: it may have carried it out), and the
        target's result reaches the requester, once. The paused process,
        back, finds it was superseded: it forgets what it held, goes on
        with a new id, and answers nothing at its timeout.
        """
        a, b = yield self.processes()
        (forwarded,) = yield self.forwarded(a, stanzaID="s", kind="set")
        paused = a.handlers.cluster
        old = paused.instanceID
        paused._beat.stop()
        yield paused.redis.execute("DEL", paused.prefix + "alive:" + old)
        b.clock.advance(HEARTBEAT)
        yield waitFor(lambda: len(b.pending) == 1, "adopted")
        yield b.handlers.cluster.redis.execute("PING")
        self.assertEqual(self.collect(a, b), [])
        b.reply("a", requester=forwarded["from"].split("/", 1)[1], stanzaID="s")
        answers = []
        yield waitFor(lambda: answers.extend(self.collect(a, b)) or answers, "the answer")
        paused._heartbeat()
        yield waitFor(lambda: paused.instanceID != old, "superseded")
        self.assertEqual(len(a.pending), 0)
        a.clock.advance(31)
        b.clock.advance(31)
        for p in (a, b):
            yield p.handlers.cluster.redis.execute("PING")
        answers.extend(self.collect(a, b))
        self.assertEqual(
            [(s["type"], s["id"], s["to"]) for s in answers], [("result", "s", REQUESTER)]
        )
        self.assertEqual(a.stats.cluster["superseded"], 1)

    @defer.inlineCallbacks
    def test_supersededProcessCannotClaim(self):
        """
        A process counted gone whose timer fires before its heartbeat
        finds out (it was paused) cannot take back the entry another
        adopted (here a C{get}, sent again by the adopter): its claim finds
        nothing, and the adopter answers it.
        """
        a, b = yield self.processes()
        yield self.forwarded(a, stanzaID="g", kind="get")
        paused = a.handlers.cluster
        paused._beat.stop()
        yield paused.redis.execute("DEL", paused.prefix + "alive:" + paused.instanceID)
        b.clock.advance(HEARTBEAT)
        yield waitFor(lambda: len(b.pending) == 1, "adopted")
        a.clock.advance(31)
        yield a.handlers.dispatcher.requests.settled()
        self.assertEqual(a.take(), [])
        b.clock.advance(31)
        out = []
        yield waitFor(
            lambda: out.extend(b.take()) or any(s["to"] == REQUESTER for s in out),
            "the adopter's answer",
        )
        (answer,) = [s for s in out if s["to"] == REQUESTER]
        self.assertEqual(errorCondition(answer), ("remote-server-timeout", "wait"))


class LockedRedisTests(ClusterTests):
    """
    The same rules against a Redis locked as docs/instances.md says: the
    default user has a password (requirepass) the processes do not know,
    and they authenticate as an ACL user that may run exactly the
    commands of L{ACL_COMMANDS} on the component's keys and channels. A
    command missing from the list fails these tests with NOPERM.
    """

    @defer.inlineCallbacks
    def setUp(self):
        rule = " ".join(["clientproxy", "on", ">" + ACL_PASSWORD] + aclRules(COMPONENT))
        self.redis = yield startRedis(self, password="default-pw", users=[rule])

    def redisURL(self):
        return "redis://clientproxy:%s@127.0.0.1:%d/0" % (ACL_PASSWORD, self.redis.port)

    def test_documented(self):
        """
        docs/instances.md gives the very ACL these tests run with.
        """
        line = " ".join(["ACL SETUSER clientproxy on >PASSWORD"] + aclRules("proxy.example.org"))
        docs = os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "instances.md")
        with open(docs, encoding="utf-8") as f:
            self.assertIn(line, f.read())

    @defer.inlineCallbacks
    def test_lease(self):
        """
        The lease's scripts (L{clientproxy.state.redis.lease}) run as the
        ACL user.
        """
        client = connect(self.redisURL())
        self.addCleanup(client.disconnect)
        keys = [prefixOf(COMPONENT) + "lease", prefixOf(COMPONENT) + "lease-epoch"]
        self.assertEqual((yield client.eval(TAKE, keys=keys, args=["n", 3000])), [1, "1 n"])
        self.assertEqual((yield client.eval(RENEW_SCRIPT, keys=keys, args=["1 n", 3000])), 1)
        self.assertEqual((yield client.eval(RELEASE, keys=keys[:1], args=["1 n"])), 1)

    @defer.inlineCallbacks
    def test_nothingElse(self):
        """
        The ACL user can touch no other key, no other channel, and no
        command off the list; the default user is refused without its
        password.
        """
        client = connect(self.redisURL())
        self.addCleanup(client.disconnect)
        for command in (
            ("GET", "other:key"),
            ("SET", "clientproxy:other.example.org:x", "1"),
            ("PUBLISH", "other", "x"),
            ("TYPE", "clientproxy:%s:x" % (COMPONENT,)),
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "requirepass"),
        ):
            with self.assertRaises(RedisError) as caught:
                yield client.execute(*command)
            self.assertTrue(str(caught.exception).startswith("NOPERM"), command)
        anonymous = connect(self.redis.url.replace("redis://", "redis://:wrong@"))
        self.addCleanup(anonymous.disconnect)
        yield waitFor(lambda: anonymous.problem, "the wrong password refused")
        self.assertIn("WRONGPASS", anonymous.problem)


class TLSClusterTests(ClusterTests):
    """
    The same rules with Redis reached over TLS (C{rediss://}, its
    certificate checked against the throwaway CA) and a password.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.redis = yield startRedis(self, password="tls-pw", tls=True)

    def redisURL(self):
        return parseURL("rediss://:tls-pw@127.0.0.1:%d/0" % (self.redis.tlsPort,)).with_(
            caFile=self.redis.caFile
        )


class ResyncTests(SharedProcesses):
    """
    What a process does when its subscriber connection comes back, and
    what /readyz says of a Redis that refuses it.
    """

    @defer.inlineCallbacks
    def test_resyncAfterResubscribing(self):
        """
        The subscriber connection killed (as a half-open link dropped at
        its deadline would be): once subscribed again, the process reads
        the store's counts back (a subscriber added by another meanwhile is
        counted), probes the target's presence, and is not ready until both
        are done.
        """
        a, b = yield self.processes(2)
        listener = a.handlers.cluster.listener
        admin = connect(self.redis.url)
        self.addCleanup(admin.disconnect)
        ids = yield admin.execute("CLIENT", "LIST", "TYPE", "pubsub")
        # a's listener was made first: the lower id.
        first = min(int(line.split(" ")[0][3:]) for line in ids.splitlines())
        yield admin.execute("CLIENT", "KILL", "ID", first)
        yield waitFor(lambda: not listener.subscribed, "the subscription lost")
        self.assertIn("Redis channels subscribed", " ".join(readinessOf(a)))
        b.handlers.store.addSubscriber("bob@example.org")
        yield b.handlers.store.redis.execute("PING")
        yield waitFor(lambda: listener.subscriptions == 2, "subscribed again")
        yield waitFor(lambda: a.handlers.cluster.synced, "resynced")
        self.assertEqual(readinessOf(a), [])
        self.assertTrue(a.handlers.store.isSubscriber("bob@example.org"))
        probes = [s for s in a.take() if s.name == "presence" and s.getAttribute("type") == "probe"]
        self.assertEqual([p["to"] for p in probes], [TARGET])

    @defer.inlineCallbacks
    def test_wrongPasswordNamed(self):
        """
        A Redis that refuses the password: /readyz names WRONGPASS.
        """
        yield self.redis.stop()
        self.redis.password = "right"
        yield self.redis.start()
        self.redisURL = lambda: self.redis.url.replace("redis://", "redis://:wrong@")
        a = self.process("A")
        yield waitFor(lambda: a.handlers.cluster.redis.problem, "the password refused")
        a.clock.advance(HEARTBEAT)
        a.clock.advance(HEARTBEAT)
        unmet = " ".join(readinessOf(a))
        self.assertIn("Redis accepting this process (WRONGPASS", unmet)
        self.assertIn("Redis answering", unmet)
        self.assertNotIn(":wrong", unmet)
