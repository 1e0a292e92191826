# -*- test-case-name: tests.test_xml -*-
"""
The serialiser for everything the component writes: correct for every tree
the parser can build, and fast for the common stanza.

Why not L{domish.Element.toXml}: it does not escape namespace names (an
C{xmlns='urn:a?b=1&amp;c=2'} that came in goes out as
C{xmlns='urn:a?b=1&c=2'}, and the server then closes the component's
stream with C{not-well-formed}), and it recurses, so a payload nested a
thousand or more elements deep raises C{RecursionError}. Either would let
one peer take the service off the server with one stanza.

What L{toXml} guarantees, for any element tree built by
L{twisted.words.xish.domish}'s parser from well-formed XML, or by our own
code:

 - the output is well-formed XML: text, attribute values (qualified ones
   included), namespace names and prefix declarations are escaped; tab,
   newline and carriage return in attribute values, and carriage return in
   text, are written as character references, so a parser's normalisation
   gives back the same value;
 - the output carries the same infoset: every element and attribute has
   the namespace and local name it came in with, text is the same;
 - every prefix declared on an element of the input (C{xmlns:p='...'}) is
   declared on the same element of the output, so prefixes used inside
   values (QNames in content) stay bound; a qualified name whose namespace
   has no prefix in scope gets a fresh one (C{ns0}, C{ns1}, ...);
 - no depth of nesting exhausts the interpreter's stack: the tree is
   walked with an explicit stack;
 - the work is linear in the size of the tree, whatever prefixes it
   declares where: the prefixes in scope are one dict (and its reverse),
   changed on entering an element and changed back on leaving it, and
   fresh prefixes come from a counter that only increases within a tree.

The common stanza (no prefixes, each element in its parent's default
namespace or declaring its own, C{xml:lang} the only qualified attribute,
nothing to escape) takes the short way through each branch below.
C{tests/test_xml.py} checks all of this with hypothesis against a strict
namespace-aware parser.
"""

import re

from twisted.words.xish.domish import SerializedXML
from wokkel.generic import parseXml

NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_COMPONENT = "jabber:component:accept"
NS_STREAMS = "http://etherx.jabber.org/streams"

#: The start of the component's stream as the server sees it: what every
#: stanza written is a child of.
STREAM_ROOT = "<stream:stream xmlns='%s' xmlns:stream='%s'>" % (NS_COMPONENT, NS_STREAMS)

_TEXT_SPECIAL = re.compile("[&<>\r]").search
_ATTRIBUTE_SPECIAL = re.compile("[&<>'\"\t\n\r]").search

_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "'": "&apos;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)

#: Prefixes bound by XML itself, never declared.
_RESERVED_PREFIXES = ("xml", "xmlns")

#: The default namespace of a stanza's parent (the stream root): as resolved
#: for elements with none of their own, and as declared in the output.
#: Every stanza is written as a child of L{STREAM_ROOT}.
_ROOT_DEFAULT = NS_COMPONENT

#: The prefixes bound in L{STREAM_ROOT}.
_ROOT_PREFIXES = (("xml", NS_XML), ("stream", NS_STREAMS))


class _Scope:
    """
    The prefixes bound where the writer is, in one tree: changed when an
    element that binds prefixes is entered and changed back when it is
    left, so keeping it costs the work of the bindings, not the depth of
    the tree times the number of prefixes in scope.

    @ivar uris: C{{prefix: namespace}} in scope.
    @ivar prefixes: C{{namespace: {prefix: None}}}, the same bindings read
        the other way (a dict for an ordered set).
    @ivar fresh: the number of the next fresh prefix (C{ns0}, C{ns1}, ...)
        to try: it only increases within one tree, so finding one is not a
        search from 0 each time.
    """

    def __init__(self):
        self.uris = {}
        self.prefixes = {}
        self.fresh = 0
        for prefix, uri in _ROOT_PREFIXES:
            self.bind(prefix, uri, [])

    def bind(self, prefix, uri, undo):
        """
        Bind C{prefix} to C{uri}; append to C{undo} what L{unbind} needs to
        put the previous binding back.
        """
        uris = self.uris
        previous = uris.get(prefix)
        undo.append((prefix, previous))
        if previous is not None:
            self._forget(prefix, previous)
        uris[prefix] = uri
        bound = self.prefixes.get(uri)
        if bound is None:
            self.prefixes[uri] = {prefix: None}
        else:
            bound[prefix] = None

    def unbind(self, undo):
        """
        Undo the bindings recorded in C{undo}, latest first.
        """
        uris = self.uris
        for prefix, previous in reversed(undo):
            self._forget(prefix, uris.pop(prefix))
            if previous is not None:
                uris[prefix] = previous
                self.prefixes.setdefault(previous, {})[prefix] = None

    def _forget(self, prefix, uri):
        """
        Drop C{prefix} from the prefixes bound to C{uri}.
        """
        bound = self.prefixes[uri]
        del bound[prefix]
        if not bound:
            del self.prefixes[uri]

    def prefixFor(self, uri, tag, undo):
        """
        A prefix bound to C{uri}; if there is none, a fresh one, bound (with
        C{undo}, as L{bind}) and declared in C{tag}.
        """
        bound = self.prefixes.get(uri)
        if bound:
            for prefix in bound:
                return prefix
        uris = self.uris
        number = self.fresh
        while "ns%d" % (number,) in uris:
            number += 1
        self.fresh = number + 1
        prefix = "ns%d" % (number,)
        self.bind(prefix, uri, undo)
        tag.append(" xmlns:%s='%s'" % (prefix, escapeAttribute(uri)))
        return prefix


