"""
Tests for L{clientproxy.xmpp.parser}: the elements are the ones domish builds,
and a stanza's kept bytes are exactly its content as it came, however the
stream is cut into reads, and only when writing them is safe.
"""

import gc
import tracemalloc

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest
from twisted.words.xish import domish

from clientproxy.xmpp import parser as parser_module
from clientproxy.xmpp.parser import StreamParser
from clientproxy.xmpp.writer import STREAM_ROOT, stanzaBytes, toXml
from tests.xmlgen import infoset, payloads, readStanzas

HEADER = STREAM_ROOT.encode("utf-8")


def parse(data, cuts=(), header=HEADER):
    """
    Feed C{header} and C{data} to a L{StreamParser} in reads cut at
    C{cuts} (offsets into C{data}); return the stanzas it gave.
    """
    parser = StreamParser()
    stanzas = []
    parser.DocumentStartEvent = lambda root: None
    parser.ElementEvent = stanzas.append
    parser.DocumentEndEvent = lambda: None
    parser.parse(header)
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        parser.parse(data[start:cut])
        start = cut
    return stanzas


def domishParse(data):
    """
    The same stanzas as domish's own parser builds them.
    """
    parser = domish.elementStream()
    stanzas = []
    parser.DocumentStartEvent = lambda root: None
    parser.ElementEvent = stanzas.append
    parser.DocumentEndEvent = lambda: None
    parser.parse(HEADER + data)
    return stanzas


