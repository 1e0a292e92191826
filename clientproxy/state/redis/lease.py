# -*- test-case-name: tests.test_lease -*-
"""
The lease in Redis that decides which process may connect as the
component (C{--lease}, with C{--redis}): one holder at a time, across
hosts.

Prosody keeps one connection per component. With its default
(C{component_conflict_resolve = "kick_new"}) a hung holder is never
replaced; with C{"kick_old"} a newcomer kicks the holder, so two healthy
processes would kick each other for ever. The lease settles it before
either connects: the key C{clientproxy:<component>:lease} holds the
holder's token and expires L{TTL} seconds after its last renewal (one
every L{RENEW} seconds). A process that finds it held by another does not
connect and stands by, trying every L{POLL} seconds; it takes the lease,
and connects, only once the key has expired (the holder stopped renewing:
it hung, or its host is gone) or was released (a clean stop deletes it at
once).

The token is C{<epoch> <nonce>}: the epoch is counted up in
C{clientproxy:<component>:lease-epoch} at every taking, the nonce is this
process's own. Renewal is one Lua script that extends the key only while
it still holds this token, so a process that lost the lease (it was
paused past the TTL and another took it) cannot renew it: the script
answers that another holds it, and the process disconnects at once and
stands by. Taking is idempotent (a reply lost and the script run again
finds this process's own token, and keeps it).

Besides Redis's answer, the holder keeps its own bound: a renewal sent at
time M{t} and answered makes the lease good until M{t + TTL} (Redis
counted the TTL from when it ran the script, later). When that passes
without a renewal answered (Redis silent, or this process was paused and
its timers are late), the holder counts the lease lost and disconnects,
before another can have taken it. A renewal that fails outright (an error
from Redis, a connection lost) does the same at once.
"""

import secrets

from twisted.internet import defer, task
from twisted.logger import Logger

from clientproxy.state.redis.store import prefixOf

#: Seconds the lease lasts after its last renewal.
TTL = 3.0
#: Seconds between two renewals by the holder.
RENEW = 1.0
#: Seconds between two attempts of a standby to take the lease.
POLL = 1.0

#: Take the lease if it is free (or already this process's: a retried
#: take whose reply was lost). KEYS: the lease, the epoch counter; ARGV:
#: the nonce, the TTL in ms. Returns {1, token} when taken, {0, holder}
#: when another holds it.
TAKE = """
local held = redis.call('GET', KEYS[1])
if held then
    local epoch, nonce = string.match(held, '^(%d+) (.+)$')
    if nonce == ARGV[1] then
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return {1, held}
    end
    return {0, held}
end
local token = redis.call('INCR', KEYS[2]) .. ' ' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2])
return {1, token}
"""

#: Renew the lease if it still holds ARGV[1] (the token); if it expired
#: and no one took it since (the epoch is still this token's), take it
#: back with the same token. Returns 1 when held, else what holds it
#: (false: nothing).
RENEW_SCRIPT = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if not held and redis.call('GET', KEYS[2]) == string.match(ARGV[1], '^(%d+) ') then
    redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
    return 1
