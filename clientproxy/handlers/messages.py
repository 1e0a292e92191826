# -*- test-case-name: tests.test_messages -*-
"""
Messages through the component: every client of the target sees the whole
conversation with a peer (the multi-client problem xmpproxy described).

Incoming, fanned out::

    alice@example.org/abc -> proxy.example.org          <message>Hi</message>
    proxy.example.org/alice@example.org/abc -> svc@example.org/a   the same,
    proxy.example.org/alice@example.org/abc -> svc@example.org/b   to each

Each copy carries XEP-0280's <private/> and XEP-0334's <no-copy/>, so the
server adds no carbon copies of its own and no client sees a message twice.
While no resource is available, messages are queued (persistently, see
L{clientproxy.state.sqlite}), with a XEP-0203 delay stamp, and delivered in order
to the resources available when one comes online.

Outgoing, routed and mirrored::

    svc@example.org/a -> proxy.example.org/alice@example.org/abc   <message>Hello
    proxy.example.org -> alice@example.org/abc                      the same
    proxy.example.org/alice@example.org/abc -> svc@example.org/b   a mirror

The mirror shows that resource a sent that message to that peer: the
original inside a XEP-0297 <forwarded/> wrapper, and a plain body
C{[svc@example.org/a -> alice@example.org/abc] Hello} for clients that do
not read the wrapper. Mirrored are the messages XEP-0280 would copy: type
chat, and type normal (or no type) with a body; not groupchat, headline or
error messages, and not those the sending client marked <private/> or
<no-copy/>.

Errors: an error message from a peer (a bounce of something sent to it) goes
to the target's resources, never back to the peer; an error message from
the target is dropped. Errors are never answered with errors.
"""

import datetime

from twisted.logger import Logger
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from clientproxy.xmpp.jat import Translator
from clientproxy.handlers.refusal import refuse
from clientproxy.routing.errors import (
    INTERNAL,
    NOT_A_PEER,
    NOT_A_RESOURCE,
    QUEUE_FULL,
    TOO_LARGE,
)
from clientproxy.xmpp.writer import parseStanza, toXml
from clientproxy.xmpp.stanzas import FROM_TARGET, NO_ADDRESS, bareOf, sort

NS_CARBONS = "urn:xmpp:carbons:2"
NS_HINTS = "urn:xmpp:hints"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_CLIENT = "jabber:client"
NS_COMPONENT = "jabber:component:accept"
#: What the stanzas' own elements (body, subject, thread) may be in.
STANZA_URIS = (NS_COMPONENT, NS_CLIENT, None, "")
#: The namespaces of the component's stream, as a parsed element has it
#: (or as one built here, with none): jabber:client inside <forwarded/>.
STREAM_URIS = (NS_COMPONENT, None)

#: Default bounds of the queue of messages for an offline target.
QUEUE_PER_SENDER = 100
QUEUE_SIZE = 10000

#: Queued messages delivered in one turn of the reactor.
DELIVERY_BATCH = 50


