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
   walked with an explicit stack.

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

#: The namespace context of a stanza: the default namespace as resolved for
#: elements with none of their own, the default namespace declared in the
#: output so far, and the prefixes bound in the output. Every stanza is
#: written as a child of L{STREAM_ROOT}.
_ROOT = (NS_COMPONENT, NS_COMPONENT, {"xml": NS_XML, "stream": NS_STREAMS})


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

    @rtype: L{str}
    """
    parts = []
    write = parts.append
    children, end, context = _open(element, _ROOT, write)
    if children is None:
        return "".join(parts)
    stack = [(iter(children), end, context)]
    while stack:
        children, end, context = stack[-1]
        for child in children:
            kind = child.__class__
            if kind is str:
                write(child.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL(child) else child)
            elif kind is SerializedXML:
                write(child)
            elif isinstance(child, str):
                write(escapeText(child))
            else:
                grandchildren, childEnd, childContext = _open(child, context, write)
                if grandchildren is not None:
                    stack.append((iter(grandchildren), childEnd, childContext))
                    break
        else:
            stack.pop()
            write(end)
    return "".join(parts)


def stanzaBytes(element):
    """
    Serialise a stanza for the component's stream, as UTF-8: its start tag
    from its tree, and its content as the bytes it came in as when it kept
    them (L{clientproxy.parser.Element.raw}: nothing below the root is
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
    tag, qualified, context = _startTag(element, _ROOT)
    if context[0] != context[1]:
        return toXml(element).encode("utf-8")
    if not raw:
        return (tag + "/>").encode("utf-8")
    return b"".join(((tag + ">").encode("utf-8"), raw, ("</%s>" % (qualified,)).encode("utf-8")))


def _open(element, context, write):
    """
    Write the start tag of C{element} (or the whole of it, when it has no
    children).

    @param context: the namespace context of its parent, as L{_ROOT}.
    @return: C{(children, end tag, context for the children)}, or
        C{(None, None, None)} when the element was written whole.
    """
    tag, qualified, context = _startTag(element, context)
    children = element.children
    if not children:
        write(tag + "/>")
        return None, None, None
    write(tag + ">")
    return children, "</%s>" % (qualified,), context


def _startTag(element, context):
    """
    The start tag of C{element} without its closing C{>} or C{/>}.

    @param context: the namespace context of its parent, as L{_ROOT}.
    @return: C{(tag, qualified name, context for its children)}.
    """
    logical, declared, scope = context
    default = element.defaultUri
    if default is None:
        default = logical
    uri = element.uri
    if uri is None:
        uri = default
    name = element.name
    tag = [None]
    if element.localPrefixes:
        scope = dict(scope)
        for prefix, bound in element.localPrefixes.items():
            if prefix not in _RESERVED_PREFIXES:
                tag.append(" xmlns:%s='%s'" % (prefix, escapeAttribute(bound)))
                scope[prefix] = bound
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
        prefix, scope = _prefixFor(uri, scope, tag)
        qualified = prefix + ":" + name
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
                prefix, scope = _prefixFor(space, scope, tag)
                key = prefix + ":" + local
            else:
                key = local
        tag.append(" %s='%s'" % (key, value))
    tag[0] = "<" + qualified
    return "".join(tag), qualified, (default, written, scope)


def _prefixFor(uri, scope, tag):
    """
    A prefix bound to C{uri} in C{scope}; if there is none, a fresh one,
    declared in C{tag}.

    @return: C{(prefix, scope)}, the scope with the new binding if one was
        made (a copy: the parent's scope is left as it was).
    """
    for prefix, bound in scope.items():
        if bound == uri:
            return prefix, scope
    scope = dict(scope)
    number = 0
    while "ns%d" % (number,) in scope:
        number += 1
    prefix = "ns%d" % (number,)
    scope[prefix] = uri
    tag.append(" xmlns:%s='%s'" % (prefix, escapeAttribute(uri)))
    return prefix, scope
