# -*- test-case-name: tests.test_capabilities -*-
"""
Learning what each resource of the target supports, for feature-matched
dispatch (see L{clientproxy.routing.selection}).

A resource announces XEP-0115 caps in its presence. For each C{ver} not seen
before, one resource that announced it is asked C{disco#info} (XEP-0030,
from the component's bare JID, about C{node#ver}); the answer is cached by
C{ver} only if it hashes to that C{ver} (XEP-0115 section 5), so one client
cannot poison what is believed of another that announces the same C{ver}.
An answer that does not verify, or a legacy or unknown-hash C{ver}, counts
for the resource that gave it alone, and the next resource waiting on that
C{ver} is asked itself. A resource without caps is asked directly (no
node) once when it comes online. A caps change in a later presence is
followed. So the number of queries grows with the distinct C{ver}s, not
with resources or requests.

A resource that does not answer within L{QUERY_TIMEOUT} seconds, or answers
with an error, is taken to advertise nothing. With C{--match-features off}
nothing is learnt and nobody is asked.
"""

from twisted.logger import Logger
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from clientproxy.routing.bounded import LRU, compact
from clientproxy.xmpp.caps import NS_DISCO_INFO, parseDiscoInfo, verifies
from clientproxy.xmpp.stanzas import StanzaIDs, isAnswer

#: Seconds a disco#info query gets.
QUERY_TIMEOUT = 30.0

#: Verified answers kept by ver at most, the least recently used dropped
#: first.
CACHE_SIZE = 1000

#: The bytes of features (UTF-8) the verified answers keep at most, 4 MiB:
#: a client chooses how many features it has, and how long.
CACHE_BYTES = 4 * 1024 * 1024

NO_FEATURES = frozenset()


class _Query:
    """
    A disco#info query in flight: to C{resource}, about C{caps} (or none),
    with the other resources waiting on the same C{ver}.
    """

    __slots__ = ("resource", "caps", "waiting", "timer")

    def __init__(self, resource, caps, timer):
        self.resource = resource
        self.caps = caps
        self.waiting = []
        self.timer = timer


def featureBytes(ver, features):
    """
    The weight of a verified answer in the cache: the bytes of its
    features (UTF-8).
    """
    return sum(len(feature.encode("utf-8", "surrogatepass")) for feature in features)