def utcStamp(clock):
    """
    A XEP-0082 date-time for now, by C{clock}.
    """
    moment = datetime.datetime.fromtimestamp(clock.seconds(), datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def isMarked(message):
    """
    Whether a message carries <private/> (XEP-0280) or <no-copy/> (XEP-0334).
    """
    for child in message.elements():
        if (child.uri, child.name) in ((NS_CARBONS, "private"), (NS_HINTS, "no-copy")):
            return True
    return False


def unmark(message):
    """
    Remove <private/> and <no-copy/> from a message.
    """
    message.children = [
        child
        for child in message.children
        if not (
            isinstance(child, domish.Element)
            and (child.uri, child.name) in ((NS_CARBONS, "private"), (NS_HINTS, "no-copy"))
        )
    ]


def mark(message):
    """
    Add <private/> and <no-copy/>, so the server makes no carbon copies.
    """
    if not isMarked(message):
        message.addElement((NS_CARBONS, "private"))
        message.addElement((NS_HINTS, "no-copy"))


def bodyOf(message):
    for child in message.elements():
        if child.name == "body" and child.uri in STANZA_URIS:
            return str(child)
    return None


def isMirrored(message):
    """
    Whether an outgoing message is mirrored to the other resources (the
    messages XEP-0280 would copy).
    """
    kind = message.getAttribute("type", "normal")
    if kind == "chat":
        return not isMarked(message)
    if kind == "normal":
        return bodyOf(message) is not None and not isMarked(message)
    return False


def asClient(element):
    """
    A copy of C{element} in which elements of the stream's namespace are in
    jabber:client, as a message inside <forwarded/> must be; elements of
    any other namespace (none included) keep theirs. Copied with an
    explicit stack: a payload may be nested deeper than Python recurses.
    """

    def copyOf(original):
        uri = NS_CLIENT if original.uri in STREAM_URIS else original.uri
        default = original.defaultUri
        if default in STREAM_URIS:
            default = NS_CLIENT
        copy = domish.Element((uri, original.name), defaultUri=default)
        copy.attributes = dict(original.attributes)
        copy.localPrefixes = dict(original.localPrefixes)
        return copy

    root = copyOf(element)
    stack = [(element, root)]
    while stack:
        original, copy = stack.pop()
        for child in original.children:
            if isinstance(child, domish.Element):
                childCopy = copyOf(child)
                copy.addChild(childCopy)
                stack.append((child, childCopy))
            else:
                copy.addChild(child)
    return root


class MessageRouter(XMPPHandler):
    """
    Fans incoming messages out to the target's resources, routes and
    mirrors their outgoing ones, and queues messages while the target is
    offline.
    """

    log = Logger()

    def __init__(
        self,
        component,
        target,
        resources,
        store,
        stats,
        clock,
        policy,
        queuePerSender=QUEUE_PER_SENDER,
        queueSize=QUEUE_SIZE,
    ):
        XMPPHandler.__init__(self)
        self.policy = policy
        self.jat = Translator(component)
        self.target = target
        self.resources = resources
        self.store = store
        self.stats = stats
        self.clock = clock
        self.queuePerSender = queuePerSender
        self.queueSize = queueSize
        self._draining = False
        resources.whenAdded(self._resourceAdded)

    def configure(self, queuePerSender, queueSize):
        """
        Change the queue's bounds (a reload): what is queued stays.
        """
        self.queuePerSender = queuePerSender
        self.queueSize = queueSize

    def connectionInitialized(self):
        self.xmlstream.addRoute("message", self.onMessage)

    def onMessage(self, message):
        sorted = sort(message, self.target)
        if sorted is None:
            return
        side, sender, recipient, kind = sorted
        if side is NO_ADDRESS:
            self.stats.drop(message, "no-address")
        elif side is FROM_TARGET:
            if kind == "error":
                self.stats.drop(message, "error-from-target")
            else:
                self._outgoing(message, sender, recipient)
        elif kind == "error":
            self._bounce(message, sender)
        else:
            self._incoming(message, sender)

    def _incoming(self, message, sender):
        refusal = self.policy.admit(sender, message)
        if refusal is not None:
            self._refuse(message, refusal)
            return
        recipient = message["to"]
        available = self.resources.available if not self._draining else []
        message["from"] = self.jat.address(self.jat.encode(sender))
        message["to"] = available[0].jid if available else self.target
        mark(message)
        # Serialised once for the size check as sent (the addresses and
        # markers add to it) and the first copy.
        first = toXml(message)
        if self.policy.tooLarge(first):
            message["from"], message["to"] = sender, recipient
            self._refuse(message, TOO_LARGE)
            return
        if available:
            self._fanOut(message, available, first)
            self.stats.messages["fanned-out"] += 1
        else:
            self._enqueue(message, sender)

    def _fanOut(self, message, resources, first=None):
        """
        Send C{message} to each of C{resources}; C{first} is its
        serialisation addressed to the first of them, when the size check
        made it already.
        """
        for resource in resources:
            if first is not None:
                self.send(first)
                first = None
                continue
            message["to"] = resource.jid
            self.send(toXml(message))

    def _enqueue(self, message, sender):
        delay = message.addElement((NS_DELAY, "delay"))
        delay["from"] = self.jat.component
        delay["stamp"] = utcStamp(self.clock)
        message["to"] = self.target
        d = self.store.enqueue(bareOf(sender), toXml(message), self.queueSize, self.queuePerSender)
        d.addCallbacks(self._enqueued, self._notQueued, (message, sender), None, (message, sender))

    def _enqueued(self, refusal, message, sender):
        if refusal is None:
            self.stats.messages["queued"] += 1
        else:
            self._queueFull(message, sender, refusal)

    def _notQueued(self, failure, message, sender):
        """
        The store failed to keep a message (a full disk, Redis refusing a
        write): logged, at most a line every
        L{clientproxy.ops.throttle.INTERVAL} seconds with its traceback, and
        the sender answered C{internal-server-error}.
        """
        unlogged = self.stats.throttle("queue-failed")
        if unlogged is not None:
            self.log.failure(
                "Queueing a message from {sender} failed ({unlogged} more since the last "
                "such line)",
                failure,
                sender=sender,
                unlogged=unlogged,
            )
        message["from"], message["to"] = sender, self.jat.component
        self._refuse(message, INTERNAL)

    def _queueFull(self, message, sender, why):
        """
        Refuse a message the queue has no room for, and log it: at most
        one line every L{clientproxy.ops.throttle.INTERVAL} seconds (with the
        count of those not logged since), so a peer flooding an offline
        target cannot flood the log; the counter counts them all.
        """
        unlogged = self.stats.throttle("queue-full")
        if unlogged is not None:
            self.log.warn(
                "Message from {sender} refused with resource-constraint: {why} "
                "(no resource of the target available; {unlogged} more since the "
                "last such line)",
                sender=sender,
                why=why,
                unlogged=unlogged,
            )
        # Answered from the component's bare JID, whatever it was sent to.
        message["from"], message["to"] = sender, self.jat.component
        self._refuse(message, QUEUE_FULL)

    def _resourceAdded(self, resource, origin):
        """
        A resource came online: deliver the queue, in order, to the
        resources available then, and forget what was delivered.

        The queue may hold thousands of large messages: they are read,
        parsed and sent L{DELIVERY_BATCH} at a time, one batch per turn of
        the reactor, so other stanzas are served in between. Messages that
        arrive meanwhile join the end of the queue, to keep the order.
        """
        if origin is None:
            # With several processes, the one that received the presence
            # delivers (clientproxy.state.interfaces.IFacts).
            self.deliverQueued()

    def deliverQueued(self):
        """
        Deliver the queue if there is one and a resource to take it (also
        once the store has been read back on a new connection: another
        process may have queued meanwhile).
        """
        if not self._draining and self.resources.available and self.store.queueLength():
            self._draining = True
            self._deliverBatch()

    def _deliverBatch(self):
        d = self.store.queued(DELIVERY_BATCH)
        d.addCallback(self._sendBatch)
        d.addErrback(self._batchFailed)

    def _batchFailed(self, failure):
        self._draining = False
        self.log.failure(
            "Delivering the queued messages failed; those not delivered stay queued", failure
        )

    def _sendBatch(self, batch):
        if not self.resources.available:
            # Every resource left again: the rest stays queued.
            self._draining = False
            self.store.giveBack(batch)
            return
        for _, stanza in batch:
            self._fanOut(parseStanza(stanza), self.resources.available)
        self.store.delivered([ident for ident, _ in batch])
        self.stats.messages["delivered-from-queue"] += len(batch)
        if len(batch) == DELIVERY_BATCH:
            self.clock.callLater(0, self._deliverBatch)
        else:
            self._draining = False
            self.log.info("Delivered the queued messages")

    def _outgoing(self, message, sender, recipient):
        encoded = self.jat.decode(recipient)
        if encoded is None:
            self.stats.drop(message, "message-from-target-to-component")
            return
        peer = self.jat.peer(encoded)
        if peer is None:
            self._refuse(message, NOT_A_PEER)
            return
        if sender not in self.resources:
            self._refuse(message, NOT_A_RESOURCE)
            return
        others = [r for r in self.resources.available if r.jid != sender]
        mirror = self._mirror(message, sender, peer) if others and isMirrored(message) else None
        unmark(message)
        message["from"] = self.jat.component
        message["to"] = peer
        self.send(toXml(message))
        self.stats.messages["routed"] += 1
        if mirror is not None:
            mirror["from"] = self.jat.address(peer)
            for other in others:
                mirror["to"] = other.jid
                self.send(toXml(mirror))
            self.stats.messages["mirrored"] += 1

    def _mirror(self, message, sender, peer):
        """
        Build the copy that the other resources get of a message C{sender}
        sent to C{peer}.
        """
        original = asClient(message)
        original["from"] = sender
        original["to"] = peer
        mirror = domish.Element((None, "message"))
        kind = message.getAttribute("type")
        if kind is not None:
            mirror["type"] = kind
        body = bodyOf(message)
        if body is not None:
            mirror.addElement("body", content="[%s -> %s] %s" % (sender, peer, body))
        forwarded = mirror.addElement((NS_FORWARD, "forwarded"))
        forwarded.addElement((NS_DELAY, "delay"))["stamp"] = utcStamp(self.clock)
        forwarded.addChild(original)
        mark(mirror)
        return mirror

    def _bounce(self, message, sender):
        """
        An error message from a peer: it concerns something the target
        sent, so it goes to the target's resources (never back to the peer),
        marked like any incoming copy. It passes the same admission as other
        messages (access lists, rate, size), but a refusal is a drop, never
        an answer: errors are not answered.
        """
        refusal = self.policy.admit(sender, message)
        if refusal is not None:
            self._refuse(message, refusal)
            return
        available = self.resources.available
        if not available:
            self.stats.drop(message, "error-from-peer-undeliverable")
            return
        message["from"] = self.jat.address(self.jat.encode(sender))
        message["to"] = available[0].jid
        mark(message)
        first = toXml(message)
        if self.policy.tooLarge(first):
            self._refuse(message, TOO_LARGE)
            return
        self._fanOut(message, available, first)
        self.stats.messages["bounces-to-target"] += 1

    def _refuse(self, message, refusal):
        """
        Answer a message refused with C{refusal} (L{refuse}).
        """
        refuse(self, message, refusal, self.stats.messages)
