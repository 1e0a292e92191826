# -*- test-case-name: tests.test_xml -*-
"""
A faster serialiser for the stanzas the component forwards.

L{domish.Element.toXml} is general (namespace prefixes, partial
serialisation), and a quarter of the component's time went to it. Stanzas
on the wire almost never use namespace prefixes: each element is in its
parent's default namespace or declares its own with C{xmlns}, and the only
qualified attribute is C{xml:lang}. L{toXml} serialises exactly that case
itself, producing the same string as domish, and hands anything else
(prefixes, other qualified attributes) to domish. The tests compare both on
many stanzas.
"""

import re

from twisted.words.xish.domish import SerializedXML, escapeToXml

NS_XML = "http://www.w3.org/XML/1998/namespace"

_TEXT_SPECIAL = re.compile(r"[&<>]").search
_ATTRIBUTE_SPECIAL = re.compile(r"[&<>'\"]").search


class _NeedsDomish(Exception):
    """
    The element uses something only domish serialises.
    """


def toXml(element):
    """
    Serialise C{element} as C{element.toXml()} does.
    """
    parts = []
    try:
        _serialise(element, "", parts.append)
    except _NeedsDomish:
        return element.toXml()
    return "".join(parts)


def _serialise(element, inherited, write):
    if element.localPrefixes:
        raise _NeedsDomish()
    default = element.defaultUri
    if default is None:
        default = inherited
    uri = element.uri
    if uri is None:
        uri = default
    if uri != default or uri == NS_XML:
        raise _NeedsDomish()
    name = element.name
    write("<" + name)
    if default != inherited:
        write(" xmlns='%s'" % (default,))
    for key, value in element.attributes.items():
        if _ATTRIBUTE_SPECIAL(value):
            value = escapeToXml(value, 1)
        if key.__class__ is tuple:
            if key[0] != NS_XML:
                raise _NeedsDomish()
            write(" xml:%s='%s'" % (key[1], value))
        else:
            write(" %s='%s'" % (key, value))
    children = element.children
    if not children:
        write("/>")
        return
    write(">")
    for child in children:
        kind = child.__class__
        if kind is str:
            write(escapeToXml(child) if _TEXT_SPECIAL(child) else child)
        elif kind is SerializedXML:
            write(child)
        else:
            _serialise(child, default, write)
    write("</%s>" % (name,))
