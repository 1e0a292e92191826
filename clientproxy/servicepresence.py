# -*- test-case-name: tests.test_servicepresence -*-
"""
The service's own presence, for entities outside the target.

Anyone may subscribe to the component: it approves, remembers the
subscriber (in L{clientproxy.store}), and shows the service as available
while at least one usable resource of the target is, unavailable otherwise:
one presence per change of that state, not one per resource. Probes from
subscribers are answered with the current state.

Presence is never answered with an error, and errors are never answered at
all, so bounces cannot start loops. Presence of the target itself is
L{clientproxy.presence.TargetPresence}'s.
"""

from twisted.logger import Logger
from wokkel.subprotocols import XMPPHandler

from clientproxy.presence import presenceStanza
from clientproxy.stanzas import splitJID


class ServicePresence(XMPPHandler):
    """
    @ivar available: the state last shown to subscribers.
    """

    log = Logger()

    def __init__(self, component, target, resources, store, stats, policy):
        XMPPHandler.__init__(self)
        self.policy = policy
        self.component = component
        self.target = target
        self.resources = resources
        self.store = store
        self.stats = stats
        self.available = False
        resources.whenAdded(self._changed)
        resources.whenRemoved(self._changed)

    def connectionInitialized(self):
        # After TargetPresence, which takes the target's own presence.
        self.xmlstream.addObserver("/presence", self.onPresence, priority=-1)
        self.available = False

    def connectionLost(self, reason):
        self.available = False

    def shutdown(self):
        """
        Show subscribers the service going away.
        """
        self._show(False)

    def current(self, recipient):
        """
        The service's presence as it is now, for C{recipient}.
        """
        return presenceStanza(self.component, recipient, None if self.available else "unavailable")

    def _changed(self, resource):
        self._show(len(self.resources) > 0)

    def _show(self, available):
        """
        Tell every subscriber when the service's state changes.
        """
        if available == self.available:
            return
        self.available = available
        subscribers = self.store.subscribers()
        for subscriber in subscribers:
            self.send(self.current(subscriber))
        self.stats.presence["broadcasts"] += 1
        self.log.info(
            "The service is {state}; told {count} subscribers",
            state="available" if available else "unavailable",
            count=len(subscribers),
        )

    def onPresence(self, presence):
        if presence.handled:
            return
        presence.handled = True
        sender = presence.getAttribute("from")
        if not sender:
            self.stats.drop(presence, "no-address")
            return
        bare = splitJID(sender)[0]
        kind = presence.getAttribute("type")
        if bare == self.target:
            self.stats.drop(presence, "presence-from-target")
        elif kind in ("subscribe", "probe") and self.policy.refusal(sender) is not None:
            # Denied (told so) or too fast (dropped: a flood gets no answers).
            if not self.policy.permits(sender):
                self.send(presenceStanza(self.component, bare, "unsubscribed"))
                self.stats.presence["subscriptions-refused"] += 1
            else:
                self.stats.drop(presence, "presence-too-fast")
        elif kind == "subscribe":
            self.store.addSubscriber(bare)
            self.send(presenceStanza(self.component, bare, "subscribed"))
            self.send(self.current(bare))
            self.stats.presence["subscribed"] += 1
        elif kind == "unsubscribe":
            self.store.removeSubscriber(bare)
            self.send(presenceStanza(self.component, bare, "unsubscribed"))
            self.stats.presence["unsubscribed"] += 1
        elif kind == "probe":
            if self.store.isSubscriber(bare):
                self.send(self.current(sender))
                self.stats.presence["probes-answered"] += 1
            else:
                self.send(presenceStanza(self.component, bare, "unsubscribed"))
                self.stats.presence["probes-refused"] += 1
        else:
            # available, unavailable, subscribed, unsubscribed, error:
            # nothing to do, and nothing to answer.
            self.stats.drop(presence, "presence-from-outsider")
