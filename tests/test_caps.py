"""
Tests for L{clientproxy.caps}: reading XEP-0115 caps and disco#info
results, and the verification string, against the XEP's own examples.
"""

from twisted.trial import unittest

from clientproxy.caps import Caps, capsOf, parseDiscoInfo, verifies, verString
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

    def test_formWithoutHiddenFormTypeIgnored(self):
        form = (
            "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'>"
            "<value>urn:x</value></field></x></query>"
        )
        info = parseDiscoInfo(query(SIMPLE.replace("</query>", form)))
        self.assertEqual(info.forms, {})
        self.assertEqual(verString(info), "QgayPKawpkPSDYmwT/WM94uAlu0=")


class CapsOfTests(unittest.TestCase):
    def test_read(self):
        presence = inStream(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
            "node='http://jitsi.org/jicofo' ver='abc='/></presence>"
        )
        self.assertEqual(capsOf(presence), Caps("http://jitsi.org/jicofo", "abc=", "sha-1"))

    def test_legacy(self):
        presence = inStream(
            "<presence><c xmlns='http://jabber.org/protocol/caps' node='n' ver='1.0'/></presence>"
        )
        caps = capsOf(presence)
        self.assertFalse(caps.verifiable)
        self.assertEqual(caps.discoNode, "n#1.0")

    def test_absentOrIncomplete(self):
        self.assertIsNone(capsOf(inStream("<presence/>")))
        self.assertIsNone(
            capsOf(inStream("<presence><c xmlns='http://jabber.org/protocol/caps'/></presence>"))
        )
