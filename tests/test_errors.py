"""
Tests for L{clientproxy.routing.errors}: the one table of the errors the component
answers with itself, and its copy in docs/routing.md.
"""

import os

from twisted.trial import unittest
from twisted.words.protocols.jabber.error import STANZA_CONDITIONS

from clientproxy.routing.errors import TABLE, UNSHARED, readmeTable

README = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "routing.md"
)
HEADING = "### Errors the component answers with itself"


class ErrorTableTests(unittest.TestCase):
    def test_readmeIsTheTable(self):
        """
        The table in docs/routing.md is the one L{readmeTable} writes from
        L{TABLE}: change the table in code, and regenerate that one.
        """
        with open(README, encoding="utf-8") as f:
            text = f.read()
        after = text[text.index(HEADING) + len(HEADING) :].lstrip("\n")
        lines = after.split("\n\n", 1)[0].splitlines()
        self.assertEqual(lines, readmeTable())

    def test_typesAreRFC6120s(self):
        """
        Every answer has the type RFC 6120 gives its condition (Twisted's
        table, from RFC 3920, plus RFC 6120's C{policy-violation}: modify
        or wait, 8.3.3.12), but for those the table says why not.
        """
        types = {c: {v["type"]} for c, v in STANZA_CONDITIONS.items()}
        types["policy-violation"] = {"modify", "wait"}
        for situation, answer in TABLE:
            if answer is UNSHARED:
                self.assertEqual(answer.type, "wait")
                continue
            self.assertIn(answer.type, types[answer.condition], situation)
