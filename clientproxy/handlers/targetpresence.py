# -*- test-case-name: tests.test_presence -*-
"""
Presence tracking of the target: which of its resources can take requests.

On every (re)connect the component asks the target for a presence
subscription. Once the subscription stands (a C{subscribed} arrives; a
server answers a repeated subscribe from a subscribed contact with
C{subscribed} too) it sends a probe, so resources that were online before
the component learnt of them are learnt as well. Probing earlier would be
wrong: Prosody answers a probe sent before the target approved with
C{unsubscribed} on the target's behalf, which cancels the request.

Available, unavailable and error presence of the target's resources then
keep the L{ResourceSet} current. A bounce of the subscription request (for
instance when the target's host is not active yet on the server) is retried
with a back-off.

The target's own subscription requests to the component are approved, and
the component shows itself available to it.

What a presence of the target says is a fact (L{TargetPresence.apply}):
this process acts on it and tells it to the other processes serving the
component, if any (L{clientproxy.state.interfaces.IFacts}), which act on
it as well, knowing it was not theirs.
"""

from twisted.logger import Logger
from wokkel.subprotocols import XMPPHandler

from clientproxy.state.interfaces import HERE
from clientproxy.state.local import LocalFacts
from clientproxy.xmpp.caps import capsOf
from clientproxy.xmpp.stanzas import presenceStanza, splitJID

#: The states of the component's subscription to the target's presence.
NONE, PENDING, APPROVED, REVOKED = "none", "pending", "approved", "revoked"
SUBSCRIPTION_STATES = (NONE, PENDING, APPROVED, REVOKED)

#: Seconds after asking before the first warning that the target has not
#: approved (an approval that stands answers within milliseconds), and
#: between two warnings after that.
FIRST_PENDING_WARNING = 10.0
PENDING_WARNING_INTERVAL = 300.0

#: What an operator does about a subscription the target has not approved.
APPROVAL_HINT = (
    "the target must approve it once: from any of its clients, send "
    "<presence type='subscribed' to='{component}'/> (most client libraries can "
    "auto-approve); or, as the server's admin, add {component} to {target}'s "
    "roster with subscription 'both' (Prosody: prosodyctl mod_roster_command "
    "subscribe {component} {target}, with the community module "
    "mod_roster_command; ejabberd: ejabberdctl add_rosteritem with the "
    "target's user and host, the component's JID and subscription both)"
)

#: Seconds before the first new subscription request after a bounce; doubled
#: on each bounce up to L{RESUBSCRIBE_MAX}.
RESUBSCRIBE_INITIAL = 2.0
RESUBSCRIBE_MAX = 60.0


#: The types of the target's presence that say a fact (L{factOf}).
FACT_TYPES = frozenset((None, "unavailable", "error", "subscribed", "unsubscribed"))


def factOf(presence, sender, name, kind):
    """
    What a presence of the target of type C{kind} (in L{FACT_TYPES}) from
    C{sender} (resource C{name}; an available presence has one) says, as a
    fact (L{clientproxy.state.interfaces.IFacts}).
    """
    if kind is None:
        return ("available", sender, name, presencePriority(presence), capsOf(presence))
    if kind == "unavailable" or (kind == "error" and name):
        return ("unavailable", sender)
    if kind == "error":
        # A bounce of our subscribe or probe.
        return ("bounced",)
    return (kind,)


def presencePriority(presence):
    """
    Return the priority of an available presence: its C{<priority/>}, an
    integer from -128 to 127 (RFC 6121 4.7.2.3), 0 when absent or invalid.
    """
    for child in presence.elements():
        if child.name == "priority":
            try:
                value = int(str(child).strip())
            except ValueError:
                return 0
            return max(-128, min(127, value))
    return 0