class KeptBytesTests(unittest.TestCase):
    def test_content(self):
        """
        A stanza keeps the bytes between its start and end tags, escapes
        and all; a C{>} inside the root's attribute value does not end its
        start tag; an empty element keeps no bytes.
        """
        data = (
            b"<iq a='&gt;>' b=\"'>\" xmlns:x='u'><q xmlns='n'>t&amp;x<x:a/></q></iq>"
            b"<iq/>\n<iq a='1'> </iq>"
        )
        [first, empty, space] = parse(data)
        self.assertEqual(first.raw, b"<q xmlns='n'>t&amp;x<x:a/></q>")
        self.assertEqual(empty.raw, b"")
        self.assertEqual(space.raw, b" ")

    def test_received(self):
        """
        A stanza records how many bytes it came in as, from its start
        tag's C{<} to the end of its end tag, however the reads are cut:
        what a size bound measures before any work on it.
        """
        stanzas = [b"<iq a='>'><q xmlns='n'>t&amp;x</q></iq >", b"<iq/>", b"<iq a='1'> </iq>"]
        data = b"\n".join(stanzas)
        for cuts in ([], [1, 7, 20, len(data) - 1]):
            self.assertEqual([s.received for s in parse(data, cuts)], [len(s) for s in stanzas])

    @settings(max_examples=100, deadline=None)
    @given(payloads, st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
    def test_anyReads(self, payload, cuts):
        """
        However the stream is cut into reads, each stanza keeps exactly its
        content, and the tree is the one domish builds.
        """
        self.assertReadsAsDomish(payload, cuts)

    @settings(max_examples=100, deadline=None)
    @given(payloads, st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
    def test_anyReadsRenewed(self, payload, cuts):
        """
        With the expat parser renewed before every read that starts between
        stanzas (so after partial start tags, white space, the stream's
        end), each stanza is still read as it came: the renewal is not seen.
        """
        self.patch(parser_module, "RENEW_BYTES", 1)
        self.assertReadsAsDomish(payload, cuts)

    def assertReadsAsDomish(self, payload, cuts):
        """
        Assert that stanzas with C{payload}, in a stream cut into reads at
        C{cuts}, keep exactly their content and are the trees domish builds.
        """
        content = payload.encode("utf-8")
        data = b"<iq id='1'>" + content + b"</iq> <message/><iq id='2'>" + content + b"</iq>"
        stanzas = parse(data, [cut % (len(data) + 1) for cut in cuts])
        self.assertEqual([s.raw for s in stanzas], [content, b"", content])
        self.assertEqual([toXml(s) for s in stanzas], [toXml(s) for s in domishParse(data)])

    @settings(max_examples=100, deadline=None)
    @given(payloads)
    def test_writtenFromKeptBytes(self, payload):
        """
        A stanza written from its kept bytes, with its addresses changed,
        reads (strictly) as the same stanza written from its tree.
        """
        data = ("<iq type='get' id='1' xmlns:p='urn:p'>%s</iq>" % (payload,)).encode("utf-8")
        [stanza] = parse(data)
        stanza["to"] = "svc@example.org/a"
        fromBytes = stanzaBytes(stanza)
        stanza.raw = None
        fromTree = stanzaBytes(stanza)
        self.assertEqual(infoset(readStanzas(fromBytes)[0]), infoset(readStanzas(fromTree)[0]))

    def test_cdataAndReferences(self):
        """
        CDATA sections and character references are kept as they came; the
        stanza written from them reads as the same text.
        """
        content = b"<q>&#60;a&#x3E;<![CDATA[<b>&amp;]]></q>"
        [stanza] = parse(b"<iq id='1'>" + content + b"</iq>")
        self.assertEqual(stanza.raw, content)
        [written] = readStanzas(stanzaBytes(stanza))
        self.assertEqual(infoset(written), infoset(readStanzas(toXml(stanza).encode())[0]))

    def test_changedTreeForgetsBytes(self):
        """
        A child added to a stanza is written: the kept bytes are forgotten.
        """
        [stanza] = parse(b"<message><body>hi</body></message>")
        stanza.addElement(("urn:xmpp:chat-markers:0", "markable"))
        self.assertIsNone(stanza.raw)
        self.assertIn(b"markable", stanzaBytes(stanza))
        [stanza] = parse(b"<message><body>hi</body></message>")
        stanza.addContent("more")
        self.assertIn(b"more", stanzaBytes(stanza))

    def test_commentOrInstruction(self):
        """
        A stanza with a comment or processing instruction inside keeps no
        bytes (RFC 6120 forbids both; a server would close the stream on
        them); the next stanza does.
        """
        stanzas = parse(b"<iq><!-- c --><q/></iq><iq><?pi x?><q/></iq><iq><q/></iq>")
        self.assertEqual([s.raw for s in stanzas], [None, None, b"<q/>"])
        self.assertEqual(stanzaBytes(stanzas[0]), b"<iq><q/></iq>")

    def test_doctype(self):
        """
        After a document type declaration (which may declare entities the
        server does not know), no stanza keeps its bytes.
        """
        header = b"<!DOCTYPE s [<!ENTITY e 'x'>]>" + HEADER
        [stanza] = parse(b"<iq><q>&e;</q></iq>", header=header)
        self.assertIsNone(stanza.raw)
        self.assertEqual(stanzaBytes(stanza), b"<iq><q>x</q></iq>")

    def test_otherStreamDeclarations(self):
        """
        A stream root that declares more than the component's own does
        (here a prefix its stanzas may use) leaves every stanza to be
        written from its tree.
        """
        header = HEADER[:-1] + b" xmlns:x='urn:x'>"
        [stanza] = parse(b"<iq><x:q/></iq>", header=header)
        self.assertIsNone(stanza.raw)
        self.assertEqual(stanzaBytes(stanza), b"<iq><ns0:q xmlns:ns0='urn:x'/></iq>")

    def test_renewedWithStreamDeclarations(self):
        """
        A renewed expat parser reads in the stream root's namespace context:
        a prefix the root declared still binds in the stanzas after it.
        """
        self.patch(parser_module, "RENEW_BYTES", 1)
        header = HEADER[:-1] + b" xmlns:x='urn:x'>"
        stanzas = parse(b"<iq><x:q/></iq> <iq><x:q/></iq><iq><x:q/></iq>", [3, 15, 16, 20], header)
        self.assertEqual([s.firstChildElement().uri for s in stanzas], ["urn:x"] * 3)

    def test_readsBetweenStanzasForgotten(self):
        """
        White space between stanzas (a server's keepalive) is not kept
        while waiting for the next stanza.
        """
        parser = StreamParser()
        parser.DocumentStartEvent = parser.ElementEvent = lambda element: None
        parser.parse(HEADER + b"<iq/>")
        for _ in range(100):
            parser.parse(b" ")
        self.assertLessEqual(sum(len(chunk) for chunk in parser._chunks), 1)

    def test_notWellFormed(self):
        """
        What expat refuses is a L{domish.ParserError}, as with domish's
        parser (the stream then closes).
        """
        self.assertRaises(domish.ParserError, parse, b"<iq><q></iq>")


class BoundsTests(unittest.TestCase):
    """
    A stanza over the parser's bounds is dropped, not built further, and
    the stream goes on: the next stanza arrives whole, with its bytes.
    """

    def setUp(self):
        self.parser = StreamParser()
        self.stanzas = []
        self.dropped = []
        self.parser.DocumentStartEvent = lambda root: None
        self.parser.ElementEvent = self.stanzas.append
        self.parser.StanzaDropped = lambda root, reason: self.dropped.append((root, reason))
        self.parser.parse(HEADER)

    def test_tooManyElements(self):
        """
        Elements past the bound are not built.
        """
        self.patch(parser_module, "MAX_STANZA_ELEMENTS", 10)
        self.parser.parse(b"<iq id='big'><q>" + b"<a><b/>t</a>" * 10 + b"</q></iq>")
        self.parser.parse(b"<iq id='next'><q/></iq>")
        [(root, reason)] = self.dropped
        self.assertEqual((root["id"], reason), ("big", "stanza-too-many-elements"))
        self.assertLessEqual(len(list(root.elements())[0].children), 10)
        [stanza] = self.stanzas
        self.assertEqual((stanza["id"], stanza.raw), ("next", b"<q/>"))

    def test_tooLarge(self):
        """
        Bytes past the bound, over several reads, are not kept; a stanza
        starting in the read that ends the dropped one is read whole.
        """
        self.assertDroppedOverReads(b"<message id='big'><body>", b"</body></message>")

    def test_startTagTooLarge(self):
        """
        A start tag counts toward the bound: one over it, over several
        reads, is not kept while it comes, and its stanza is dropped as
        too large, not delivered; the stream goes on.
        """
        self.assertDroppedOverReads(b"<message id='big' a='", b"'><body>hi</body></message>")

    def assertDroppedOverReads(self, opening, closing):
        """
        Assert that a stanza C{opening}, 5,000 bytes, C{closing}, read in
        pieces under a bound of 1,000 bytes, is not kept while it comes and
        is dropped as too large, and that the stanza after it, starting in
        the read that ends it, is read whole.
        """
        self.patch(parser_module, "MAX_STANZA_BYTES", 1000)
        self.parser.parse(opening)
        for _ in range(10):
            self.parser.parse(b"x" * 500)
            self.assertLessEqual(sum(len(chunk) for chunk in self.parser._chunks), 1500)
        self.parser.parse(closing + b"<iq id='next'")
        self.parser.parse(b"><q/></iq>")
        [(root, reason)] = self.dropped
        self.assertEqual((root["id"], reason), ("big", "stanza-too-large"))
        [stanza] = self.stanzas
        self.assertEqual((stanza["id"], stanza.raw), ("next", b"<q/>"))

    def test_startTagTooLargeInOneRead(self):
        """
        An empty stanza whose start tag alone is over the bound, read at
        once, is dropped too.
        """
        self.patch(parser_module, "MAX_STANZA_BYTES", 1000)
        self.parser.parse(b"<message id='big' a='" + b"x" * 2000 + b"'/><iq id='next'><q/></iq>")
        [(root, reason)] = self.dropped
        self.assertEqual((root["id"], reason), ("big", "stanza-too-large"))
        [stanza] = self.stanzas
        self.assertEqual((stanza["id"], stanza.raw), ("next", b"<q/>"))

    def test_smallStanzasInALargeRead(self):
        """
        A read larger than the bound that holds many small stanzas drops
        none of them: each is measured, not the read.
        """
        self.patch(parser_module, "MAX_STANZA_BYTES", 1000)
        self.parser.parse(b"<iq id='1'><q a='x'/></iq>" * 200)
        self.assertEqual((len(self.stanzas), self.dropped), (200, []))


class NamesTests(unittest.TestCase):
    """
    The parser keeps nothing of a stanza once it is handed on: a peer that
    sends names never seen before (which expat's parser would intern for
    the life of the connection) cannot grow the component's memory.
    """

    def test_freshNamesNotKept(self):
        """
        After 20,000 stanzas with fresh element and attribute names, parsed
        and dropped, what the parser still holds has not grown: the bytes
        tracemalloc sees allocated and kept are at most what the names of
        L{parser_module.RENEW_BYTES} of stream take (expat's tables, let go
        when its parser is renewed), not 20,000 stanzas' names (13 MB when
        pyexpat interned them, 5.7 MB in expat's own tables).
        """
        parser = StreamParser()
        parser.DocumentStartEvent = lambda root: None
        parser.ElementEvent = lambda stanza: None
        parser.parse(HEADER)
        stanza = "<iq id='%d'><q-%d xmlns='urn:x' a-%d='v' b%d:c-%d='w' xmlns:b%d='urn:y'/></iq>"
        data = [(stanza % ((n,) * 6)).encode("utf-8") for n in range(20000)]
        parser.parse(data[0])
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.get_traced_memory()[0]
        for chunk in data[1:]:
            parser.parse(chunk)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
        self.assertLess(kept, 512 * 1024)
