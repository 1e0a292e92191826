"""
Tests for L{clientproxy.xmpp.caps}: reading XEP-0115 caps and disco#info
results, and the verification string, against the XEP's own examples.
"""

from twisted.trial import unittest

from clientproxy.xmpp.caps import (
    NS_DISCO_INFO,
    Caps,
    capsOf,
    parseDiscoInfo,
    verificationString,
    verifies,
    verString,
)
from tests.helpers import inStream

SIMPLE = """<query xmlns='http://jabber.org/protocol/disco#info'>
<identity category='client' name='Exodus 0.9.1' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
</query>"""

COMPLEX = """<query xmlns='http://jabber.org/protocol/disco#info'>
<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
<identity xml:lang='el' category='client' name='\u03a8 0.11' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
<x xmlns='jabber:x:data' type='result'>
<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
<field var='os'><value>Mac</value></field>
<field var='os_version'><value>10.5.1</value></field>
<field var='software'><value>Psi</value></field>
<field var='software_version'><value>0.11</value></field>
</x>
</query>"""


def query(xml):
    return inStream("<iq type='result'>%s</iq>" % (xml,)).firstChildElement()


class VerificationTests(unittest.TestCase):
    """
    Reading disco#info results and checking them against a caps C{ver}: the
    XEP's examples, and answers forged or ambiguous enough that they must
    not be believed or cached.
    """

    def test_simpleExample(self):
        """
        XEP-0115 5.2.
        """
        self.assertEqual(verString(parseDiscoInfo(query(SIMPLE))), "QgayPKawpkPSDYmwT/WM94uAlu0=")

    def test_complexExample(self):
        """
        XEP-0115 5.3: two identities with xml:lang, and a form.
        """
        self.assertEqual(verString(parseDiscoInfo(query(COMPLEX))), "q07IKJEyjvHSyhy//CH0CxmKi8w=")

    def test_verifies(self):
        """
        An answer verifies only against the C{ver} it hashes to, with a known
        hash named: a legacy C{<c/>} (no hash), another hash function or another
        C{ver} does not verify.
        """
        info = parseDiscoInfo(query(SIMPLE))
        node = "http://code.google.com/p/exodus"
        self.assertTrue(verifies(info, Caps(node, "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1")))
        self.assertFalse(verifies(info, Caps(node, "QgayPKawpkPSDYmwT/WM94uAlu0=", None)))
        self.assertFalse(verifies(info, Caps(node, "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-256")))
        self.assertFalse(verifies(info, Caps(node, "other", "sha-1")))

    def test_poisoning(self):
        """
        An answer with a feature the ver does not cover does not verify.
        """
        poisoned = SIMPLE.replace("</query>", "<feature var='urn:poison'/></query>")
        caps = Caps("n", "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1")
        self.assertFalse(verifies(parseDiscoInfo(query(poisoned)), caps))

    def test_duplicateFeatureInvalid(self):
        """
        XEP-0115 5.4: a duplicate feature makes the result invalid, even if
        its hash were made to match.
        """
        doubled = SIMPLE.replace(
            "</query>", "<feature var='http://jabber.org/protocol/muc'/></query>"
        )
        info = parseDiscoInfo(query(doubled))
        self.assertFalse(info.valid)
        self.assertFalse(verifies(info, Caps("n", verString(info), "sha-1")))

    def assertForgeryRefused(self, honestXML, forgedXML):
        """
        C{forgedXML} is another answer than C{honestXML} with the same
        verification string (so, before the check, it verified against the
        honest answer's ver): it is invalid, and does not verify; the
        honest one still does.
        """
        honest, forged = parseDiscoInfo(query(honestXML)), parseDiscoInfo(query(forgedXML))
        self.assertNotEqual(
            (honest.identities, honest.features), (forged.identities, forged.features)
        )
        self.assertEqual(verificationString(forged), verificationString(honest))
        caps = Caps("n", verString(honest), "sha-1")
        self.assertTrue(verifies(honest, caps))
        self.assertFalse(forged.valid)
        self.assertFalse(verifies(forged, caps))

    def test_featuresRegroupedRefused(self):
        """
        A C{<} inside a feature var regroups features: C{a<b} hashes as
        C{a} and C{b}. An answer that claims the honest client lacks both
        (and has one nobody asks for) is refused.
        """
        self.assertForgeryRefused(
            "<query xmlns='%s'><identity category='client' type='bot'/>"
            "<feature var='urn:a'/><feature var='urn:b'/></query>" % (NS_DISCO_INFO,),
            "<query xmlns='%s'><identity category='client' type='bot'/>"
            "<feature var='urn:a&lt;urn:b'/></query>" % (NS_DISCO_INFO,),
        )

    def test_featureInIdentityNameRefused(self):
        """
        An identity named C{<urn:a} hashes as an identity without a name
        followed by feature C{urn:a}: an answer with no features at all
        that verifies against a client with one is refused.
        """
        self.assertForgeryRefused(
            "<query xmlns='%s'><identity category='client' type='bot'/>"
            "<feature var='urn:a'/></query>" % (NS_DISCO_INFO,),
            "<query xmlns='%s'><identity category='client' type='bot' name='&lt;urn:a'/>"
            "</query>" % (NS_DISCO_INFO,),
        )

    def test_slashInIdentityRefused(self):
        """
        A C{/} in an identity's fields moves the fields' boundaries: type
        C{pc/} and lang C{a} hash as type C{pc} and name C{a/...}. Both
        answers are refused (a client whose identity holds a C{/} is
        believed for itself alone).
        """
        honestXML = (
            "<query xmlns='%s'><identity category='client' type='pc' name='a/b'/>"
            "<feature var='urn:a'/></query>" % (NS_DISCO_INFO,)
        )
        forgedXML = (
            "<query xmlns='%s'><identity category='client' type='pc/' xml:lang='a' name='b'/>"
            "<feature var='urn:a'/></query>" % (NS_DISCO_INFO,)
        )
        honest, forged = parseDiscoInfo(query(honestXML)), parseDiscoInfo(query(forgedXML))
        self.assertNotEqual(honest.identities, forged.identities)
        self.assertEqual(verificationString(forged), verificationString(honest))
        self.assertFalse(honest.valid)
        self.assertFalse(forged.valid)
        self.assertFalse(verifies(forged, Caps("n", verString(honest), "sha-1")))

    def test_featureAsFormRefused(self):
        """
        A form of its FORM_TYPE alone hashes like a feature: an answer that
        turns the honest client's last feature into such a form is refused.
        """
        self.assertForgeryRefused(
            "<query xmlns='%s'><identity category='client' type='bot'/>"
            "<feature var='urn:a'/><feature var='urn:z'/></query>" % (NS_DISCO_INFO,),
            "<query xmlns='%s'><identity category='client' type='bot'/>"
            "<feature var='urn:a'/><x xmlns='jabber:x:data' type='result'>"
            "<field var='FORM_TYPE' type='hidden'><value>urn:z</value></field></x>"
            "</query>" % (NS_DISCO_INFO,),
        )

    def test_featureAsIdentityRefused(self):
        """
        An identity without a type hashes like a feature with three
        slashes: an answer that turns the honest client's
        C{http://example.org/x} into the identity C{(http:, '',
        example.org, x)} is refused.
        """
        self.assertForgeryRefused(
            "<query xmlns='%s'><identity category='client' type='bot'/>"
            "<feature var='http://example.org/x'/></query>" % (NS_DISCO_INFO,),
            "<query xmlns='%s'><identity category='client' type='bot'/>"
            "<identity category='http:' xml:lang='example.org' name='x'/>"
            "</query>" % (NS_DISCO_INFO,),
        )

    def test_lessThanInFormsRefused(self):
        """
        A C{<} in a form type, a field var or a value is refused too.
        """
        for form in (
            "<field var='FORM_TYPE' type='hidden'><value>urn:t&lt;x</value></field>",
            "<field var='FORM_TYPE' type='hidden'><value>urn:t</value></field>"
            "<field var='a&lt;b'><value>v</value></field>",
            "<field var='FORM_TYPE' type='hidden'><value>urn:t</value></field>"
            "<field var='a'><value>v&lt;w</value></field>",
        ):
            xml = SIMPLE.replace(
                "</query>", "<x xmlns='jabber:x:data' type='result'>%s</x></query>" % (form,)
            )
            self.assertFalse(parseDiscoInfo(query(xml)).valid, form)

    def test_examplesStillValid(self):
        """
        The XEP's own examples (a C{/} in features and form values, which
        are allowed) are valid.
        """
        self.assertTrue(parseDiscoInfo(query(SIMPLE)).valid)
        self.assertTrue(parseDiscoInfo(query(COMPLEX)).valid)

    def test_formWithoutHiddenFormTypeIgnored(self):
        """
        A form whose FORM_TYPE field is not hidden is ignored (XEP-0115 5.4): it
        is not read and does not change the verification string.
        """
        form = (
            "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'>"
            "<value>urn:x</value></field></x></query>"
        )
        info = parseDiscoInfo(query(SIMPLE.replace("</query>", form)))
        self.assertEqual(info.forms, {})
        self.assertEqual(verString(info), "QgayPKawpkPSDYmwT/WM94uAlu0=")


class CapsOfTests(unittest.TestCase):
    """
    Reading the XEP-0115 C{<c/>} of a presence.
    """

    def test_read(self):
        """
        A presence's C{<c/>} gives its node, ver and hash.
        """
        presence = inStream(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
            "node='http://jitsi.org/jicofo' ver='abc='/></presence>"
        )
        self.assertEqual(capsOf(presence), Caps("http://jitsi.org/jicofo", "abc=", "sha-1"))

    def test_legacy(self):
        """
        A legacy C{<c/>} (no hash) is read but cannot be verified; disco#info is
        asked about its C{node#ver}.
        """
        presence = inStream(
            "<presence><c xmlns='http://jabber.org/protocol/caps' node='n' ver='1.0'/></presence>"
        )
        caps = capsOf(presence)
        self.assertFalse(caps.verifiable)
        self.assertEqual(caps.discoNode, "n#1.0")

    def test_absentOrIncomplete(self):
        """
        A presence with no C{<c/>}, or one without node and ver, has no caps.
        """
        self.assertIsNone(capsOf(inStream("<presence/>")))
        self.assertIsNone(
            capsOf(inStream("<presence><c xmlns='http://jabber.org/protocol/caps'/></presence>"))
        )