class TargetPresence(XMPPHandler):
    """
    Subscribes to the target and tracks its available resources.

    @ivar component: the component's bare JID.
    @ivar target: the target's bare JID.
    @ivar resources: the L{clientproxy.routing.resources.ResourceSet} to keep.
    @ivar facts: the L{clientproxy.state.interfaces.IFacts} told what the
        target's presence says.
    @ivar subscription: the state of the subscription: C{none} (not asked
        yet on this connection), C{pending} (asked, no answer: the target
        has not approved), C{approved}, C{revoked} (the target answered
        C{unsubscribed}).
    """

    log = Logger()

    def __init__(self, component, target, resources, stats, clock, facts=None):
        XMPPHandler.__init__(self)
        self.facts = LocalFacts() if facts is None else facts
        self.component = component
        self.target = target
        self.resources = resources
        self.stats = stats
        self.clock = clock
        self.subscription = NONE
        self._retry = None
        self._retryDelay = RESUBSCRIBE_INITIAL
        self._reminder = None

    @property
    def subscribed(self):
        """
        Whether the target approved the subscription on this connection.
        """
        return self.subscription == APPROVED

    def connectionInitialized(self):
        self.xmlstream.addRoute("presence", self.onPresence)
        self._retryDelay = RESUBSCRIBE_INITIAL
        self.subscribe()

    def connectionLost(self, reason):
        XMPPHandler.connectionLost(self, reason)
        self._cancelRetry()
        self._cancelReminder()
        self.subscription = NONE
        self.resources.clear()

    def subscribe(self):
        """
        Ask the target for a presence subscription.
        """
        self._retry = None
        if self.subscription in (NONE, REVOKED):
            self.subscription = PENDING
            self._scheduleReminder(FIRST_PENDING_WARNING)
        self.send(presenceStanza(self.component, self.target, "subscribe"))

    def _scheduleReminder(self, delay=PENDING_WARNING_INTERVAL):
        self._cancelReminder()
        self._reminder = self.clock.callLater(delay, self._remind)

    def _cancelReminder(self):
        if self._reminder is not None and self._reminder.active():
            self._reminder.cancel()
        self._reminder = None

    def _remind(self):
        """
        Still no approval: say so, with the fix, every few minutes.
        """
        self._reminder = None
        if self.subscription in (PENDING, REVOKED):
            self._warnUnapproved()
            self._scheduleReminder()

    def _warnUnapproved(self):
        self.log.warn(
            "The target {target} has not approved the presence subscription of "
            "{component} ({state}): no request can be dispatched until it does; " + APPROVAL_HINT,
            target=self.target,
            component=self.component,
            state=self.subscription,
        )

    def refilter(self, accept):
        """
        Change the resource filter (a reload): resources it no longer admits
        leave (their requests are retried or answered), and the target is
        probed so that newly admitted ones are learnt.
        """
        self.resources.setFilter(accept)
        for resource in list(self.resources.available):
            if not self.resources.accepts(resource.name):
                self.resources.remove(resource.jid)
        self.probe()

    def probe(self):
        """
        Ask the server for the target's current presences (once the
        subscription stands), to learn resources again.
        """
        if self.subscribed:
            self.send(presenceStanza(self.component, self.target, "probe"))

    def _cancelRetry(self):
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def onPresence(self, presence):
        """
        Handle presence from the target; leave other presence to others.
        """
        if presence.handled:
            return
        sender = presence.getAttribute("from")
        if not sender:
            return
        bare, name = splitJID(sender)
        if bare != self.target:
            return
        presence.handled = True
        kind = presence.getAttribute("type")
        if kind == "subscribe":
            self.send(presenceStanza(self.component, self.target, "subscribed"))
            self.send(presenceStanza(self.component, self.target))
        elif kind == "unsubscribe":
            self.send(presenceStanza(self.component, self.target, "unsubscribed"))
        elif kind == "probe":
            self.send(presenceStanza(self.component, sender))
        elif kind is None and not name:
            self.stats.drop(presence, "presence-from-bare-target")
        elif kind in FACT_TYPES:
            fact = factOf(presence, sender, name, kind)
            self.apply(fact, HERE)
            self.facts.learnt(fact)
        else:
            self.stats.drop(presence, "bad-type")

    def apply(self, fact, origin):
        """
        Act on a fact about the target's presence (see
        L{clientproxy.state.interfaces.IFacts}), from this process
        (C{origin} L{HERE}) or another; other facts are not this handler's.
        """
        kind = fact[0]
        if kind == "available":
            self._available(*fact[1:], origin=origin)
        elif kind == "unavailable":
            self._unavailable(fact[1], origin)
        elif kind == "bounced":
            self._bounced()
        elif kind == "subscribed":
            self._subscribed()
        elif kind == "unsubscribed":
            self._unsubscribed(origin)

    def _available(self, sender, name, priority, caps, origin=HERE):
        known = sender in self.resources
        resource = self.resources.update(sender, name, priority, caps, origin)
        if resource is None:
            self.log.debug("Ignoring resource {jid}: not matched by --resources", jid=sender)
        elif not known:
            self.log.info(
                "Resource {jid} available (priority {priority}); {count} in all",
                jid=sender,
                priority=priority,
                count=len(self.resources),
            )

    def _unavailable(self, sender, origin=HERE):
        resource = self.resources.remove(sender, origin)
        if resource is not None:
            self.log.info(
                "Resource {jid} unavailable; {count} left",
                jid=sender,
                count=len(self.resources),
            )

    def _bounced(self):
        # A bounce of our subscribe or probe: the target's host may not be
        # active yet, or the account may not exist. Ask again later.
        self.log.warn(
            "Presence to the target {target} bounced; asking again in {delay} s",
            target=self.target,
            delay=self._retryDelay,
        )
        if self._retry is None:
            self._retry = self.clock.callLater(self._retryDelay, self.subscribe)
            self._retryDelay = min(self._retryDelay * 2, RESUBSCRIBE_MAX)

    def _subscribed(self):
        if self.subscription != APPROVED:
            self.log.info("The target {target} approved the subscription", target=self.target)
        self.subscription = APPROVED
        self._cancelReminder()
        self._cancelRetry()
        self._retryDelay = RESUBSCRIBE_INITIAL
        self.send(presenceStanza(self.component, self.target, "probe"))

    def _unsubscribed(self, origin=HERE):
        self.subscription = REVOKED
        self._warnUnapproved()
        self._scheduleReminder()
        for resource in list(self.resources.available):
            self.resources.remove(resource.jid, origin)
