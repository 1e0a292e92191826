# -*- test-case-name: tests.test_errors -*-
"""
The errors the component answers with itself: one table, from which the
handlers take their answers and docs/routing.md its table (a test checks
that the one there is the one L{readmeTable} writes).

Each answer is an L{Answer}, C{(condition, type, text)}: the RFC 6120
condition (8.3.3), its type (the one RFC 6120 gives the condition, unless
L{TABLE} says why not), and a human-readable text or C{None}. A refused
stanza is answered with one by L{clientproxy.handlers.refusal.refuse}, or
dropped and counted under the name L{dropReason} gives when it must not
be answered with an error (RFC 6120 8.3.1: an error or a result never is).
"""

from collections import namedtuple

#: An answer the component gives: condition, type, text (or C{None}).
Answer = namedtuple("Answer", "condition type text")

NO_RESOURCE = Answer("service-unavailable", "cancel", None)
TIMEOUT = Answer("remote-server-timeout", "wait", None)
RESOURCE_LEFT = Answer("recipient-unavailable", "wait", None)
CONNECTION_LOST = Answer("recipient-unavailable", "wait", None)
NOT_ONE_CHILD = Answer("bad-request", "modify", "An IQ request has exactly one child element")
DUPLICATE_ID = Answer("bad-request", "modify", "A request with this id is already in flight")
TOO_LONG = Answer("jid-malformed", "modify", "The sender's address is too long to translate")
TOO_MANY = Answer("resource-constraint", "wait", "Too many requests in flight")
TOO_FAST = Answer("policy-violation", "wait", "Too many stanzas: slow down")
TOO_LARGE = Answer("policy-violation", "modify", "Stanza too large for this service")
DENIED = Answer("forbidden", "auth", "Not allowed to use this service")
SHUTTING_DOWN = Answer("service-unavailable", "cancel", "The service is shutting down")
UNSHARED = Answer(
    "service-unavailable",
    "wait",
    "The state shared by the service's processes cannot be reached",
)
INTERNAL = Answer("internal-server-error", "wait", None)
#: With C{--hold}: what a request waiting in line gets when the hold (or its
#: timeout) passes with no resource to serve it; the condition it would have
#: had at once without the hold (L{NO_RESOURCE}, L{RESOURCE_LEFT}).
HOLD_PASSED = Answer("service-unavailable", "cancel", "No resource of the service came in time")
HOLD_PASSED_LEFT = Answer(
    "recipient-unavailable", "wait", "The resource left and no other came in time"
)
QUEUE_FULL = Answer(
    "resource-constraint", "wait", "No resource of the service is available and its queue is full"
)
NOT_A_RESOURCE = Answer(
    "service-unavailable", "cancel", "Only an available resource of the target may send"
)
NO_PEER_ADDRESS = Answer("service-unavailable", "cancel", "Address a peer as component/<peer JID>")
NOT_A_PEER = Answer("jid-malformed", "modify", "Not a peer's address")

#: How a stanza refused by the admission policy is counted when it gets no
#: error: by the stanza's name, then by the refusal (C{None}: any other).
DROPS = {
    # A reply from outside to a request the target started.
    "iq": {TOO_FAST: "reply-too-fast", None: "reply-from-peer-refused"},
    # An error message from outside (a bounce of a message the target sent).
    "message": {TOO_LARGE: "error-from-peer-too-large", None: "error-from-peer-refused"},
    # A subscription request or probe to the service (a denied sender is
    # told unsubscribed instead).
    "presence": {TOO_FAST: "presence-too-fast", None: "presence-refused"},
}


def dropReason(name, refusal):
    """
    The name a refused C{name} stanza is counted under when dropped (see
    L{DROPS}).
    """
    drops = DROPS[name]
    return drops.get(refusal) or drops[None]


#: The situations in which each answer is given, in the order of docs/routing.md.
TABLE = (
    (
        "no resource of the target is available (or, with `--match-features strict`, none "
        "advertises the namespace)",
        NO_RESOURCE,
    ),
    (
        "with `--hold`: no resource could serve it within the hold (or before `--timeout`), "
        "having waited in line",
        HOLD_PASSED,
    ),
    ("no reply within `--timeout`", TIMEOUT),
    (
        "the resource left with the request in flight, no retry possible (a `set`, a `get` "
        "already retried, or no other resource)",
        RESOURCE_LEFT,
    ),
    (
        "with `--hold`: its resource left, it waited in line for another (a `get`, or a `set` "
        "in an `--idempotent` namespace) and none came within the hold (or before `--timeout`)",
        HOLD_PASSED_LEFT,
    ),
    (
        "the connection to the server was lost with the request in flight (sent once the "
        "component is back)",
        CONNECTION_LOST,
    ),
    ("a `get`/`set` without exactly one child element", NOT_ONE_CHILD),
    ("a second request with the id of one still in flight from the same requester", DUPLICATE_ID),
    ("the requester's address is too long to encode in a resource", TOO_LONG),
    (
        "too many requests in flight (from this requester, or in all), or their bytes over "
        "`--max-pending-bytes`",
        TOO_MANY,
    ),
    ("over the rate (`--rate`)", TOO_FAST),
    ("larger than `--max-stanza-size`", TOO_LARGE),
    ("denied by the access lists", DENIED),
    ("the component is shutting down", SHUTTING_DOWN),
    (
        "with `--redis`, Redis does not answer (type wait: the requester may ask again, and "
        "the service is back when Redis is)",
        UNSHARED,
    ),
    (
        "building or sending the answer failed inside the component, or the store could not "
        "keep a message (logged with its traceback, counted)",
        INTERNAL,
    ),
    ("a message while no resource is available and the queue is full (`--queue-size`)", QUEUE_FULL),
    (
        "an IQ request or message from the target to `component/<peer>` by a resource that is "
        "not available (or not admitted by `--resources`)",
        NOT_A_RESOURCE,
    ),
    ("an IQ request from the target to the bare component JID", NO_PEER_ADDRESS),
    (
        "an IQ request or message from the target to a `component/<x>` that encodes no JID",
        NOT_A_PEER,
    ),
)


def readmeTable():
    """
    The table of L{TABLE} in docs/routing.md, as Markdown lines.
    """
    lines = ["| situation | condition | type |", "|---|---|---|"]
    for situation, answer in TABLE:
        lines.append("| %s | `%s` | %s |" % (situation, answer.condition, answer.type))
    return lines
