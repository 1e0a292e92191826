# -*- test-case-name: tests.test_selection -*-
"""
Which resource serves a request: one pipeline, in this order.

 1. Usable resources: the available ones that C{--resources} admits (the
    L{ResourceSet}).
 2. Feature match (C{--match-features}): the namespace of the request's
    child element is the feature asked for. C{auto}: the resources that
    advertise it (XEP-0115 caps, or a direct disco#info answer) are asked
    first, the others after them (implementing clients such as Jitsi's
    focus do not advertise their namespace, and what a resource advertises
    may be wrong). C{strict}: only advertisers. C{off}: every usable
    resource alike. A resource whose features are not known yet (its
    disco#info answer is on its way) is no advertiser.
 3. Minus the resources this request was already refused by.
 4. Learnt refusers last: within the advertisers, and within the others,
    the resources learnt to refuse requests of that topic (namespace, name
    and type: L{clientproxy.routing.refusals}) are asked after the rest. What is
    learnt orders the candidates; it never empties them, and it never puts
    a resource that does not advertise the feature before one that does.
 5. Affinity (C{--affinity}) or strategy: requests with the same key (the
    requester's full or bare JID, or an attribute of the request's child)
    go to the same candidate, chosen by rendezvous (highest random weight)
    hashing, so a resource that joins or leaves moves only the keys it
    gains or held; a request without a key goes to C{--strategy}, which is
    handed the candidates.

What steps 1 and 2 give for a namespace is cached until the resource set
changes (L{ResourceSet.version}), and the affinity choice per key likewise
(while no refuser is learnt for the namespace): the common request costs a
few dictionary look-ups, however many resources there are. Both caches
are keyed by what outsiders send, so both are L{clientproxy.routing.bounded.LRU}s
with compacted keys: bounded in entries and bytes whatever names arrive.
"""

import hashlib

from clientproxy.routing.bounded import LRU, compact
from clientproxy.routing.refusals import REFUSAL_TTL, Refusals  # noqa: F401 (REFUSAL_TTL: the option's default)
from clientproxy.xmpp.stanzas import bareOf

#: C{--match-features} modes.
AUTO, STRICT, OFF = "auto", "strict", "off"
MATCH_MODES = (AUTO, STRICT, OFF)

#: Namespaces whose candidates are cached at most.
CANDIDATE_CACHE_SIZE = 1000

#: Affinity choices cached at most: each a pair of compacted keys, so a few
#: hundred bytes.
AFFINITY_CACHE_SIZE = 20000

_MASK = (1 << 64) - 1


def _weight(key, resource):
    """
    The rendezvous weight of C{resource} for C{key} (a 64-bit hash of the
    key): a stable mix of the two, the same in every process (no salted
    built-in hash), so instances agree.
    """
    z = (key ^ _resourceHash(resource)) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


_resourceHashes = {}


def stableHash(text):
    """
    A 64-bit hash of C{text}, the same in every process.
    """
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _resourceHash(resource):
    value = _resourceHashes.get(resource.jid)
    if value is None:
        if len(_resourceHashes) > 10000:
            _resourceHashes.clear()
        value = _resourceHashes[resource.jid] = stableHash(resource.jid)
    return value


def _best(tiers, exclude, refusers):
    """
    The best candidates left (steps 3 and 4): in the first tier that holds
    a resource not yet tried, those that are not learnt refusers, or
    failing that the learnt refusers.
    """
    for tier in tiers:
        for refused in (False, True):
            candidates = [r for r in tier if r not in exclude and (r.jid in refusers) is refused]
            if candidates:
                return candidates
    return []


class Affinity:
    """
    What makes requests sticky (C{--affinity}): C{none}, C{requester},
    C{bare-requester} or C{attribute:NAME}.
    """

    def __init__(self, spec="none"):
        self.spec = spec
        self.attribute = None
        if spec.startswith("attribute:") and spec[len("attribute:") :]:
            self.attribute = spec[len("attribute:") :]
        elif spec not in ("none", "requester", "bare-requester"):
            raise ValueError(
                "affinity: none, requester, bare-requester or attribute:NAME, not %r" % (spec,)
            )
        self.enabled = spec != "none"

    def keyOf(self, child, requester):
        """
        The affinity key of a request from C{requester} whose child element
        is C{child}, or C{None} (no affinity, or the attribute is absent).
        """
        if self.attribute is not None:
            return child.getAttribute(self.attribute) if child is not None else None
        if self.spec == "requester":
            return requester
        if self.spec == "bare-requester":
            return bareOf(requester)
        return None