end
return held
"""

#: Delete the lease if it still holds ARGV[1].
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def holderOf(token):
    """
    The epoch of C{token} (C{"7 ab12"} gives C{"7"}), for log lines.
    """
    return token.split(" ", 1)[0] if token else "?"


class Lease:
    """
    This process's part in the lease of one component: taken before it
    connects, renewed while it holds it, and given up at once when it
    cannot be sure it still does.

    The same face as L{clientproxy.ops.standby.StandbyLock}: L{acquire},
    L{held}, L{release}; and L{whenLost} for the component to disconnect.

    @ivar held: whether this process holds the lease.
    @ivar token: the token of the lease held (C{"<epoch> <nonce>"}), or
        C{None}.
    @ivar what: what a standby waits for, as /readyz says it.
    """

    log = Logger()
    what = "the lease in Redis"

    def __init__(self, redis, component, clock, ttl=TTL, renew=RENEW, poll=POLL):
        self.redis = redis
        self.component = component
        self.clock = clock
        self.ttl = ttl
        self.renewEvery = renew
        self.poll = poll
        self.key = prefixOf(component) + "lease"
        self.epochKey = prefixOf(component) + "lease-epoch"
        self.nonce = secrets.token_hex(8)
        self.held = False
        self.token = None
        self._onHeld = None
        self._onLost = None
        self._onStandingBy = []
        self._loop = None
        self._expiry = None
        self._trying = False
        self._toldStandingBy = False
        self._stopped = False
        self._generation = 0
        self._notBefore = 0.0

    def whenLost(self, onLost):
        """
        Call C{onLost()} when this process loses the lease it held.
        """
        self._onLost = onLost

    def whenStandingBy(self, observer):
        """
        Call C{observer()} each time this process starts standing by: the
        lease is another's, or Redis cannot be asked (systemd's C{READY=1}
        counts it as started).
        """
        self._onStandingBy.append(observer)

    def _standingBy(self):
        for observer in self._onStandingBy:
            observer()

    def acquire(self, onHeld):
        """
        Call C{onHeld()} once this process holds the lease: at once if it
        is free, else once it expired or was released.
        """
        self._onHeld = onHeld
        self._stopped = False
        self._start(self._try, self.poll)
        self._try()

    def _start(self, step, interval):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = task.LoopingCall(step)
        self._loop.clock = self.clock
        self._loop.start(interval, now=False)

    def _try(self):
        if self._trying or self.held or self._stopped:
            return
        if self.clock.seconds() < self._notBefore:
            return
        self._trying = True
        generation = self._generation
        d = self.redis.eval(
            TAKE, keys=[self.key, self.epochKey], args=[self.nonce, int(self.ttl * 1000)]
        )
        sent = self.clock.seconds()

        def answered(result):
            self._trying = False
            if generation != self._generation or self._stopped:
                return
            taken, token = result
            if not taken:
                if not self._toldStandingBy:
                    self._toldStandingBy = True
                    self.log.info(
                        "Another process holds the lease of {jid} in Redis (epoch {epoch}): "
                        "standing by, trying every {interval:g} s",
                        jid=self.component,
                        epoch=holderOf(token),
                        interval=self.poll,
                    )
                    self._standingBy()
                return
            self._taken(token, sent)

        def failed(failure):
            self._trying = False
            if not self._toldStandingBy:
                self._toldStandingBy = True
                self.log.warn(
                    "Cannot take the lease of {jid} in Redis ({why}): standing by, trying every "
                    "{interval:g} s",
                    jid=self.component,
                    why=failure.getErrorMessage(),
                    interval=self.poll,
                )
                self._standingBy()

        d.addCallbacks(answered, failed)

    def _taken(self, token, sent):
        self.held = True
        self.token = token
        self.log.info(
            "Took the lease of {jid} in Redis (epoch {epoch})",
            jid=self.component,
            epoch=holderOf(token),
        )
        self._toldStandingBy = False
        self._goodUntil(sent)
        self._start(self._renew, self.renewEvery)
        self._onHeld()

    def _goodUntil(self, sent):
        """
        The lease is this process's until C{sent + ttl} at least: lose it
        then unless a renewal is answered meanwhile.
        """
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        delay = max(0.0, sent + self.ttl - self.clock.seconds())
        self._expiry = self.clock.callLater(delay, self._lost, "no renewal answered in time")

    def _renew(self):
        if not self.held:
            return
        generation = self._generation
        token = self.token
        sent = self.clock.seconds()
        d = self.redis.eval(
            RENEW_SCRIPT, keys=[self.key, self.epochKey], args=[token, int(self.ttl * 1000)]
        )

        def answered(result):
            if generation != self._generation or not self.held:
                return
            if result == 1:
                self._goodUntil(sent)
                return
            if result:
                why = "another process holds it (epoch %s)" % (holderOf(result),)
            else:
                why = "it expired and was taken and let go since"
            self._lost(why)

        def failed(failure):
            if generation != self._generation or not self.held:
                return
            self._lost("renewing failed: %s" % (failure.getErrorMessage(),))

        d.addCallbacks(answered, failed)

    def _lost(self, why):
        """
        This process can no longer be sure it holds the lease: say so, tell
        the component (it disconnects), and stand by.
        """
        if not self.held:
            return
        self._cancelExpiry()
        self._generation += 1
        self.held = False
        self.token = None
        self.log.warn(
            "Lost the lease of {jid} in Redis ({why}): disconnecting and standing by",
            jid=self.component,
            why=why,
        )
        self._toldStandingBy = True
        self._start(self._try, self.poll)
        if self._onLost is not None:
            self._onLost()

    def _cancelExpiry(self):
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None

    def handBack(self, why, pause):
        """
        Let the lease go while running (this process cannot use it: it
        cannot reach the server), and take it again no sooner than
        C{pause} seconds from now, so that a standby that may reach the
        server takes it first.
        """
        if not self.held:
            return
        token = self.token
        self._notBefore = self.clock.seconds() + pause
        self._lost(why)
        d = self.redis.eval(RELEASE, keys=[self.key], args=[token])
        d.addErrback(lambda f: None)

    def release(self):
        """
        Stop standing by, or let the lease go at once (a clean stop): a
        standby elsewhere takes it at its next try.

        @return: a Deferred that fires once Redis was told (never fails).
        """
        self._stopped = True
        self._generation += 1
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._cancelExpiry()
        token, self.token = self.token, None
        wasHeld, self.held = self.held, False
        if not wasHeld:
            return defer.succeed(None)
        d = self.redis.eval(RELEASE, keys=[self.key], args=[token])
        d.addErrback(
            lambda f: self.log.warn(
                "Could not release the lease of {jid} in Redis ({why}); it expires in {ttl:g} s",
                jid=self.component,
                why=f.getErrorMessage(),
                ttl=self.ttl,
            )
        )
        return d.addCallback(lambda _: None)
