# -*- test-case-name: tests.test_integration_jitsi -*-
"""
Jitsi Meet's conference request, both ends, for the integration tests and
the Jitsi demo: requests shaped as lib-jitsi-meet sends them
(L{conferenceRequest}), and a client shaped as Jitsi's conference focus,
jicofo, answers them (L{Focus}), on top of the plain connections of
L{clientproxy.testing.client}.

The shapes were read from the sources (nothing of them is copied here):

 - lib-jitsi-meet, C{modules/xmpp/moderator.ts} (C{_createConferenceIq}):
   an IQ C{set} to C{focus.<domain>} holding C{<conference
   xmlns='http://jitsi.org/protocol/focus'>} with the attributes C{room}
   (the room's bare JID), C{machine-uid}, C{token} (the JWT, when the
   deployment uses tokens: an attribute, not a C{<property/>}) and
   C{session-id} (once the focus gave one), and one C{<property name=
   value=/>} per option (C{rtcstatsEnabled}, C{visitors-version}, the
   start-muted flags). It sets no timeout on it, and takes any error but
   C{not-authorized}, C{session-invalid}/C{not-acceptable} (retried while
   the back-off is under 60 s) and C{<reservation-error/>} for a failed
   join.
 - jicofo, C{ConferenceIqHandler.kt}: it answers once it has made (or
   found) the conference, with a result holding C{<conference room=
   ready='true' focusjid='focus@auth.<domain>'>} and C{<property/>}s
   (C{authentication}, ...); C{bad-request} without a room. Its
   C{ErrorFactory}: C{not-acceptable} with C{<session-invalid
   xmlns='http://jitsi.org/protocol/focus'/>} for a session id it does not
   know, and C{service-unavailable} with C{<reservation-error
   xmlns='http://jitsi.org/protocol/focus' error-code='N'/>} and a text for
   a room its reservation system refuses. A second request for a room
   gets the same conference: the request is idempotent for a room.
 - jicofo reads the requester from the address the request comes from
   when it is C{focus.<domain>/<requester>} (C{client-proxy} in its
   configuration): mod_client_proxy's encoding, which clientproxy keeps.
"""

import itertools
import os

from twisted.internet import reactor as globalReactor, task
from twisted.words.xish import domish

from clientproxy.testing.client import (
    NS_STANZAS,
    capsFor,
    requestFor,
    resultFor,
    supporting,
)
from clientproxy.testing.prosody import ThrowawayProsody

NS_FOCUS = "http://jitsi.org/protocol/focus"

#: The deployment to copy (a checkout's contrib/jitsi).
CONTRIB = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "contrib", "jitsi"
)

#: What matters here of the host file jitsi-meet-prosody writes: the domain
#: of jicofo's account, and the focus address served by mod_client_proxy.
JITSI_HOST = """\
-- As jitsi-meet-prosody declares the focus address (mod_client_proxy).
VirtualHost "auth.{domain}"
Component "focus.{domain}" "client_proxy"
    target_address = "focus@auth.{domain}"
"""

#: The names of the two files in the throwaway Prosody's directory.
JITSI_FILES = {"jitsi": "jitsi-meet.cfg.lua", "clientproxy": "focus-clientproxy.cfg.lua"}

#: The properties lib-jitsi-meet sends with the defaults of a web client.
DEFAULT_PROPERTIES = (("rtcstatsEnabled", "false"), ("visitors-version", "1"))

_machines = itertools.count()


def fill(text, edits):
    """
    C{text} with each C{(old, new)} of C{edits} made once; each C{old} must
    be there (the file it comes from changed otherwise).
    """
    for old, new in edits:
        if old not in text:
            raise ValueError("%r is not in the file any more" % (old,))
        text = text.replace(old, new, 1)
    return text


def jitsiProsody(secretFile, order=("jitsi", "clientproxy"), **kwargs):
    """
    A throwaway Prosody laid out as a Jitsi Meet host with clientproxy:
    jitsi-meet-prosody's declaration of the focus address (L{JITSI_HOST})
    and contrib/jitsi/focus-clientproxy.cfg.lua as an operator installs it
    (the domain and the secret's file filled in; its component port made
    the throwaway server's), included in C{order} (names of
    L{JITSI_FILES}). The focus account is C{focus@auth.<domain>}; register
    it with C{register("focus", password, host="auth." + domain)}.

    @param kwargs: for L{ThrowawayProsody}.
    @rtype: L{ThrowawayProsody}
    """
    server = ThrowawayProsody({}, includes=[JITSI_FILES[name] for name in order], **kwargs)
    with open(os.path.join(CONTRIB, "focus-clientproxy.cfg.lua"), encoding="utf-8") as f:
        ours = fill(
            f.read(),
            [
                ('"meet.example.org"', '"%s"' % (server.domain,)),
                ('"/etc/clientproxy/focus.secret"', '"%s"' % (secretFile,)),
                ("{ 5347 }", "{ %d }" % (server.componentPort,)),
            ],
        )
    for name, text in (("jitsi", JITSI_HOST.format(domain=server.domain)), ("clientproxy", ours)):
        with open(os.path.join(server.directory, JITSI_FILES[name]), "w", encoding="utf-8") as f:
            f.write(text)
    return server


