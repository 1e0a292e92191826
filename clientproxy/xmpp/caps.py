# -*- test-case-name: tests.test_caps -*-
"""
Entity capabilities (XEP-0115) and service discovery results (XEP-0030),
read and verified: pure functions on domish elements.

A resource's presence carries C{<c xmlns='http://jabber.org/protocol/caps'
hash='sha-1' node='...' ver='...'/>}; C{ver} is a hash of what a
C{disco#info} query to the resource returns. Verifying it (XEP-0115
section 5) is what makes it safe to cache the answer by C{ver} and share it
between resources: a client that answers with other features than its
C{ver} says cannot make the component believe another client supports
them. A C{<c/>} without C{hash} (the legacy form) or with a hash we do not
know cannot be verified.

wokkel's own C{disco} module does not import with current Twisted (its
C{data_form} imports C{twisted.python.compat._PY3}, removed in Twisted
21.2), hence this small module of our own.
"""

import base64
import hashlib

from twisted.words.xish import domish

NS_CAPS = "http://jabber.org/protocol/caps"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DATA = "jabber:x:data"
NS_XML = "http://www.w3.org/XML/1998/namespace"

#: The hash functions of XEP-0115 (the IANA names) that can be checked.
HASHES = {
    "sha-1": hashlib.sha1,
    "sha-224": hashlib.sha224,
    "sha-256": hashlib.sha256,
    "sha-384": hashlib.sha384,
    "sha-512": hashlib.sha512,
    "md5": hashlib.md5,
}


class Caps:
    """
    What a presence's C{<c/>} says.

    @ivar node: the software's URI.
    @ivar ver: the verification string (or a legacy version).
    @ivar hash: the hash function's name, C{None} in the legacy form.
    """

    __slots__ = ("node", "ver", "hash")

    def __init__(self, node, ver, hash=None):
        self.node = node
        self.ver = ver
        self.hash = hash

    def __eq__(self, other):
        return isinstance(other, Caps) and (self.node, self.ver, self.hash) == (
            other.node,
            other.ver,
            other.hash,
        )

    def __hash__(self):
        return hash((self.node, self.ver, self.hash))

    def __repr__(self):
        return "Caps(%r, %r, %r)" % (self.node, self.ver, self.hash)

    @property
    def verifiable(self):
        return self.hash in HASHES

    @property
    def discoNode(self):
        """
        The node to ask C{disco#info} about: C{node#ver}.
        """
        return "%s#%s" % (self.node, self.ver)


def capsOf(presence):
    """
    The L{Caps} of a presence, or C{None} when it has no usable C{<c/>}.
    """
    for child in presence.elements():
        if child.uri == NS_CAPS and child.name == "c":
            node, ver = child.getAttribute("node"), child.getAttribute("ver")
            if node and ver:
                return Caps(node, ver, child.getAttribute("hash"))
            return None
    return None


class DiscoInfo:
    """
    A C{disco#info} result: identities as C{(category, type, lang, name)},
    features, and extended information forms as C{{FORM_TYPE: {var:
    [values]}}}.

    @ivar valid: C{False} when the result breaks XEP-0115 section 5.4
        (a duplicate identity, feature or form type; a C{<} in any field,
        or a C{/} in an identity's, which make the verification string
        ambiguous): it must not be cached.
    """

    def __init__(self, identities, features, forms, valid=True):
        self.identities = identities
        self.features = features
        self.forms = forms
        self.valid = valid


def _text(element):
    return "".join(str(c) for c in element.children if not isinstance(c, domish.Element))