class Selector:
    """
    The dispatch pipeline of one proxy (see the module docstring).

    @ivar match: the C{--match-features} mode.
    @ivar refusals: the L{Refusals} learnt.
    """

    def __init__(
        self,
        resources,
        strategy,
        clock,
        match=AUTO,
        affinity=None,
        refusalTTL=REFUSAL_TTL,
    ):
        if match not in MATCH_MODES:
            raise ValueError("match-features: one of %s, not %r" % (", ".join(MATCH_MODES), match))
        self.resources = resources
        self.strategy = strategy
        self.clock = clock
        self.match = match
        self.affinity = affinity or Affinity()
        self.refusals = Refusals(clock, refusalTTL)
        # The ResourceSet.version the caches were made for; None: remake.
        self._seen = None
        self._candidates = LRU(CANDIDATE_CACHE_SIZE)
        self._affine = LRU(AFFINITY_CACHE_SIZE)
        resources.whenRemoved(self.refusals.forget)
        resources.whenCapsChanged(self.refusals.forget)

    def keyOf(self, child, requester):
        return self.affinity.keyOf(child, requester)

    def apply(self, fact, origin):
        """
        Learn a refusal, or forget one on a result, that another process
        (C{origin}) saw (see L{clientproxy.state.interfaces.IFacts}); other
        facts are not the selector's.
        """
        kind = fact[0]
        if kind == "refused":
            resource = self.resources.get(fact[1])
            if resource is not None:
                self.refusals.refused(resource, fact[3], fact[2])
        elif kind == "served":
            resource = self.resources.get(fact[1])
            if resource is not None:
                self.refusals.served(resource, fact[2])

    def configure(self, match=None, affinity=None, refusalTTL=None, strategy=None):
        """
        Change the pipeline (a reload); what was cached is recomputed.
        """
        if match is not None:
            if match not in MATCH_MODES:
                raise ValueError("match-features: one of %s" % (", ".join(MATCH_MODES),))
            self.match = match
        if affinity is not None:
            self.affinity = Affinity(affinity)
        if refusalTTL is not None:
            self.refusals.configure(refusalTTL)
        if strategy is not None:
            self.strategy = strategy
        self._seen = None

    def choose(self, feature, topic, key, requester, exclude=()):
        """
        The resource for a request asking for C{feature} (its child's
        namespace), in C{topic} (L{clientproxy.routing.refusals.topicOf}), with
        affinity key C{key}, from C{requester}; C{None} when there is no
        candidate.

        @param exclude: resources this request was already refused by.
        """
        if self.resources.version != self._seen:
            self._seen = self.resources.version
            self._candidates.clear()
            self._affine.clear()
        compacted = compact(feature)
        tiers = self._candidates.get(compacted)
        if tiers is None:
            tiers = self._candidates[compacted] = self._tiersFor(feature)
        refusers = self.refusals.refusersOf(topic)
        if exclude or refusers:
            candidates = _best(tiers, exclude, refusers or ())
        else:
            candidates = tiers[0] or tiers[1]
        if not candidates:
            return None
        if key is None:
            return self.strategy.choose(candidates, requester)
        if exclude or refusers:
            return self._rendezvous(candidates, key)
        cacheKey = (compacted, compact(key))
        resource = self._affine.get(cacheKey)
        if resource is None:
            resource = self._affine[cacheKey] = self._rendezvous(candidates, key)
        return resource

    def _tiersFor(self, feature):
        """
        Steps 1 and 2 for C{feature}: C{(first, then)}, the resources to
        ask first and those to ask when none of the first is left.
        """
        usable = list(self.resources.available)
        if self.match == OFF or feature is None:
            return usable, []
        advertisers = [r for r in usable if r.features is not None and feature in r.features]
        if self.match == STRICT:
            return advertisers, []
        return advertisers, [r for r in usable if r.features is None or feature not in r.features]

    def _rendezvous(self, candidates, key):
        hashed = stableHash(key)
        return max(candidates, key=lambda r: _weight(hashed, r))
