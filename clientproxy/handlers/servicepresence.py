# -*- test-case-name: tests.test_servicepresence -*-
"""
The service's own presence, for entities outside the target.

Anyone may subscribe to the component: it approves, remembers the
subscriber (in L{clientproxy.state.sqlite}), and shows the service as available
while at least one usable resource of the target is, unavailable otherwise:
one presence per change of that state, not one per resource. Probes from
subscribers are answered with the current state.

Subscribers are bounded, in all and per domain (one remote domain can mint
any number of JIDs): a subscription request over either bound is dropped
and counted, not answered, since an answer to each stanza of a flood would
itself be an amplifier. Each admitted subscriber draws two presences (the
approval and the current state).

Presence is never answered with an error, and errors are never answered at
all, so bounces cannot start loops. Presence of the target itself is
L{clientproxy.handlers.targetpresence.TargetPresence}'s.
"""

from twisted.logger import Logger
from wokkel.subprotocols import XMPPHandler

from clientproxy.handlers.refusal import refuse
from clientproxy.xmpp.stanzas import (
    FROM_TARGET,
    NO_ADDRESS,
    bareOf,
    domainOf,
    presenceStanza,
    sort,
)

#: Default bounds of the service's subscribers: in all, and from one domain.
MAX_SUBSCRIBERS = 10000
MAX_SUBSCRIBERS_PER_DOMAIN = 1000


class ServicePresence(XMPPHandler):
    """
    @ivar available: the state last shown to subscribers.
    @ivar maxSubscribers: most subscribers in all (0: no bound).
    @ivar maxSubscribersPerDomain: most from one domain (0: no bound).
    """

    log = Logger()

    def __init__(
        self,
        component,
        target,
        resources,
        store,
        stats,
        policy,
        maxSubscribers=MAX_SUBSCRIBERS,
        maxSubscribersPerDomain=MAX_SUBSCRIBERS_PER_DOMAIN,
    ):
        XMPPHandler.__init__(self)
        self.maxSubscribers = maxSubscribers
        self.maxSubscribersPerDomain = maxSubscribersPerDomain
        self.policy = policy
        self.component = component
        self.target = target
        self.resources = resources
        self.store = store
        self.stats = stats
        self.available = False
        resources.whenAdded(self._changed)
        resources.whenRemoved(self._changed)

    def configure(self, maxSubscribers, maxSubscribersPerDomain):
        """
        Change the bounds on subscribers (a reload): those subscribed stay.
        """
        self.maxSubscribers = maxSubscribers
        self.maxSubscribersPerDomain = maxSubscribersPerDomain

    def connectionInitialized(self):
        # After TargetPresence, which takes the target's own presence.
        self.xmlstream.addRoute("presence", self.onPresence, priority=-1)
        self.available = False

    def connectionLost(self, reason):
        XMPPHandler.connectionLost(self, reason)
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

    def _admitsSubscriber(self, bare):
        """
        Whether C{bare} is, or may become, a subscriber within the bounds.
        """
        store = self.store
        if store.isSubscriber(bare):
            return True
        if self.maxSubscribers and store.subscriberCount() >= self.maxSubscribers:
            return False
        return not (
            self.maxSubscribersPerDomain
            and store.subscriberCount(domainOf(bare)) >= self.maxSubscribersPerDomain
        )

    def _changed(self, resource, origin):
        self._show(len(self.resources) > 0, tell=origin is None)

    def _show(self, available, tell=True):
        """
        Tell every subscriber when the service's state changes; not with
        C{tell} false: the change comes from presence another process
        received, which tells them (L{clientproxy.state.interfaces.IFacts}).
        """
        if available == self.available:
            return
        self.available = available
        if not tell:
            return
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
        """
        Presence to the service from outside: subscription requests and
        probes pass the admission policy first (a denied sender is told
        C{unsubscribed}; one too fast, or too large, is dropped: a flood
        gets no answers).
        """
        sorted = sort(presence, self.target)
        if sorted is None:
            return
        side, sender, _, kind = sorted
        if side is NO_ADDRESS:
            self.stats.drop(presence, "no-address")
            return
        if side is FROM_TARGET:
            self.stats.drop(presence, "presence-from-target")
            return
        bare = bareOf(sender)
        if kind in ("subscribe", "probe"):
            refusal = self.policy.admit(sender, presence)
            if refusal is not None:
                refuse(self, presence, refusal, self.stats.presence, self.component)
                return
        if kind == "subscribe" and not self._admitsSubscriber(bare):
            self.stats.drop(presence, "subscribers-over-limit")
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
