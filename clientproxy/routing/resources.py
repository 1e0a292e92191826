# -*- test-case-name: tests.test_resources -*-
"""
The set of resources of the target that requests can be dispatched to.

Kept current by L{clientproxy.handlers.targetpresence.TargetPresence} from the target's
presence. Resources that come and go are reported to the observers added with
L{ResourceSet.whenAdded} and L{ResourceSet.whenRemoved}: requests a
resource held are retried or answered, queued messages delivered, and the
service's own presence kept current. Each change comes with its origin:
C{None} when this process saw the presence itself, another process's id
when that one did (L{clientproxy.state.interfaces.IFacts}); what is done
once for all processes is done by the one that saw it.
"""

import re


class Resource:
    """
    One available resource of the target.

    @ivar jid: its full JID, as the server stamps it (the C{from} of its
        presence), e.g. C{svc@example.org/a}.
    @ivar name: the resource part, e.g. C{a}.
    @ivar priority: the priority of its last available presence.
    @ivar pending: the number of requests it holds now, so strategies can
        weigh load.
    @ivar caps: the L{clientproxy.xmpp.caps.Caps} of its last presence, or
        C{None}.
    @ivar features: the features it advertises (a frozenset), or C{None}
        while they are not known.
    """

    __slots__ = ("jid", "name", "priority", "pending", "caps", "features")

    def __init__(self, jid, name, priority=0, caps=None):
        self.jid = jid
        self.name = name
        self.priority = priority
        self.pending = 0
        self.caps = caps
        self.features = None

    def __repr__(self):
        return "<Resource %s priority=%d pending=%d>" % (
            self.jid,
            self.priority,
            self.pending,
        )


class ResourceSet:
    """
    The available resources of one target account.

    L{available} is a list, so that a strategy can index and pick in
    constant time; removal swaps the last entry into the hole, so no gap is
    ever left behind (mod_client_proxy's list kept holes, and a third of its
    random picks then found nothing).

    @ivar available: the usable resources, in no particular order.
    @ivar accept: compiled C{--resources} filter, or C{None} for all. It is
        searched (not anchored) in the resource name: C{^focus$} for an
        exact name.
    @ivar version: a number that changes whenever a resource comes, goes,
        or changes what it announces or supports: what is derived from
        the set can be cached against it.
    """

    def __init__(self, accept=None):
        self.available = []
        self._byJID = {}
        self._removedObservers = []
        self._addedObservers = []
        self._capsObservers = []
        self._learntObservers = []
        self.accept = re.compile(accept) if isinstance(accept, str) else accept
        self.version = 0

    def __len__(self):
        return len(self.available)

    def __contains__(self, jid):
        return jid in self._byJID

    def get(self, jid):
        """
        Return the available resource with full JID C{jid}, or C{None}.
        """
        return self._byJID.get(jid)

    def setFilter(self, accept):
        """
        Use C{accept} (a regular expression, or C{None}) from now on.
        """
        self.accept = re.compile(accept) if isinstance(accept, str) else accept

    def accepts(self, name):
        """
        Whether a resource called C{name} may serve requests.
        """
        return self.accept is None or self.accept.search(name) is not None

    def whenAdded(self, observer):
        """
        Call C{observer(resource, origin)} whenever a resource becomes
        available.
        """
        self._addedObservers.append(observer)

    def whenRemoved(self, observer):
        """
        Call C{observer(resource, origin)} whenever an available resource
        goes away.
        """
        self._removedObservers.append(observer)

    def whenCapsChanged(self, observer):
        """
        Call C{observer(resource, origin)} whenever an available resource
        announces other capabilities than before.
        """
        self._capsObservers.append(observer)

    def whenLearnt(self, observer):
        """
        Call C{observer(resource)} whenever what an available resource
        supports becomes known, or changes (L{learnt}).
        """
        self._learntObservers.append(observer)

    def update(self, jid, name, priority, caps=None, origin=None):
        """
        Record an available presence of resource C{jid}.

        @param caps: the L{clientproxy.xmpp.caps.Caps} it carried, or C{None}.
        @param origin: who saw it: C{None} for this process, or another
            process's id.
        @return: the L{Resource}, or C{None} when the filter refuses it.
        """
        resource = self._byJID.get(jid)
        if resource is not None:
            resource.priority = priority
            if caps != resource.caps:
                resource.caps = caps
                self.version += 1
                for observer in list(self._capsObservers):
                    observer(resource, origin)
            return resource
        if not self.accepts(name):
            return None
        resource = Resource(jid, name, priority, caps)
        self._byJID[jid] = resource
        self.available.append(resource)
        self.version += 1
        for observer in list(self._addedObservers):
            observer(resource, origin)
        return resource

    def learnt(self, resource, features):
        """
        Record what C{resource} supports (a frozenset of features).
        """
        if resource.features != features:
            resource.features = features
            self.version += 1
            for observer in list(self._learntObservers):
                observer(resource)

    def remove(self, jid, origin=None):
        """
        Forget resource C{jid} (it went unavailable or bounced) and tell the
        observers; C{origin}: see L{update}.

        @return: the removed L{Resource}, or C{None} if it was not known.
        """
        resource = self._byJID.pop(jid, None)
        if resource is None:
            return None
        index = self.available.index(resource)
        last = self.available.pop()
        if last is not resource:
            self.available[index] = last
        self.version += 1
        for observer in list(self._removedObservers):
            observer(resource, origin)
        return resource

    def clear(self):
        """
        Forget every resource without telling the observers: used when the
        connection to the server is lost, where the pending requests are
        answered by the dispatcher itself.
        """
        self.available = []
        self._byJID = {}
        self.version += 1
