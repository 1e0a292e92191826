"""
Adversarial but well-formed XML for the writer's tests: hypothesis
strategies that build payloads as text (namespace names with C{& < > ' "}
and non-ASCII, prefixes declared and rebound at any depth, C{xml:lang}
anywhere, elements named like stanzas or stream elements, text with every
special character and astral code points, one to thousands of levels
deep), and a strict, namespace-aware reading of XML (expat with namespace
processing) to compare what went in with what came out.

The text is escaped here by code of its own, independent of
L{clientproxy.xmpp.writer}, so the comparison is a real differential one.
"""

from xml.parsers import expat

from hypothesis import strategies as st
from twisted.words.xish.domish import escapeToXml

from clientproxy.xmpp.writer import NS_COMPONENT, NS_STREAMS, STREAM_ROOT
from tests.helpers import COMPONENT, TARGET

NS_CLIENT = "jabber:client"

#: Characters XML 1.0 allows, weighted towards those that need escaping.
_SPECIAL = "&<>'\"\t\n\r]"
_XML_CHARACTERS = st.one_of(
    st.sampled_from(_SPECIAL),
    st.characters(
        blacklist_categories=("Cs", "Cc"),
        blacklist_characters="\ufffe\uffff",
    ),
    st.sampled_from("\u00e9\u2603\U0001f600\U00010348"),
)
_text = st.text(_XML_CHARACTERS, max_size=12)

#: Namespace names: odd ones, and those of stanzas and streams.
namespaces = st.one_of(
    st.sampled_from(
        [
            "urn:x",
            "urn:x:1?q=1&r=2",
            "urn:<a>",
            "urn:'\"",
            "http://example.org/\u2603",
            "urn:\U0001f600",
            NS_COMPONENT,
            NS_CLIENT,
            NS_STREAMS,
        ]
    ),
    # No white space: expat, the server's parser and ours, refuses a
    # namespace name holding its separator (a space, which is also what
    # tab, newline and carriage return become in an attribute value).
    st.text(_XML_CHARACTERS.filter(lambda c: c not in " \t\n\r"), min_size=1, max_size=10),
)
#: Prefixes, including those the writer makes up (ns0) and the stream's.
prefixes = st.sampled_from(["a", "b", "p", "ns0", "ns1", "stream"])
names = st.sampled_from(["q", "item", "iq", "message", "presence", "stream", "error", "body"])
attributeNames = st.sampled_from(["a", "id", "type", "to", "from", "lang"])


def _escape(value):
    out = []
    for ch in value:
        if ch in _SPECIAL[:-1]:
            out.append("&#%d;" % (ord(ch),))
        else:
            out.append(ch)
    return "".join(out)


#: One element's own parts: a default namespace declaration or not,
#: prefix declarations, its name's prefix (one it declares, or none),
#: attributes (plain, prefixed or xml:lang), and text.
frames = st.fixed_dictionaries(
    {
        "default": st.one_of(st.none(), namespaces, st.just("")),
        "declare": st.dictionaries(prefixes, namespaces, max_size=2),
        "prefixed": st.booleans(),
        "name": names,
        "attributes": st.lists(
            st.tuples(st.one_of(st.none(), prefixes, st.just("xml")), attributeNames, _text),
            max_size=3,
        ),
        "text": _text,
    }
)


def _startTag(frame, scope):
    """
    The start tag of C{frame}, and the prefixes in scope below it.
    """
    parts = []
    declared = dict(scope)
    if frame["default"] is not None:
        parts.append(" xmlns='%s'" % (_escape(frame["default"]),))
    for prefix, uri in sorted(frame["declare"].items()):
        parts.append(" xmlns:%s='%s'" % (prefix, _escape(uri)))
        declared[prefix] = uri
    name = frame["name"]
    if frame["prefixed"] and frame["declare"]:
        name = sorted(frame["declare"])[0] + ":" + name
    seen = set()
    for prefix, local, value in frame["attributes"]:
        if prefix is not None and prefix != "xml" and prefix not in declared:
            prefix = None
        if prefix == "xml":
            local = "lang"
        uri = "xml" if prefix == "xml" else declared.get(prefix) if prefix else None
        if (uri, local) in seen:
            continue
        seen.add((uri, local))
        qualified = local if prefix is None else prefix + ":" + local
        parts.append(" %s='%s'" % (qualified, _escape(value)))
    return name, "<%s%s>" % (name, "".join(parts)), declared


def render(spine, depth, scope=None):
    """
    Render a chain of C{depth} nested elements, the i-th built from
    C{spine[i % len(spine)]}, each with its text before its child: a
    payload as text. Written with a loop: depth may be in the thousands.
    """
    scope = dict(scope or {})
    opening, closing = [], []
    for level in range(depth):
        frame = spine[level % len(spine)]
        name, tag, scope = _startTag(frame, scope)
        opening.append(tag + _escape(frame["text"]))
        closing.append("</%s>" % (name,))
    return "".join(opening) + "".join(reversed(closing))


#: Payloads: a spine of frames and a depth, mostly shallow, sometimes very
#: deep.
payloads = st.builds(
    render,
    st.lists(frames, min_size=1, max_size=6),
    st.one_of(st.integers(1, 6), st.integers(1, 3000)),
)