def conferenceRequest(focus, room, machineUID=None, token=None, sessionID=None, properties=None):
    """
    A conference request as lib-jitsi-meet sends it: an IQ C{set} to
    C{focus} (C{focus.<domain>}) for C{room} (the room's bare JID).

    @param properties: C{(name, value)} pairs; L{DEFAULT_PROPERTIES} by
        default.
    @rtype: L{domish.Element}
    """
    conference = domish.Element((NS_FOCUS, "conference"))
    conference["machine-uid"] = machineUID or "machine%d" % (next(_machines),)
    conference["room"] = room
    if token is not None:
        conference["token"] = token
    if sessionID is not None:
        conference["session-id"] = sessionID
    for name, value in DEFAULT_PROPERTIES if properties is None else properties:
        conference.addElement("property").attributes.update({"name": name, "value": value})
    return requestFor(focus, conference, kind="set")


def conferenceOf(iq):
    """
    The C{<conference/>} of a request or an answer, or C{None}.
    """
    for child in iq.elements():
        if (child.uri, child.name) == (NS_FOCUS, "conference"):
            return child
    return None


def applicationError(stanza):
    """
    The application-specific condition of an error stanza (the child of
    C{<error/>} outside the stanzas namespace), or C{None}.
    """
    for error in stanza.elements():
        if error.name == "error":
            for child in error.elements():
                if child.uri != NS_STANZAS:
                    return child
    return None


class Focus:
    """
    A request handler (L{clientproxy.testing.client.Client.onRequest})
    shaped as jicofo: it answers a conference request after C{delay}
    seconds, as jicofo does once it has joined the room, with the
    conference ready; or with its application errors.

    @ivar focusJID: the bare JID it names itself by (C{focusjid}).
    @ivar reserved: rooms the reservation system refuses: room to
        C{(error code, text)}.
    @ivar sessions: session ids it knows; a request with another gets
        C{session-invalid}.
    @ivar conferences: room to the requesters asked for it, in order (as
        jicofo reads them from the proxied address).
    @ivar requests: every conference request received, in order.
    @ivar answers: every answer it gave (or will give) to them, in order.
    """

    def __init__(self, focusJID, delay=0.2, reactor=globalReactor, advertise=False):
        """
        @param delay: seconds before it answers; C{None}: never.
        @param advertise: whether the client says it supports the focus
            namespace (XEP-0115 caps in its presence, disco#info); see
            L{caps}. jicofo does not.
        """
        self.focusJID = focusJID
        self.delay = delay
        self.reactor = reactor
        self.reserved = {}
        self.sessions = set()
        self.conferences = {}
        self.requests = []
        self.answers = []
        features = [NS_FOCUS] if advertise else []
        self.caps = capsFor(features) if advertise else None
        self._handler = supporting(features, self._conference)

    def __call__(self, iq):
        return self._handler(iq)

    def _conference(self, iq):
        conference = conferenceOf(iq)
        if conference is None or iq.getAttribute("type") != "set":
            return self.error(iq, "feature-not-implemented", "cancel")
        self.requests.append(iq)
        room = conference.getAttribute("room")
        if room is None:
            return self.later(self.error(iq, "bad-request", "modify", "No 'room' specified."))
        requester = iq.getAttribute("from", "").partition("/")[2]
        self.conferences.setdefault(room, []).append(requester)
        session = conference.getAttribute("session-id")
        if session is not None and session not in self.sessions:
            return self.later(
                self.error(
                    iq,
                    "not-acceptable",
                    "modify",
                    "invalid session",
                    domish.Element((NS_FOCUS, "session-invalid")),
                )
            )
        if room in self.reserved:
            code, text = self.reserved[room]
            refusal = domish.Element((NS_FOCUS, "reservation-error"))
            refusal["error-code"] = str(code)
            return self.later(self.error(iq, "service-unavailable", "cancel", text, refusal))
        reply = resultFor(iq)
        answer = reply.addElement((NS_FOCUS, "conference"))
        answer["room"] = room
        answer["ready"] = "true"
        answer["focusjid"] = self.focusJID
        answer.addElement("property").attributes.update(
            {"name": "authentication", "value": "false"}
        )
        return self.later(reply)

    def later(self, reply):
        """
        C{reply}, after the focus's delay (a Deferred), or at once; or
        never, with no delay at all (C{None}: a focus that hangs, or stops
        before it answers).
        """
        self.answers.append(reply)
        if self.delay is None:
            return None
        if not self.delay:
            return reply
        return task.deferLater(self.reactor, self.delay, lambda: reply)

    @staticmethod
    def error(iq, condition, kind, text=None, application=None):
        """
        An error answer to C{iq} as jicofo's Smack writes one: the
        condition, its text, then the application-specific condition.
        """
        reply = resultFor(iq, "error")
        error = reply.addElement("error")
        error["type"] = kind
        error.addElement((NS_STANZAS, condition))
        if text is not None:
            error.addElement((NS_STANZAS, "text"), content=text)
        if application is not None:
            error.addChild(application)
        return reply
