# -*- test-case-name: tests.test_policy -*-
"""
What outsiders may send through the component: who (allow and deny lists),
how fast (a token bucket per bare JID, and one per domain), and how large.

The rate is also kept per domain because one remote domain can mint any
number of JIDs: a per-JID bucket alone would let it send as fast as it
likes. The limits on requests in flight live with the pending table in
L{clientproxy.routing.pending}; this module holds the rest, shared by IQs,
messages and the service's presence. With no lists and no rate (the
defaults), a check costs two attribute tests on the stanza path.
"""

from twisted.words.protocols.jabber.jid import InvalidFormat, parse

from clientproxy.routing.errors import DENIED, TOO_FAST, TOO_LARGE, TOO_LONG
from clientproxy.xmpp.jat import MAX_PART_BYTES
from clientproxy.xmpp.stanzas import bareOf, domainOf
from clientproxy.xmpp.writer import stanzaBytes

#: The default largest stanza forwarded, in bytes (serialised, UTF-8).
MAX_STANZA_SIZE = 65536

#: The per-domain rate and burst, by default, as a multiple of the per-JID
#: ones: a domain is many users.
DOMAIN_RATE_FACTOR = 10


def normalise(entry):
    """
    Normalise an allow/deny entry: a bare JID or a domain.

    @raise ValueError: it is not one.
    """
    try:
        user, host, resource = parse(entry.strip())
    except (InvalidFormat, RuntimeError, UnicodeError) as e:
        raise ValueError("not a JID or domain: %r (%s)" % (entry, e))
    if resource is not None:
        raise ValueError("give a bare JID or a domain, not a full JID: %r" % (entry,))
    return host if user is None else user + "@" + host


def readAccessFile(path):
    """
    Read C{allow X} / C{deny X} lines (C{#} starts a comment).

    @return: C{(allow, deny)} lists of entries as written.
    @raise ValueError: a line is neither.
    """
    allow, deny = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 2 or words[0] not in ("allow", "deny"):
                raise ValueError("%s:%d: expected 'allow JID' or 'deny JID'" % (path, number))
            (allow if words[0] == "allow" else deny).append(words[1])
    return allow, deny


class TokenBuckets:
    """
    One token bucket per key: C{rate} tokens a second, at most C{burst}.

    Buckets that have filled up again are forgotten now and then, so memory
    follows the requesters active in the last few seconds, not all ever
    seen.
    """

    def __init__(self, clock, rate, burst):
        self.clock = clock
        self.rate = float(rate)
        self.burst = float(max(burst, 1))
        self._buckets = {}
        self._pruneEvery = max(self.burst / self.rate, 1.0)
        self._pruned = clock.seconds()

    def __len__(self):
        return len(self._buckets)

    def take(self, key):
        """
        Take a token for C{key}; return whether there was one.
        """
        now = self.clock.seconds()
        if now - self._pruned >= self._pruneEvery:
            self._prune(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [self.burst - 1, now]
            return True
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1
        return True

    def _prune(self, now):
        self._pruned = now
        full = [
            key
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]


class Policy:
    """
    @ivar maxStanzaSize: the largest stanza forwarded, in bytes.
    @ivar buckets: the L{TokenBuckets} per bare JID, or C{None} (no rate).
    @ivar domainBuckets: the L{TokenBuckets} per domain, or C{None}.
    """

    def __init__(self, clock, *rules, **namedRules):
        """
        @param clock: the L{IReactorTime} of the rate's buckets.
        @param rules: see L{configure}.
        """
        self.clock = clock
        self.configure(*rules, **namedRules)

    def configure(
        self,
        allow=(),
        deny=(),
        rate=0.0,
        burst=None,
        maxStanzaSize=MAX_STANZA_SIZE,
        domainRate=None,
        domainBurst=None,
    ):
        """
        Set the rules (at start, and again on a reload: the rate's buckets
        then start full).

        @param domainRate: stanzas a second from one domain; by default
            L{DOMAIN_RATE_FACTOR} times C{rate} (so off when C{rate} is),
            with bursts of C{domainBurst} (by default that factor times
            C{burst}).
        """
        clock = self.clock
        self.allow = frozenset(normalise(e) for e in allow)
        self.deny = frozenset(normalise(e) for e in deny)
        self._lists = bool(self.allow or self.deny)
        burst = burst or rate
        self.buckets = TokenBuckets(clock, rate, burst) if rate else None
        if domainRate is None:
            domainRate = rate * DOMAIN_RATE_FACTOR
        if domainBurst is None:
            domainBurst = (burst * DOMAIN_RATE_FACTOR) if rate else domainRate
        self.domainBuckets = TokenBuckets(clock, domainRate, domainBurst) if domainRate else None
        self._rated = self.buckets is not None or self.domainBuckets is not None
        self.maxStanzaSize = maxStanzaSize

    def permits(self, sender):
        """
        Whether C{sender} (a JID string, as the server stamped it) may use
        the service: not denied by bare JID or domain, and allowed by one of
        them when there is an allow list.
        """
        bare = bareOf(sender)
        domain = domainOf(bare)
        if bare in self.deny or domain in self.deny:
            return False
        return not self.allow or bare in self.allow or domain in self.allow

    def refusal(self, sender):
        """
        Return the answer owed to C{sender} for a new stanza, as
        C{(condition, type, text)}, or C{None} if it may go on: the one
        admission check for IQs, messages and presence from outside. An
        address that cannot be translated into a resource of the component
        (over 1023 bytes) is refused too.
        """
        if len(sender) * 4 > MAX_PART_BYTES and len(sender.encode("utf-8")) > MAX_PART_BYTES:
            return TOO_LONG
        if self._lists and not self.permits(sender):
            return DENIED
        if self._rated:
            bare = bareOf(sender)
            if self.buckets is not None and not self.buckets.take(bare):
                return TOO_FAST
            if self.domainBuckets is not None and not self.domainBuckets.take(domainOf(bare)):
                return TOO_FAST
        return None

    def admit(self, sender, stanza):
        """
        The one admission of a stanza from outside, IQ, message or
        presence alike: the answer owed to C{sender} (L{refusal}), or
        C{TOO_LARGE} when C{stanza} is larger than L{maxStanzaSize} as it
        came in (L{tooLargeStanza}), or C{None} if it may go on.
        """
        refusal = self.refusal(sender)
        if refusal is None and self.tooLargeStanza(stanza):
            return TOO_LARGE
        return refusal

    def tooLargeStanza(self, stanza):
        """
        Whether C{stanza}, as it came in, is larger than L{maxStanzaSize}
        bytes: checked before any work is done on it. A stanza the parser
        read is measured by the bytes it came in as
        (L{clientproxy.xmpp.parser.Element.received}), so nothing is serialised;
        any other element (built here or in tests) is serialised to be
        measured.
        """
        limit = self.maxStanzaSize
        if not limit:
            return False
        # From the instance only: a plain domish element answers any unknown
        # attribute by searching its children.
        received = stanza.__dict__.get("received")
        if received is None:
            return self.tooLarge(stanzaBytes(stanza))
        return received > limit

    def tooLarge(self, serialised):
        """
        Whether a serialised stanza (text, or UTF-8 bytes) is larger than
        L{maxStanzaSize} bytes.
        """
        limit = self.maxStanzaSize
        if not limit:
            return False
        if serialised.__class__ is bytes:
            return len(serialised) > limit
        if len(serialised) * 4 <= limit:
            return False
        return len(serialised.encode("utf-8")) > limit