class CapabilityLearner(XMPPHandler):
    """
    @ivar verified: features by C{ver} (through L{compact}: a C{ver} is
        whatever a client announces), for C{ver}s whose answer verified:
        an L{LRU} of at most L{CACHE_SIZE} answers and L{CACHE_BYTES}
        bytes of features, so that new C{ver}s, however many, push out
        the least recently used ones only, never the whole cache.
    """

    log = Logger()

    def __init__(self, component, resources, stats, clock, enabled=True, ids=None):
        XMPPHandler.__init__(self)
        self.component = component
        self.resources = resources
        self.stats = stats
        self.clock = clock
        self.verified = LRU(CACHE_SIZE, maxWeight=CACHE_BYTES, weigh=featureBytes)
        self._queries = {}
        self._byVer = {}
        self._ids = StanzaIDs() if ids is None else ids
        self._observing = False
        self.enabled = enabled
        resources.whenAdded(self.learn)
        resources.whenCapsChanged(self.learn)

    def setEnabled(self, enabled):
        """
        Turn learning on or off (a reload); turned on, the resources whose
        features are not known are asked.
        """
        was, self.enabled = self.enabled, enabled
        if enabled and not was:
            for resource in list(self.resources.available):
                if resource.features is None:
                    self.learn(resource)

    def connectionInitialized(self):
        self._observing = False
        self._queries = {}
        self._byVer = {}

    def connectionLost(self, reason):
        XMPPHandler.connectionLost(self, reason)
        for query in self._queries.values():
            if query.timer.active():
                query.timer.cancel()
        self._queries = {}
        self._byVer = {}
        self._observing = False

    def learn(self, resource, origin=None):
        """
        Find out what C{resource} supports: from the cache, by joining a
        query in flight for its C{ver}, or by asking it. Whoever saw it
        come (C{origin}): each process asks for itself.
        """
        if not self.enabled:
            return
        caps = resource.caps
        if caps is not None and caps.verifiable:
            features = self.verified.get(compact(caps.ver))
            if features is not None:
                self._learnt(resource, features, "cache")
                return
            query = self._byVer.get(caps.ver)
            if query is not None:
                query.waiting.append(resource)
                return
        self._ask(resource, caps)

    def _ask(self, resource, caps):
        if self.xmlstream is None:
            return
        queryID = self._ids("caps")
        iq = domish.Element((None, "iq"))
        iq["type"] = "get"
        iq["id"] = queryID
        iq["from"] = self.component
        iq["to"] = resource.jid
        query = iq.addElement((NS_DISCO_INFO, "query"))
        if caps is not None:
            query["node"] = caps.discoNode
        timer = self.clock.callLater(QUERY_TIMEOUT, self._timedOut, queryID)
        pending = self._queries[queryID] = _Query(resource, caps, timer)
        if caps is not None and caps.verifiable:
            self._byVer[caps.ver] = pending
        if not self._observing:
            # Only while queries are in flight: no cost on the stanza path
            # otherwise. Before the dispatcher, which would drop these
            # replies as matching no request.
            self.xmlstream.addRoute("iq", self._onReply, priority=1)
            self._observing = True
        self.stats.capabilities["queries"] += 1
        self.send(iq)

    def _onReply(self, iq):
        """
        Take the answer to a query in flight: a C{result} or C{error} with
        its id, from the resource asked, to the component's bare JID (the
        address that asked). Anything else is left to the other handlers:
        a reply with the same id to a requester's encoded address answers
        that requester's request, whose id it chose.
        """
        queryID = iq.getAttribute("id")
        query = self._queries.get(queryID)
        if query is None or not isAnswer(iq, self.component, query.resource.jid):
            return
        iq.handled = True
        self._done(queryID, query)
        info = None
        if iq.getAttribute("type") == "result":
            element = iq.firstChildElement()
            if element is not None and (element.uri, element.name) == (NS_DISCO_INFO, "query"):
                info = parseDiscoInfo(element)
        self._answered(query, info)

    def _timedOut(self, queryID):
        query = self._queries.get(queryID)
        if query is not None:
            self._done(queryID, query, timedOut=True)
            self.stats.capabilities["timeouts"] += 1
            self._answered(query, None)

    def _done(self, queryID, query, timedOut=False):
        del self._queries[queryID]
        if not timedOut and query.timer.active():
            query.timer.cancel()
        caps = query.caps
        if caps is not None and self._byVer.get(caps.ver) is query:
            del self._byVer[caps.ver]
        if not self._queries and self._observing and self.xmlstream is not None:
            self.xmlstream.removeRoute("iq", self._onReply)
            self._observing = False

    def _answered(self, query, info):
        """
        C{query} was answered with C{info} (C{None}: an error or no answer).
        """
        resource, caps = query.resource, query.caps
        features = NO_FEATURES if info is None else info.features
        verifiable = caps is not None and caps.verifiable
        # Those that announced the same caps meanwhile and are still here.
        waiting = [w for w in query.waiting if w.caps == caps and self.resources.get(w.jid) is w]
        if verifiable and info is not None and verifies(info, caps):
            self.verified[compact(caps.ver)] = features
            self.stats.capabilities["verified"] += 1
            self._learnt(resource, features, "verified")
            for other in waiting:
                self._learnt(other, features, "cache")
            return
        if verifiable and info is not None:
            self.stats.capabilities["unverified"] += 1
            self.log.warn(
                "The disco#info answer of {resource} does not hash to its caps ver {ver}: "
                "used for that resource alone",
                resource=resource.jid,
                ver=caps.ver,
            )
        self._learnt(resource, features, "unverified" if info is not None else "none")
        # The others waiting on that ver are asked themselves, one at a time.
        if waiting:
            self._ask(waiting[0], caps)
            next = self._byVer.get(caps.ver) if verifiable else None
            if next is not None:
                next.waiting.extend(waiting[1:])

    def _learnt(self, resource, features, how):
        if self.resources.get(resource.jid) is not resource:
            return
        self.resources.learnt(resource, features)
        self.log.debug(
            "Resource {resource} supports {features} ({how})",
            resource=resource.jid,
            features=sorted(features),
            how=how,
        )
