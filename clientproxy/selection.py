# -*- test-case-name: tests.test_selection -*-
"""
Which resource serves a request: one pipeline, in this order.

 1. Usable resources: the available ones that C{--resources} admits (the
    L{ResourceSet}).
 2. Feature match (C{--match-features}): the namespace of the request's
    child element is the feature asked for. C{auto}: if at least one usable
    resource advertises it (XEP-0115 caps, or a direct disco#info answer),
    only those are candidates, else every usable resource is (implementing
    clients such as Jitsi's focus do not advertise their namespace).
    C{strict}: only advertisers. C{off}: every usable resource. A resource
    whose features are not known yet (its disco#info answer is on its way)
    is no advertiser.
 3. Minus recent refusers: a resource that answered a request of that
    namespace with C{feature-not-implemented} or C{service-unavailable}
    is no candidate for it for C{--refusal-ttl} seconds (forgotten sooner
    when its caps change or it reconnects), nor are the resources a
    request has already been refused by.
 4. Affinity (C{--affinity}) or strategy: requests with the same key (the
    requester's full or bare JID, or an attribute of the request's child)
    go to the same candidate, chosen by rendezvous (highest random weight)
    hashing, so a resource that joins or leaves moves only the keys it
    gains or held; a request without a key goes to C{--strategy}, which is
    handed the candidates.

What steps 2 and 3 give for a feature is cached until the resource set
changes (L{ResourceSet.version}) or a refusal is learnt or expires, and
the affinity choice per key likewise: the common request costs a few
dictionary look-ups, however many resources there are.
"""

import hashlib

from twisted.logger import Logger

from clientproxy.stanzas import bareOf

#: C{--match-features} modes.
AUTO, STRICT, OFF = "auto", "strict", "off"
MATCH_MODES = (AUTO, STRICT, OFF)

#: Default seconds a refusal keeps a namespace from a resource.
REFUSAL_TTL = 300.0

#: Stanza error conditions that mean the resource did not act on a request.
REFUSALS = frozenset(("feature-not-implemented", "service-unavailable"))

#: Affinity cache entries kept at most (it is emptied when full).
AFFINITY_CACHE_SIZE = 100000

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
    @ivar refusalTTL: seconds a refusal counts; 0 turns refusal learning
        off (refusals then pass through to the requester).
    """

    log = Logger()

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
        self.refusalTTL = refusalTTL
        # {feature: {resource: expiry}}
        self._refusals = {}
        self._nextExpiry = None
        # The ResourceSet.version the caches were made for; None: remake.
        self._seen = None
        self._candidates = {}
        self._affine = {}
        resources.whenRemoved(self._forget)
        resources.whenCapsChanged(self._forget)

    def keyOf(self, child, requester):
        return self.affinity.keyOf(child, requester)

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
            self.refusalTTL = refusalTTL
            if not refusalTTL:
                self._refusals = {}
        if strategy is not None:
            self.strategy = strategy
        self._seen = None

    def choose(self, feature, key, requester, exclude=()):
        """
        The resource for a request asking for C{feature}, with affinity key
        C{key}, from C{requester}; C{None} when there is no candidate.

        @param exclude: resources this request was already refused by.
        """
        if self._refusals and self.clock.seconds() >= self._nextExpiry:
            self._expire()
        if self.resources.version != self._seen:
            self._seen = self.resources.version
            self._candidates = {}
            self._affine = {}
        candidates = self._candidates.get(feature)
        if candidates is None:
            candidates = self._candidates[feature] = self._candidatesFor(feature)
        if exclude:
            candidates = [r for r in candidates if r not in exclude]
        if not candidates:
            return None
        if key is None:
            return self.strategy.choose(candidates, requester)
        if exclude:
            return self._rendezvous(candidates, key)
        cacheKey = (feature, key)
        resource = self._affine.get(cacheKey)
        if resource is None:
            if len(self._affine) >= AFFINITY_CACHE_SIZE:
                self._affine = {}
            resource = self._affine[cacheKey] = self._rendezvous(candidates, key)
        return resource

    def _candidatesFor(self, feature):
        """
        Steps 1 to 3 for C{feature}.
        """
        usable = self.resources.available
        if self.match == OFF or feature is None:
            candidates = usable
        else:
            advertisers = [r for r in usable if r.features is not None and feature in r.features]
            candidates = advertisers if advertisers or self.match == STRICT else usable
        refusers = self._refusals.get(feature)
        if refusers:
            candidates = [r for r in candidates if r not in refusers]
        return list(candidates)

    def _rendezvous(self, candidates, key):
        hashed = stableHash(key)
        return max(candidates, key=lambda r: _weight(hashed, r))

    def refused(self, resource, feature):
        """
        C{resource} refused a request asking for C{feature}: it is no
        candidate for it for L{refusalTTL} seconds.

        @return: whether refusals are learnt at all.
        """
        if not self.refusalTTL:
            return False
        expiry = self.clock.seconds() + self.refusalTTL
        self._refusals.setdefault(feature, {})[resource] = expiry
        if self._nextExpiry is None or expiry < self._nextExpiry:
            self._nextExpiry = expiry
        self._seen = None
        self.log.info(
            "Resource {resource} refused {feature}: not offered it for {ttl} s",
            resource=resource.jid,
            feature=feature,
            ttl=self.refusalTTL,
        )
        return True

    def refusedBy(self, resource):
        """
        The features C{resource} is currently not offered, having refused.
        """
        return sorted(f for f, refusers in self._refusals.items() if resource in refusers)

    def _expire(self):
        now = self.clock.seconds()
        nextExpiry = None
        for feature in list(self._refusals):
            refusers = self._refusals[feature]
            for resource, expiry in list(refusers.items()):
                if expiry <= now:
                    del refusers[resource]
                elif nextExpiry is None or expiry < nextExpiry:
                    nextExpiry = expiry
            if not refusers:
                del self._refusals[feature]
        self._nextExpiry = nextExpiry
        self._seen = None

    def _forget(self, resource):
        """
        A resource left or changed its caps: its refusals no longer hold.
        """
        changed = False
        for feature in list(self._refusals):
            refusers = self._refusals[feature]
            if refusers.pop(resource, None) is not None:
                changed = True
                if not refusers:
                    del self._refusals[feature]
        if changed:
            self._seen = None