def read(data):
    """
    Read a whole document strictly, with namespace processing: each
    element as C{[name, attributes, prefix declarations, children]} where
    names are C{"uri local"} and children are elements and merged text.
    Raises L{expat.ExpatError} on anything not well-formed or not
    namespace-well-formed.
    """
    parser = expat.ParserCreate("UTF-8", " ")
    top = [None, {}, (), []]
    stack = [top]
    declared = []

    def onNamespace(prefix, uri):
        declared.append((prefix, uri))

    def onStart(name, attributes):
        node = [name, dict(attributes), frozenset(declared), []]
        declared.clear()
        stack[-1][3].append(node)
        stack.append(node)

    def onEnd(name):
        stack.pop()

    def onText(data):
        children = stack[-1][3]
        if children and isinstance(children[-1], str):
            children[-1] += data
        else:
            children.append(data)

    parser.StartNamespaceDeclHandler = onNamespace
    parser.StartElementHandler = onStart
    parser.EndElementHandler = onEnd
    parser.CharacterDataHandler = onText
    parser.buffer_text = True
    parser.Parse(data, True)
    [root] = top[3]
    return root


def readStanzas(written):
    """
    Read what a component stream wrote (bytes, stanzas one after another)
    strictly, as the children of the stream's root.
    """
    document = STREAM_ROOT.encode("utf-8") + written + b"</stream:stream>"
    return [c for c in read(document)[3] if not isinstance(c, str)]


def elements(node):
    return [c for c in node[3] if not isinstance(c, str)]


def infoset(node, rename=None):
    """
    What must survive a trip through the component: names, namespaces,
    attributes and text, as a flat list of events in document order (flat,
    so that deep trees compare without recursion), with the namespaces of
    C{rename} replaced.
    """
    rename = rename or {}

    def name(qualified):
        uri, _, local = qualified.rpartition(" ")
        return (rename.get(uri, uri), local)

    events = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current is None:
            events.append("end")
        elif isinstance(current, str):
            events.append(current)
        else:
            attributes = tuple(sorted((name(k), v) for k, v in current[1].items()))
            events.append((name(current[0]), attributes))
            stack.append(None)
            stack.extend(reversed(current[3]))
    return events


def declaredPrefixes(node):
    """
    The prefix declarations (not default ones) on every element of
    C{node}, in document order.
    """
    result = []
    stack = [node]
    while stack:
        current = stack.pop()
        result.append({(p, u) for p, u in current[2] if p is not None})
        stack.extend(reversed(elements(current)))
    return result


def fromDomish(element):
    """
    A domish element (what a peer's parser built of a stanza) in the form
    L{read} gives, so that L{infoset} compares it.
    """
    from twisted.words.xish import domish

    def node(current):
        attributes = {
            ("%s %s" % k if isinstance(k, tuple) else k): v for k, v in current.attributes.items()
        }
        name = current.name if not current.uri else "%s %s" % (current.uri, current.name)
        return [name, attributes, frozenset(current.localPrefixes.items()), []]

    root = node(element)
    stack = [(element, root)]
    while stack:
        current, made = stack.pop()
        for child in current.children:
            if isinstance(child, domish.Element):
                childNode = node(child)
                made[3].append(childNode)
                stack.append((child, childNode))
            else:
                made[3].append(str(child))
    return root


# Whole stanzas, often hostile, for the fuzz runs of the handlers
# (tests/test_properties.py, tests/test_cluster.py).

OUTSIDERS = ["alice@example.org/abc", "bob@example.org", "example.org", "carol@example.org/c/d"]
RESOURCES = [TARGET + "/a", TARGET + "/b", TARGET + "/unknown", TARGET]
WEIRD = ["", "@x", "a@b@c", "x" * 1100 + "@example.org/r", "\u2603@example.org/s"]
SENDERS = OUTSIDERS + RESOURCES + WEIRD
RECIPIENTS = [
    COMPONENT,
    COMPONENT + "/alice@example.org/abc",
    COMPONENT + "/bob@example.org",
    COMPONENT + "/a@b@c",
    COMPONENT + "/" + COMPONENT,
    COMPONENT + "/",
    "other.example.org",
]
TYPES = [
    None,
    "",
    "get",
    "set",
    "result",
    "error",
    "chat",
    "normal",
    "headline",
    "groupchat",
    "subscribe",
    "subscribed",
    "unsubscribe",
    "unsubscribed",
    "probe",
    "unavailable",
    "bogus",
]
CHILDREN = [
    "<query xmlns='urn:x'/>",
    "<query xmlns='urn:x'><item a='&lt;&amp;'>t</item></query>",
    "<body>hi</body>",
    "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
    "<error type='cancel'><feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
    "</error>",
    "<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:x'/></query>",
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>",
    "<priority>5</priority>",
    "<private xmlns='urn:xmpp:carbons:2'/>",
    "text",
]


def attribute(name, value):
    return "" if value is None else " %s='%s'" % (name, escapeToXml(value, True))


stanzas = st.builds(
    lambda kind, type_, sender, recipient, ident, children: (
        "<%s%s%s%s%s>%s</%s>"
        % (
            kind,
            attribute("type", type_),
            attribute("from", sender),
            attribute("to", recipient),
            attribute("id", ident),
            "".join(children),
            kind,
        ),
        kind,
        type_,
        sender,
    ),
    st.sampled_from(["iq", "message", "presence", "foo"]),
    st.sampled_from(TYPES),
    st.one_of(st.none(), st.sampled_from(SENDERS)),
    st.one_of(st.none(), st.sampled_from(RECIPIENTS)),
    st.one_of(st.none(), st.sampled_from(["1", "2", "cp1", ""])),
    st.lists(st.sampled_from(CHILDREN), max_size=3),
)
