# -*- test-case-name: tests.test_parser -*-
"""
The parser of the component's stream: domish elements, as Twisted's own
C{domish.elementStream} builds them, plus the bytes each stanza's content
came in as.

Forwarding a stanza changes its root's addresses and nothing below. So each
stanza (a child of the stream's root) keeps in L{Element.raw} the bytes
between the end of its start tag and the start of its end tag, exactly as
the server sent them, and L{clientproxy.xmpp.writer.stanzaBytes} writes a new
start tag, those bytes, and the end tag: the payload is neither rebuilt nor
serialised again. This is safe because:

 - the bytes were read by expat in full before the stanza is handed on, so
   they are well-formed XML (escapes, nesting, quoting); expat reads them
   as UTF-8 whatever an XML declaration says, so they are UTF-8;
 - they mean the same where they are written: the namespace context of a
   stanza's content is its stream's root declarations plus its own start
   tag's. The component's stream root declares exactly what the server's
   does (the default C{jabber:component:accept} and the C{stream} prefix);
   the start tag written keeps the stanza's own declarations. When the
   server's stream root declares anything else, no stanza keeps its bytes;
 - what expat reads but a tree would not carry stays out: a stanza with a
   comment or processing instruction inside does not keep its bytes (RFC
   6120 11.1 forbids them; a server would close the component's stream if
   they went out), and after a document type declaration (which could
   declare entities the server does not know) no stanza does.

A stanza that keeps no bytes is written from its tree, as before.
"""

import re

import pyexpat
from twisted.words.xish import domish

from clientproxy.xmpp.writer import NS_COMPONENT, NS_STREAMS

#: The start tag at the start of a buffer, up to its closing C{>}; a C{>}
#: inside a quoted attribute value does not end it. Only used on bytes expat
#: has already read as a well-formed start tag.
_START_TAG = re.compile(rb"<[^>'\"]*(?:(?:'[^']*'|\"[^\"]*\")[^>'\"]*)*>")

_SLASH = ord("/")

#: The most a stanza may take, in bytes read (counted from the C{<} of its
#: start tag, whole or not yet, to the end of the read that passes the
#: bound, so a little more may be read; a start tag read at once is measured
#: itself) and in elements. A stanza over either is not built further and is dropped
#: (L{StreamParser.StanzaDropped}); the stream goes on.
MAX_STANZA_BYTES = 10 * 2**20
MAX_STANZA_ELEMENTS = 100000

#: Bytes read between two renewals of the expat parser (L{StreamParser._renew}):
#: what bounds the names expat keeps.
RENEW_BYTES = 2**16

#: The stream root's declarations the component's own stream root matches.
_STREAM_PREFIXES = {"stream": NS_STREAMS}


class Element(domish.Element):
    """
    A parsed element.

    @ivar raw: for a stanza, the bytes of its content as they came (see the
        module docstring), or C{None}; for other elements, C{None}. Adding
        children through the element's methods forgets them, as they would
        no longer say what the tree holds.
    @ivar received: for a stanza, how many bytes it came in as, from its
        start tag's C{<} to the end of its end tag (so what a size bound
        measures, before anything is serialised); for other elements, or
        stanzas built otherwise, C{None}.
    @ivar handled: whether a handler has taken the stanza
        (L{clientproxy.xmpp.stanzas.claim}); a class attribute, so reading it
        does not search the children as domish's C{__getattr__} would.
    """

    raw = None
    received = None
    handled = False

    def addChild(self, node):
        self.raw = None
        return domish.Element.addChild(self, node)

    def addContent(self, text):
        self.raw = None
        return domish.Element.addContent(self, text)

    def addRawXml(self, rawxmlstring):
        self.raw = None
        return domish.Element.addRawXml(self, rawxmlstring)