def parseDiscoInfo(query):
    """
    Read a C{<query xmlns='http://jabber.org/protocol/disco#info'/>}.
    """
    identities, features, forms = [], [], {}
    valid = True
    for child in query.elements():
        if child.uri == NS_DISCO_INFO and child.name == "identity":
            identities.append(
                (
                    child.getAttribute("category", ""),
                    child.getAttribute("type", ""),
                    child.getAttribute((NS_XML, "lang"), ""),
                    child.getAttribute("name", ""),
                )
            )
        elif child.uri == NS_DISCO_INFO and child.name == "feature":
            var = child.getAttribute("var")
            if var is not None:
                features.append(var)
        elif child.uri == NS_DATA and child.name == "x":
            formType, fields = _parseForm(child)
            if formType is None:
                continue
            if formType in forms:
                valid = False
            forms[formType] = fields
    if len(set(identities)) != len(identities) or len(set(features)) != len(features):
        valid = False
    elif not _unambiguous(identities, features, forms):
        valid = False
    return DiscoInfo(identities, frozenset(features), forms, valid)


def _unambiguous(identities, features, forms):
    """
    Whether the verification string of these parts could have come from
    them alone: no C{<} (which ends every part) in any field, and no C{/}
    (which joins an identity's fields) in an identity. With either, other
    parts hash the same: C{<feature var='a&lt;b'/>} stands for features
    C{a} and C{b}, an identity named C{<a} for feature C{a} (XEP-0115 5.4,
    the note of XEP-0390 on its ambiguity): another client of the target
    could answer for an honest client's C{ver} with features regrouped.
    Nor an identity without category or type, nor a form without fields:
    those hash like features. What is left (a feature with three slashes
    read as an identity, sorted form fields read as features) needs an
    honest client whose answer has that shape; and what a resource
    advertises only orders dispatch (L{clientproxy.routing.selection}: in C{auto}
    mode the others are asked after the advertisers), so a wrong belief
    costs a refusal and a retry, never a request.
    """
    for identity in identities:
        if not (identity[0] and identity[1]):
            # XEP-0030 requires both; without them, a feature such as
            # http://example.org/x reads as an identity.
            return False
        for field in identity:
            if "<" in field or "/" in field:
                return False
    for feature in features:
        if "<" in feature:
            return False
    for formType, fields in forms.items():
        if "<" in formType or not fields:
            # A form of its FORM_TYPE alone reads as a feature.
            return False
        for var, values in fields.items():
            if "<" in var:
                return False
            for value in values:
                if "<" in value:
                    return False
    return True


def _parseForm(form):
    """
    C{(FORM_TYPE, {var: [values]})} of a data form; C{(None, None)} when it
    has no hidden FORM_TYPE field (such a form is ignored, XEP-0115 5.4).
    """
    formType = None
    fields = {}
    for field in form.elements():
        if field.uri != NS_DATA or field.name != "field":
            continue
        values = [_text(v) for v in field.elements() if v.uri == NS_DATA and v.name == "value"]
        var = field.getAttribute("var")
        if var == "FORM_TYPE":
            if field.getAttribute("type") != "hidden" or not values:
                return None, None
            formType = values[0]
        elif var is not None:
            fields[var] = values
    return formType, fields


def verificationString(info):
    """
    The string XEP-0115 section 5.1 hashes: identities, features and forms,
    each sorted, each part followed by C{<}.
    """
    parts = []
    for identity in sorted(info.identities):
        parts.append("/".join(identity) + "<")
    for feature in sorted(info.features):
        parts.append(feature + "<")
    for formType in sorted(info.forms):
        parts.append(formType + "<")
        fields = info.forms[formType]
        for var in sorted(fields):
            parts.append(var + "<")
            for value in sorted(fields[var]):
                parts.append(value + "<")
    return "".join(parts)


def verString(info, hash="sha-1"):
    """
    The C{ver} that C{info} hashes to with the hash function C{hash}.
    """
    digest = HASHES[hash](verificationString(info).encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def verifies(info, caps):
    """
    Whether C{info} is what C{caps} announced: a valid result whose hash is
    C{caps.ver}.
    """
    return caps.verifiable and info.valid and verString(info, caps.hash) == caps.ver
