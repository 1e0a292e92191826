"""
Tests for L{clientproxy.xmpp.writer}: whatever well-formed XML the parser was
given, the writer's output is well-formed, namespace-well-formed, carries
the same infoset, keeps every prefix declaration, and survives any depth.
"""

import sys

from hypothesis import example, given, settings, strategies as st
from twisted.trial import unittest
from twisted.words.xish import domish

from clientproxy.xmpp import writer as xml_module
from clientproxy.xmpp.writer import NS_COMPONENT, NS_XML, parseStanza, toXml
from tests.helpers import inStream
from tests.xmlgen import (
    declaredPrefixes,
    frames,
    fromDomish,
    infoset,
    payloads,
    read,
    readStanzas,
    render,
)

WRAP = "<iq type='get' id='1'>%s</iq>"


def roundTrip(payload):
    """
    Parse C{payload} inside a stanza as the component's stream does, write
    the stanza back, and return C{(what went in, what came out)} as read by
    the strict reader.
    """
    xml = WRAP % (payload,)
    [before] = readStanzas(xml.encode("utf-8"))
    [after] = readStanzas(toXml(inStream(xml)).encode("utf-8"))
    return before, after


class WriterProperties(unittest.TestCase):
    """
    The writer against adversarial but well-formed input.
    """

    def assertSameTree(self, before, after):
        # Not assertEqual: its diff of two deep trees takes minutes.
        self.assertTrue(infoset(after) == infoset(before), "the infoset changed")
        for inside, outside in zip(declaredPrefixes(before), declaredPrefixes(after)):
            self.assertLessEqual(inside, outside)

    @settings(max_examples=300, deadline=None)
    @given(payloads)
    def test_sameInfoset(self, payload):
        """
        Any well-formed payload, written back, reads with a strict
        namespace-aware parser as the same infoset, with every prefix
        declaration it came with still in scope.
        """
        self.assertSameTree(*roundTrip(payload))

    @settings(max_examples=20, deadline=None)
    @given(st.lists(frames, min_size=1, max_size=4))
    def test_deep(self, spine):
        """
        Thousands of levels (a 10 KB payload nested 1,500 deep was once
        lost to a RecursionError) come out whole.
        """
        self.assertSameTree(*roundTrip(render(spine, 3000)))

    @settings(max_examples=100, deadline=None)
    @given(payloads)
    def test_parseStanzaRoundTrip(self, payload):
        """
        What is stored (the offline queue) reads back as it was written.
        """
        stanza = inStream(WRAP % (payload,))
        text = toXml(stanza)
        self.assertEqual(toXml(parseStanza(text)), text)


class WriterExamples(unittest.TestCase):
    """
    The cases that once broke the stream, and the common stanza's form.
    """

    def test_namespaceNameEscaped(self):
        """
        An ampersand in a namespace name came out bare with domish: the
        server closed the stream as not-well-formed.
        """
        stanza = inStream("<iq type='result' id='1'><q xmlns='urn:x:1?q=1&amp;r=2'/></iq>")
        out = toXml(stanza)
        self.assertIn("xmlns='urn:x:1?q=1&amp;r=2'", out)
        [iq] = readStanzas(out.encode("utf-8"))
        self.assertEqual(iq[3][0][0], "urn:x:1?q=1&r=2 q")

    def test_commonStanzaUnchanged(self):
        """
        A stanza in the stream's namespace with no prefixes is written as
        it came, without a namespace declaration on its root.
        """
        xml = (
            "<iq type='get' id='1' from='a@b/c' to='p.x' xml:lang='en'>"
            "<query xmlns='urn:x'><item a='&lt;&amp;&apos;'>t &amp; &lt;u&gt;</item></query></iq>"
        )
        self.assertEqual(toXml(inStream(xml)), xml)

    def test_prefixesKept(self):
        """
        Prefixed elements and attributes are written as they came, with their
        prefixes and declarations, not renamed.
        """
        xml = "<iq type='get' id='1'><x:q xmlns:x='urn:x' xmlns:y='urn:y' y:a='1'><x:i/></x:q></iq>"
        self.assertEqual(toXml(inStream(xml)), xml)

    def test_freshPrefixForUnboundAttribute(self):
        """
        An attribute in a namespace no prefix is bound to (built by hand)
        gets a fresh prefix that does not shadow one in scope.
        """
        element = domish.Element((None, "iq"))
        child = element.addElement(("urn:x", "q"))
        child.localPrefixes["ns0"] = "urn:other"
        child[("urn:y", "a")] = "v"
        [iq] = readStanzas(toXml(element).encode("utf-8"))
        q = iq[3][0]
        self.assertEqual(q[1], {"urn:y a": "v"})
        self.assertIn(("ns0", "urn:other"), q[2])

    def test_whitespaceInAttributesKept(self):
        """
        Tab, newline and carriage return in an attribute value survive a
        parser's attribute-value normalisation.
        """
        element = domish.Element((None, "message"))
        element["a"] = "x\ty\nz\r"
        element.addElement("body", content="line\r\nnext")
        [message] = readStanzas(toXml(element).encode("utf-8"))
        self.assertEqual(message[1]["a"], "x\ty\nz\r")
        self.assertEqual(message[3][0][3], ["line\r\nnext"])

    def test_xmlLang(self):
        """
        An attribute in the XML namespace is written with the C{xml:} prefix,
        which XML binds itself, and no declaration of it.
        """
        element = domish.Element((None, "iq"))
        element[(NS_XML, "lang")] = "en"
        self.assertEqual(toXml(element), "<iq xml:lang='en'/>")

    def test_noNamespaceUnderDefault(self):
        """
        An element in no namespace below one with a default namespace is
        written with an empty default declaration.
        """
        stanza = inStream("<iq type='get' id='1'><q xmlns='urn:x'><e xmlns=''><f/></e></q></iq>")
        [iq] = readStanzas(toXml(stanza).encode("utf-8"))
        e = iq[3][0][3][0]
        self.assertEqual((e[0], e[3][0][0]), ("e", "f"))

    def test_readerIsStrict(self):
        """
        The reader the tests rely on rejects what the old writer produced.
        """
        from xml.parsers.expat import ExpatError

        self.assertRaises(ExpatError, read, b"<q xmlns='urn:x:1?q=1&r=2'/>")
        self.assertRaises(ExpatError, read, b"<x:q/>")