def escapeText(text):
    """
    Escape character data for use between tags.
    """
    return text.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL(text) else text


def escapeAttribute(value):
    """
    Escape a value for use inside a single-quoted attribute.
    """
    return value.translate(_ATTRIBUTE_ESCAPES) if _ATTRIBUTE_SPECIAL(value) else value


def parseStanza(text):
    """
    Parse a stanza that L{toXml} wrote, in the namespace context it was
    written for (the component's stream).
    """
    root = parseXml((STREAM_ROOT + text + "</stream:stream>").encode("utf-8"))
    stanza = root.firstChildElement()
    stanza.parent = None
    return stanza


def toXml(element):
    """
    Serialise C{element} and everything below it as a child of the
    component's stream (L{STREAM_ROOT}); see the module docstring for what
    the result guarantees.

    The tree is walked with an explicit stack; the prefixes in scope are
    one L{_Scope} for the whole tree (made when the first prefix is needed),
    changed on entering an element and changed back on leaving it, so the
    work is linear in the size of the tree.

    @rtype: L{str}
    """
    parts = []
    write = parts.append
    tag, end, default, written, scope, undo = _startTag(element, _ROOT_DEFAULT, _ROOT_DEFAULT, None)
    children = element.children
    if not children:
        write(tag + "/>")
        return "".join(parts)
    write(tag + ">")
    stack = [(iter(children), end, default, written, undo)]
    while stack:
        children, end, default, written, undo = stack[-1]
        for child in children:
            kind = child.__class__
            if kind is str:
                write(child.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL(child) else child)
            elif kind is SerializedXML:
                write(child)
            elif isinstance(child, str):
                write(escapeText(child))
            else:
                tag, childEnd, childDefault, childWritten, scope, childUndo = _startTag(
                    child, default, written, scope
                )
                if child.children:
                    write(tag + ">")
                    stack.append(
                        (iter(child.children), childEnd, childDefault, childWritten, childUndo)
                    )
                    break
                write(tag + "/>")
                if childUndo:
                    scope.unbind(childUndo)
        else:
            stack.pop()
            write(end)
            if undo:
                scope.unbind(undo)
    return "".join(parts)


def stanzaBytes(element):
    """
    Serialise a stanza for the component's stream, as UTF-8: its start tag
    from its tree, and its content as the bytes it came in as when it kept
    them (L{clientproxy.xmpp.parser.Element.raw}: nothing below the root is
    rebuilt or escaped again), else from its tree with L{toXml}.

    The kept bytes are correct where they are written only if the content's
    namespace context is the one it came in: the same default namespace
    (always so, except for an element of no namespace under a default one,
    which cannot come from a parser) and the same prefixes (the start tag
    keeps every declaration of the stanza's).

    @rtype: L{bytes}
    """
    # Read from the instance only: a plain domish element answers any
    # unknown attribute by searching its children.
    raw = element.__dict__.get("raw")
    if raw is None:
        return toXml(element).encode("utf-8")
    tag, end, default, written, _, _ = _startTag(element, _ROOT_DEFAULT, _ROOT_DEFAULT, None)
    if default != written:
        return toXml(element).encode("utf-8")
    if not raw:
        return (tag + "/>").encode("utf-8")
    return b"".join(((tag + ">").encode("utf-8"), raw, end.encode("utf-8")))


def _startTag(element, logical, declared, scope):
    """
    The start tag of C{element} without its closing C{>} or C{/>}.

    @param logical: the default namespace of its parent, as resolved for
        elements with none of their own.
    @param declared: the default namespace declared in the output so far.
    @param scope: the L{_Scope} of the tree, or C{None} while no prefix
        was needed (one is made when one is).
    @return: C{(tag, end tag, logical and declared default namespaces for
        its children, scope, undo)}: C{undo}, when not empty, is what to
        give L{_Scope.unbind} once the element is written.
    """
    default = element.defaultUri
    if default is None:
        default = logical
    uri = element.uri
    if uri is None:
        uri = default
    name = element.name
    tag = [None]
    undo = None
    if element.localPrefixes:
        if scope is None:
            scope = _Scope()
        undo = []
        for prefix, bound in element.localPrefixes.items():
            if prefix not in _RESERVED_PREFIXES:
                tag.append(" xmlns:%s='%s'" % (prefix, escapeAttribute(bound)))
                scope.bind(prefix, bound, undo)
    if uri == default:
        written = default
        qualified = name
    elif not uri:
        # No namespace, under a default one: only an empty default
        # declaration can say that (the empty name has no prefix).
        written = ""
        qualified = name
    else:
        written = default
        if scope is None:
            scope = _Scope()
        if undo is None:
            undo = []
        qualified = scope.prefixFor(uri, tag, undo) + ":" + name
    if written != declared:
        tag.insert(1, " xmlns='%s'" % (escapeAttribute(written),))
    for key, value in element.attributes.items():
        if value.__class__ is not str or _ATTRIBUTE_SPECIAL(value):
            value = escapeAttribute(str(value))
        if key.__class__ is tuple:
            space, local = key
            if space == NS_XML:
                key = "xml:" + local
            elif space:
                if scope is None:
                    scope = _Scope()
                if undo is None:
                    undo = []
                key = scope.prefixFor(space, tag, undo) + ":" + local
            else:
                key = local
        tag.append(" %s='%s'" % (key, value))
    tag[0] = "<" + qualified
    return "".join(tag), "</%s>" % (qualified,), default, written, scope, undo
