"""
Jitsi Meet's conference focus behind the component, on each real server:
conference requests shaped as lib-jitsi-meet sends them, a jicofo-shaped
client answering them after a delay like a room join, with its application
errors (L{clientproxy.testing.jicofo}). With C{--hold} and the focus
namespace C{--idempotent}: a focus that restarts while users join, a focus
that leaves with joins in flight while another is online, two focuses with
each room on one, a session of the focus account that does not advertise
the focus namespace, and the focus's own errors.
"""

from twisted.internet import defer, reactor, task

from clientproxy.testing.client import supporting
from clientproxy.testing.jicofo import (
    NS_FOCUS,
    Focus,
    applicationError,
    conferenceOf,
    conferenceRequest,
)
from tests.helpers import errorCondition
from tests.integration import COMPONENT, DOMAIN, TARGET, onEveryServer, withTimeout

#: The options of contrib/jitsi/clientproxy.toml that matter here.
JITSI = {"hold": 20, "idempotent": [NS_FOCUS], "affinity": "attribute:room"}

#: What the focus names itself by (its bare JID).
FOCUS_JID = TARGET

#: Seconds the focus is gone while it restarts.
RESTART = 3.0


def room(n):
    return "room%d@conference.%s" % (n, DOMAIN)


def errorOf(stanza):
    """
    The C{<error/>} of an error stanza as the service wrote it: its
    attributes and each child as XML.
    """
    [error] = [c for c in stanza.elements() if c.name == "error"]
    return dict(error.attributes), [c.toXml() for c in error.children]


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class JitsiTests:
    """
    The focus behind the component, as a Jitsi deployment runs it.
    """

    timeout = 60

    @defer.inlineCallbacks
    def users(self, count):
        """
        C{count} users, each a session of its own (of two accounts, so
        that the requesters differ in bare JID too).
        """
        users = []
        for n in range(count):
            users.append((yield self.connect(("alice", "bob")[n % 2], "user%d" % (n,))))
        return users

    def join(self, user, n, **kwargs):
        """
        User C{user} joins room C{n}: its conference request, with a token
        as a deployment with JWTs sends it; a Deferred of the answer.
        """
        return user.sendRequest(
            conferenceRequest(COMPONENT, room(n), token="eyJ.token.%d" % (n,), **kwargs)
        )

    def assertJoined(self, replies, rooms):
        """
        Each reply is a result holding the conference ready, for the room
        asked, from the component.
        """
        self.assertEqual(len(replies), len(rooms))
        for reply, n in zip(replies, rooms):
            self.assertEqual((reply["type"], reply["from"]), ("result", COMPONENT), reply.toXml())
            conference = conferenceOf(reply)
            self.assertEqual(
                (conference["room"], conference["ready"], conference["focusjid"]),
                (room(n), "true", FOCUS_JID),
            )

    def assertAnsweredOnce(self, users, proxy):
        """
        Every user got one answer per request it sent, and nothing is left
        in flight.
        """
        for user in users:
            ids = [r["id"] for r in user.replies if conferenceOf(r) or r["type"] == "error"]
            self.assertEqual(len(ids), len(set(ids)), ids)
        self.assertEqual(len(proxy.dispatcher.pending), 0)

    @defer.inlineCallbacks
    def test_focusRestartsWhileTenJoin(self):
        """
        The focus restarts (gone for 3 s) while ten users join: the three
        whose requests it held when it stopped and the seven who asked
        while it was gone each get their conference once it is back, each
        once, none an error.
        """
        slow = Focus(FOCUS_JID, delay=None)
        old = yield self.connect("svc", "focus", onRequest=slow)
        proxy = yield self.startProxy(resources=1, **JITSI)
        users = yield self.users(10)
        answers = [self.join(users[n], n) for n in range(3)]
        yield self.waitUntil(lambda: len(slow.requests) == 3, "the focus to hold three joins")
        stopped = reactor.seconds()
        yield old.disconnect()
        yield self.resourcesKnown(proxy, 0)
        for n in range(3, 10):
            answers.append(self.join(users[n], n))
            yield sleep(0.25)
        yield sleep(max(0, stopped + RESTART - reactor.seconds()))
        self.assertEqual([a.called for a in answers], [False] * 10)
        self.assertEqual(proxy.dispatcher.pending.lineLength, 10)
        focus = Focus(FOCUS_JID)
        yield self.connect("svc", "focus", onRequest=focus)
        replies = yield withTimeout(defer.gatherResults(answers), what="ten joins")
        self.assertJoined(replies, range(10))
        self.assertEqual(sorted(focus.conferences), sorted(room(n) for n in range(10)))
        self.assertEqual([len(r) for r in focus.conferences.values()], [1] * 10)
        self.assertAnsweredOnce(users, proxy)
        requests = proxy.stats.requests
        self.assertEqual(
            (requests["held-again"], requests["held"], requests["sent-from-line"]), (3, 7, 10)
        )

    @defer.inlineCallbacks
    def test_focusLeavesWithJoinsInFlight(self):
        """
        A focus leaves with joins in flight while another is online: every
        join gets its result from the other, at once.
        """
        leaving = Focus(FOCUS_JID, delay=None)
        first = yield self.connect("svc", "focus1", onRequest=leaving)
        proxy = yield self.startProxy(resources=1, **JITSI)
        users = yield self.users(10)
        answers = [self.join(user, n) for n, user in enumerate(users)]
        yield self.waitUntil(lambda: len(leaving.requests) == 10, "the first focus to hold them")
        other = Focus(FOCUS_JID)
        yield self.connect("svc", "focus2", onRequest=other)
        yield self.resourcesKnown(proxy, 2)
        yield first.disconnect()
        replies = yield withTimeout(defer.gatherResults(answers), what="ten joins")
        self.assertJoined(replies, range(10))
        self.assertEqual(sorted(other.conferences), sorted(room(n) for n in range(10)))
        self.assertEqual(proxy.stats.requests["retried"], 10)
        self.assertAnsweredOnce(users, proxy)

    @defer.inlineCallbacks
    def test_eachRoomOnOneFocus(self):
        """
        Two focuses with --affinity attribute:room: every join of a room
        goes to one focus; when one leaves, only its rooms move, to the
        other.
        """
        focuses = {"focus1": Focus(FOCUS_JID, delay=0), "focus2": Focus(FOCUS_JID, delay=0)}
        sessions = {}
        for name, focus in focuses.items():
            sessions[name] = yield self.connect("svc", name, onRequest=focus)
        proxy = yield self.startProxy(resources=2, **JITSI)
        [user] = yield self.users(1)

        @defer.inlineCallbacks
        def placement(rooms):
            for _ in range(2):
                for n in rooms:
                    reply = yield withTimeout(self.join(user, n))
                    self.assertJoined([reply], [n])
            where = {}
            for name, focus in focuses.items():
                for asked in focus.conferences:
                    where.setdefault(asked, set()).add(name)
                focus.conferences.clear()
            self.assertTrue(all(len(names) == 1 for names in where.values()), where)
            return {asked: names.pop() for asked, names in where.items()}

        first = yield placement(range(12))
        self.assertEqual(set(first.values()), {"focus1", "focus2"})
        yield sessions["focus1"].disconnect()
        yield self.resourcesKnown(proxy, 1)
        second = yield placement(range(12))
        moved = {r for r in first if first[r] != second[r]}
        self.assertEqual(moved, {r for r in first if first[r] == "focus1"})

    @defer.inlineCallbacks
    def test_otherSessionNeverAsked(self):
        """
        Another session of the focus account that does not advertise the
        focus namespace never gets a conference request: with the
        defaults while the focus (which advertises it) is online, and with
        --match-features strict while the focus restarts too (the joins
        wait for it).
        """
        focus = Focus(FOCUS_JID, delay=0, advertise=True)
        session = yield self.connect("svc", "focus", onRequest=focus, caps=focus.caps)
        admin = yield self.connect("svc", "admin", onRequest=supporting([]))
        proxy = yield self.startProxy(resources=2, matchFeatures="strict", **JITSI)
        yield self.waitUntil(
            lambda: all(r.features is not None for r in proxy.dispatcher.resources.available),
            "the resources' features to be learnt",
        )
        users = yield self.users(4)
        replies = yield withTimeout(
            defer.gatherResults([self.join(user, n) for n, user in enumerate(users)])
        )
        self.assertJoined(replies, range(4))
        yield session.disconnect()
        yield self.resourcesKnown(proxy, 1)
        answers = [self.join(user, n + 4) for n, user in enumerate(users)]
        yield self.waitUntil(lambda: proxy.dispatcher.pending.lineLength == 4, "four joins waiting")
        back = Focus(FOCUS_JID, delay=0, advertise=True)
        yield self.connect("svc", "focus", onRequest=back, caps=back.caps)
        replies = yield withTimeout(defer.gatherResults(answers), what="the joins that waited")
        self.assertJoined(replies, range(4, 8))
        self.assertEqual([iq for iq in admin.requests if conferenceOf(iq) is not None], [])

    @defer.inlineCallbacks
    def test_applicationErrorsReachTheUser(self):
        """
        The focus's own errors (a reservation refused: service-unavailable
        with <reservation-error/>; an unknown session: not-acceptable with
        <session-invalid/>) reach the user as the focus wrote them, and
        are not taken for refusals: no other focus is asked.
        """
        focuses = [Focus(FOCUS_JID, delay=0), Focus(FOCUS_JID, delay=0)]
        for focus in focuses:
            focus.reserved[room(1)] = (403, "Room reserved for someone else")
        for n, focus in enumerate(focuses):
            yield self.connect("svc", "focus%d" % (n,), onRequest=focus)
        proxy = yield self.startProxy(resources=2, **dict(JITSI, affinity="none"))
        users = yield self.users(4)
        reserved = yield withTimeout(defer.gatherResults([self.join(u, 1) for u in users]))
        invalid = yield withTimeout(
            defer.gatherResults([self.join(u, 2, sessionID="stale") for u in users])
        )
        written = {}
        for focus in focuses:
            for request, answer in zip(focus.requests, focus.answers):
                written[conferenceOf(request)["room"]] = answer
        for n, replies in ((1, reserved), (2, invalid)):
            for reply in replies:
                self.assertEqual(reply["type"], "error")
                self.assertEqual(errorOf(reply), errorOf(written[room(n)]))
        self.assertEqual(applicationError(reserved[0]).name, "reservation-error")
        self.assertEqual(applicationError(reserved[0])["error-code"], "403")
        self.assertEqual(applicationError(invalid[0]).uri, NS_FOCUS)
        self.assertEqual(errorCondition(invalid[0]), ("not-acceptable", "modify"))
        self.assertEqual(sum(len(f.requests) for f in focuses), 8)
        self.assertEqual(proxy.stats.requests["refused"], 0)
        self.assertAnsweredOnce(users, proxy)


globals().update(onEveryServer(JitsiTests))