def linesRun(function, *args):
    """
    Call C{function(*args)} and return how many lines of
    L{clientproxy.xmpp.writer} ran meanwhile: a count of the writer's work that,
    unlike time, does not depend on the machine or its load.
    """
    count = [0]
    filename = xml_module.__file__

    def local(frame, event, arg):
        if event == "line":
            count[0] += 1
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == filename else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        function(*args)
    finally:
        sys.settrace(previous)
    return count[0]


#: How a level of a nested tree binds and uses prefixes: whether it
#: declares a prefix for a namespace of its own, and which (one rebound at
#: every level, one of the writer's fresh names, or one of its own); whose
#: namespace its element is in (its own, or an ancestor's up to three levels
#: up); and whether it has an attribute in a namespace no prefix is bound
#: to (so the writer makes up a prefix).
levels = st.tuples(
    st.booleans(),
    st.sampled_from(["p", "ns0", "ns1", "own"]),
    st.integers(min_value=0, max_value=3),
    st.booleans(),
)


def nested(spine, depth, root="iq"):
    """
    A stanza with a chain of C{depth} elements below it, level k made as
    C{spine[k % len(spine)]} (see L{levels}) says; every level has an
    attribute in its own namespace too.

    @return: C{(stanza, the innermost element)}.
    """
    stanza = top = domish.Element((NS_COMPONENT, root), defaultUri=NS_COMPONENT)
    uris = []
    for k in range(depth):
        declare, prefix, up, fresh = spine[k % len(spine)]
        uris.append("urn:example:%d" % (k,))
        uri = uris[max(k - up, 0)]
        child = domish.Element((uri, "e"), defaultUri=NS_COMPONENT)
        if declare:
            child.localPrefixes["q%d" % (k,) if prefix == "own" else prefix] = uris[k]
        child[(uris[k], "a")] = str(k)
        if fresh:
            child[("urn:unbound:%d" % (k,), "b")] = "v"
        top.addChild(child)
        top = child
    return stanza, top


#: Lines of the writer run per element of the trees above, at most (about
#: 120 are), and once per tree. The quadratic writer this replaced ran
#: about 3,000 per element at a depth of 400.
LINES_PER_ELEMENT = 200
LINES_PER_TREE = 100


class WriterWork(unittest.TestCase):
    """
    The writer's work is linear in the size of the tree, whatever prefixes
    are declared at whatever depth: a peer's stanza costs what it weighs.
    """

    def assertLinear(self, stanza, elements):
        """
        Assert that writing C{stanza} (of C{elements} elements) runs at
        most L{LINES_PER_ELEMENT} lines of the writer per element, and
        that what it writes reads strictly as the same tree; return it.
        """
        lines = linesRun(toXml, stanza)
        self.assertLessEqual(lines, LINES_PER_ELEMENT * elements + LINES_PER_TREE)
        written = toXml(stanza)
        [read] = readStanzas(written.encode("utf-8"))
        self.assertTrue(infoset(read) == infoset(fromDomish(stanza)), "the infoset changed")
        return written

    @settings(max_examples=30, deadline=None)
    @given(st.lists(levels, min_size=1, max_size=5), st.integers(min_value=1, max_value=400))
    @example([(True, "own", 0, True)], 400)
    @example([(True, "ns0", 1, True)], 400)
    def test_nestedPrefixesLinear(self, spine, depth):
        """
        A chain of elements that declare, rebind and use prefixes, and
        need fresh ones, is written with work linear in its length (the
        old writer copied the whole scope at each declaring element and
        searched it, and fresh names from ns0, at each prefixed name).
        """
        stanza, _ = nested(spine, depth)
        self.assertLinear(stanza, depth + 1)

    def test_largeMessageLinear(self):
        """
        A 247 KB message whose payload nests a prefix declaration at every
        level (one took 2 to 3 s of CPU to write) is written with linear
        work.
        """
        depth = 3900
        stanza, inner = nested([(True, "own", 0, False)], depth, root="message")
        stanza["from"] = "alice@example.org/abc"
        stanza["to"] = "svc@example.org/a"
        inner.addContent("x" * 100)
        written = self.assertLinear(stanza, depth + 1)
        self.assertEqual(len(written.encode("utf-8")) // 1000, 247)
