"""
Tests for L{clientproxy.xml}: the fast serialiser gives exactly what domish
gives, on stanzas as parsed from the stream, as built by hand, and on
random trees.
"""

import random

from twisted.trial import unittest
from twisted.words.xish import domish
from wokkel.generic import parseXml

from clientproxy.xml import NS_XML, toXml
from tests.helpers import inStream

STANZAS = [
    "<iq type='get' id='1' from='a@b/c' to='p.x' xml:lang='en'><query xmlns='urn:x'/></iq>",
    "<iq type='result' id='&lt;&amp;&apos;&quot;&gt;' to='a@b/c'><q xmlns='urn:x' a='1'>"
    "text &amp; more &lt;here&gt; \u2603<inner b='&apos;'/>tail</q></iq>",
    "<message type='chat' from='a@b' to='c@d'><body>Hi</body><thread>t</thread>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    "<message><body xml:lang='de'>Hallo</body><x xmlns='jabber:x:data' type='form'>"
    "<field var='a'><value>1</value></field></x></message>",
    "<iq type='set' id='2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
    "<publish node='n'><item><entry xmlns='http://www.w3.org/2005/Atom'>"
    "<title>t</title></entry></item></publish></pubsub></iq>",
    "<iq type='get' id='3'><q xmlns='urn:x'><empty xmlns=''/></q></iq>",
    "<iq type='get' id='4'><x:q xmlns:x='urn:x'><x:a/></x:q></iq>",
    "<iq type='get' id='5'><q xmlns='urn:x' xmlns:y='urn:y' y:attr='v'/></iq>",
    "<presence><status>away</status><priority>5</priority></presence>",
]


class SameAsDomishTests(unittest.TestCase):
    def assertSame(self, element):
        self.assertEqual(toXml(element), element.toXml())

    def test_parsedInStream(self):
        for xml in STANZAS:
            self.assertSame(inStream(xml))

    def test_parsedAlone(self):
        for xml in STANZAS:
            self.assertSame(parseXml(xml.encode("utf-8")))

    def test_childrenAlone(self):
        for xml in STANZAS:
            for child in inStream(xml).elements():
                self.assertSame(child)

    def test_builtByHand(self):
        iq = domish.Element((None, "iq"))
        iq["type"] = "get"
        iq[(NS_XML, "lang")] = "en"
        query = iq.addElement(("urn:x", "query"))
        query.addElement("item", content="a < b")
        query.addElement(("urn:y", "other"))["k"] = "'quoted'"
        query.addChild(domish.Element(("", "bare")))
        iq.addRawXml("<raw xmlns='urn:raw'/>")
        self.assertSame(iq)

    def test_randomTrees(self):
        rng = random.Random(7)
        uris = [None, "", "urn:a", "urn:b", "jabber:client"]
        texts = ["", "x", "a&b", "<tag>", "'\"", "\u00e9\u2603"]

        def tree(depth):
            element = domish.Element(
                (rng.choice(uris), rng.choice(["a", "b", "c"])),
                defaultUri=rng.choice([None, None, "urn:d"]),
            )
            for _ in range(rng.randrange(3)):
                element[rng.choice(["k", "l", "m"])] = rng.choice(texts)
            if rng.random() < 0.2:
                element[(NS_XML, "lang")] = "en"
            for _ in range(rng.randrange(4) if depth else 0):
                if rng.random() < 0.3:
                    element.addContent(rng.choice(texts) or "t")
                else:
                    element.addChild(tree(depth - 1))
            return element

        for _ in range(500):
            self.assertSame(tree(3))
