"""
Tests for L{clientproxy.ops.throttle}: one line per kind and interval, with the
count of the lines not written.
"""

from twisted.trial import unittest

from clientproxy.ops.throttle import Throttle, quoted


class ThrottleTests(unittest.TestCase):
    def setUp(self):
        self.now = [100.0]
        self.throttle = Throttle(lambda: self.now[0], interval=10.0)

    def test_firstWritten(self):
        """
        The first line of a kind is written, with none skipped.
        """
        self.assertEqual(self.throttle("a"), 0)

    def test_floodSkipped(self):
        """
        Within the interval, further lines of that kind are not written;
        the next one after it says how many were not.
        """
        self.throttle("a")
        self.assertEqual([self.throttle("a") for _ in range(5)], [None] * 5)
        self.now[0] += 10.0
        self.assertEqual(self.throttle("a"), 5)
        self.assertIsNone(self.throttle("a"))

    def test_kindsApart(self):
        """
        Each kind has its own interval.
        """
        self.throttle("a")
        self.assertEqual(self.throttle("b"), 0)


class QuotedTests(unittest.TestCase):
    def test_quoted(self):
        """
        L{quoted} gives one line of ASCII, cut.
        """
        self.assertEqual(quoted("a\nb\r"), "'a\\nb\\r'")
        self.assertEqual(quoted("x" * 100, limit=3), "'xxx'...")
        self.assertEqual(quoted(None), "None")