class StreamParser:
    """
    Parses the component's stream, with the events of
    L{domish.ExpatElementStream}: C{DocumentStartEvent(root)},
    C{ElementEvent(stanza)} for each child of the root, and
    C{DocumentEndEvent()}; and C{StanzaDropped(root, reason)} for a stanza
    over L{MAX_STANZA_BYTES} or L{MAX_STANZA_ELEMENTS} (C{reason} is
    C{stanza-too-large} or C{stanza-too-many-elements}): its root as far as
    it was built, which nobody should act on.

    @ivar rawAllowed: whether stanzas keep their bytes: the stream's root
        declared what the component's own does, and no document type
        declaration came.
    """

    def __init__(self):
        self.DocumentStartEvent = None
        self.ElementEvent = None
        self.DocumentEndEvent = None
        self.StanzaDropped = None
        self._parser = self._newParser()
        self._current = None
        self._started = False
        self._defaults = [""]
        self._prefixes = {}
        self.rawAllowed = False
        # The bytes read that a stanza not yet ended may hold, in pieces,
        # and the stream offset of the first.
        self._chunks = []
        self._base = 0
        self._read = 0
        self._keepFrom = 0
        self._stanzaStart = None
        self._copiable = True
        self._doctype = False
        # Elements a stanza may still have; once it is over a bound, why,
        # and how many elements are open that were not built.
        self._budget = MAX_STANZA_ELEMENTS
        self._oversized = None
        self._skipped = 0
        # The stream root's start tag as it came, what to add to expat's
        # byte index to get the stream offset, and the offset after which
        # the expat parser is made anew (see _renew).
        self._header = None
        self._shift = 0
        self._renewAt = RENEW_BYTES

    def _newParser(self):
        """
        A new expat parser with this stream parser's handlers.

        Its C{intern} is C{None}: by default pyexpat interns every element
        and attribute name it reports in a dict kept for the life of the
        parser, so a peer sending fresh names would grow it without bound;
        without it, each name is a string that goes with its stanza. (Expat
        keeps names in tables of its own too: see L{_renew}.)
        """
        parser = pyexpat.ParserCreate("UTF-8", " ", intern=None)
        parser.buffer_text = True
        parser.StartElementHandler = self._onStartElement
        parser.EndElementHandler = self._onEndElement
        parser.CharacterDataHandler = self._onText
        parser.StartNamespaceDeclHandler = self._onStartNamespace
        parser.EndNamespaceDeclHandler = self._onEndNamespace
        parser.CommentHandler = self._onUncopiable
        parser.ProcessingInstructionHandler = self._onUncopiable
        parser.StartDoctypeDeclHandler = self._onDoctype
        return parser

    def _renew(self):
        """
        Between stanzas: replace the expat parser by a new one in the same
        state, and let the old one go with everything it kept.

        Expat keeps every element name, attribute name and prefix it has
        read in tables of its own for the life of the parser, which pyexpat
        cannot empty. The new parser reads the stream root's start tag (its
        events ignored: the namespace declarations are what matter) and the
        bytes read since the last stanza ended from the first C{<} (the
        start of the next stanza, or of the stream's end, not yet whole), so
        it goes on where the old one was. Not done after a document type
        declaration, which the new parser would not have read.
        """
        self._trim()
        pending = b"".join(self._chunks)
        parser = self._newParser()
        parser.StartElementHandler = _ignore
        self._defaults = [""]
        parser.Parse(self._header)
        self._prefixes = {}
        parser.StartElementHandler = self._onStartElement
        self._shift = self._base - len(self._header)
        self._parser = parser
        self._chunks = [pending] if pending else []
        if pending:
            parser.Parse(pending)
        self._renewAt = self._read + RENEW_BYTES

    def parse(self, data):
        """
        Parse C{data}, the next bytes of the stream.

        @raise domish.ParserError: the stream is not well-formed XML.
        """
        if self._oversized is not None:
            # Nothing of it is kept; the next stanza may start in data.
            self._chunks = [data]
            self._base = self._read
        elif self._stanzaStart is None:
            if self._read >= self._renewAt and self._header is not None and not self._doctype:
                self._renew()
            if self._keepFrom >= self._read:
                # All read so far is done with (the common case).
                self._chunks = [data]
                self._base = self._read
            else:
                self._trim()
                self._chunks.append(data)
                if self._read + len(data) - self._base > MAX_STANZA_BYTES and self._opening():
                    # A stanza's start tag, not yet whole, over the bound.
                    self._oversized = "stanza-too-large"
                    self._chunks = [data]
                    self._base = self._read
        else:
            self._chunks.append(data)
            if self._read + len(data) - self._stanzaStart > MAX_STANZA_BYTES:
                self._oversized = "stanza-too-large"
                self._chunks = [data]
                self._base = self._read
        self._read += len(data)
        try:
            self._parser.Parse(data)
        except pyexpat.error as e:
            raise domish.ParserError(str(e))

    def _trim(self):
        """
        Between stanzas: forget the bytes no stanza can start in. The next
        one starts at a C{<} at or after L{_keepFrom} (what comes between
        stanzas is white space), possibly in bytes already read.
        """
        chunks = self._chunks
        while chunks:
            first = chunks[0]
            at = first.find(b"<", max(self._keepFrom - self._base, 0))
            if at < 0:
                del chunks[0]
                self._base += len(first)
                continue
            if at:
                chunks[0] = first[at:]
                self._base += at
            break

    def _index(self):
        """
        The stream offset of the event being handled.
        """
        return self._parser.CurrentByteIndex + self._shift

    def _opening(self):
        """
        Whether the bytes kept between stanzas (from the first C{<}) are
        the start of a stanza's start tag: not of a comment, processing
        instruction or the stream's end tag.
        """
        return self._started and self._chunks[0][1:2] not in (b"!", b"?", b"/", b"")

    def _onStartElement(self, name, attributes):
        if self._oversized is not None and self._current is not None:
            self._skipped += 1
            self._prefixes = {}
            return
        self._budget -= 1
        if self._budget < 0 and self._current is not None:
            self._oversized = "stanza-too-many-elements"
            self._skipped = 1
            self._prefixes = {}
            return
        space, _, local = name.rpartition(" ")
        if attributes and " " in "".join(attributes):
            # Qualified attributes (xml:lang...) are keyed (namespace, name).
            for key in [key for key in attributes if " " in key]:
                attributeSpace, _, attributeName = key.rpartition(" ")
                attributes[(attributeSpace, attributeName)] = attributes.pop(key)
        element = Element.__new__(Element)
        element.uri = space
        element.name = local
        default = self._defaults[-1]
        if default is None and space not in self._prefixes.values():
            # Under xmlns='': what domish's Element makes of it.
            default = space
        element.defaultUri = default
        element.attributes = attributes
        element.localPrefixes = self._prefixes
        element.children = []
        self._prefixes = {}
        parent = self._current
        element.parent = parent
        if parent is not None:
            parent.children.append(element)
            self._current = element
        elif self._started:
            self._current = element
            start = self._stanzaStart = self._index()
            if (
                self._oversized is None
                and self._read - start > MAX_STANZA_BYTES
                and len(self._startTag(start)) > MAX_STANZA_BYTES
            ):
                # Its start tag alone is over the bound (read at once).
                self._oversized = "stanza-too-large"
            self._copiable = self.rawAllowed
            self._budget = MAX_STANZA_ELEMENTS - 1
        else:
            self._started = True
            start = self._index()
            self._header = self._startTag(start)
            self._keepFrom = start + len(self._header)
            self.rawAllowed = (
                not self._doctype
                and element.localPrefixes == _STREAM_PREFIXES
                and element.defaultUri == NS_COMPONENT
            )
            self.DocumentStartEvent(element)

    def _onEndElement(self, _):
        if self._skipped:
            self._skipped -= 1
            return
        element = self._current
        if element is None:
            self.DocumentEndEvent()
            return
        parent = element.parent
        if parent is not None:
            self._current = parent
            return
        self._current = None
        if self._oversized is not None:
            reason, self._oversized = self._oversized, None
            self._keepFrom = self._index()
            self._stanzaStart = None
            if self.StanzaDropped is not None:
                self.StanzaDropped(element, reason)
            return
        raw, self._keepFrom = self._content(self._index())
        if self._copiable:
            element.raw = raw
        element.received = self._keepFrom - self._stanzaStart
        self._stanzaStart = None
        self.ElementEvent(element)

    def _content(self, end):
        """
        The bytes between the end of the stanza's start tag and C{end}
        (where expat reports its end: the start of its end tag, or just
        after an empty element's tag), and the stream offset where the next
        stanza may start, at the earliest.
        """
        start = self._stanzaStart
        # To the end of what was read: the end tag's > may be in a later
        # piece than its start.
        data, base = self._piece(start, self._read)
        contentStart = _START_TAG.match(data, start - base).end()
        if data[contentStart - 2] == _SLASH:
            return b"", end
        # Past the end tag (read whole: expat reported it): where the next
        # stanza may start.
        close = data.find(b">", end - base)
        return data[contentStart : end - base], base + close + 1

    def _piece(self, start, end):
        """
        The bytes kept from stream offset C{start} (those before it are
        let go) to C{end} at least, in one piece, and the stream offset of
        the piece.
        """
        chunks = self._chunks
        base = self._base
        data = chunks[0]
        while base + len(data) <= start:
            base += len(data)
            del chunks[0]
            data = chunks[0]
        self._base = base
        if end - base > len(data):
            data = b"".join(chunks)
            chunks[:] = [data]
        return data, base

    def _startTag(self, start):
        """
        The bytes of the start tag that begins at stream offset C{start},
        which expat has read whole.
        """
        data, base = self._piece(start, self._read)
        at = start - base
        return data[at : _START_TAG.match(data, at).end()]

    def _onText(self, text):
        element = self._current
        if element is not None and self._oversized is None:
            children = element.children
            if children and children[-1].__class__ is str:
                children[-1] += text
            else:
                children.append(text)

    def _onStartNamespace(self, prefix, uri):
        if prefix is None:
            self._defaults.append(uri)
        else:
            self._prefixes[prefix] = uri

    def _onEndNamespace(self, prefix):
        if prefix is None:
            self._defaults.pop()

    def _onUncopiable(self, *args):
        self._copiable = False

    def _onDoctype(self, *args):
        """
        A document type declaration: no stanza keeps its bytes from now
        on, and the expat parser is no longer renewed.
        """
        self._doctype = True
        self.rawAllowed = self._copiable = False


def _ignore(*args):
    """
    An expat handler that does nothing.
    """
