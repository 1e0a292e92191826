"""
Tests for L{clientproxy.routing.bounded}: the tables outsiders can add to stay
within their bounds in entries and bytes, and drop the least recently used
entry first.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from clientproxy.routing.bounded import LRU, MAX_KEY_CHARS, compact


class CompactTests(unittest.TestCase):
    """
    L{compact} keeps short keys and bounds long ones.
    """

    def test_shortKept(self):
        """
        A key of at most L{MAX_KEY_CHARS} characters is kept as it is.
        """
        key = "u" * MAX_KEY_CHARS
        self.assertIs(compact(key), key)

    def test_longDigested(self):
        """
        A longer key becomes a 16-byte digest, the same for the same key,
        and another for another key.
        """
        long = "urn:" + "x" * 10000
        self.assertEqual(len(compact(long)), 16)
        self.assertEqual(compact(long), compact("urn:" + "x" * 10000))
        self.assertNotEqual(compact(long), compact(long + "y"))

    def test_notString(self):
        """
        A key that is not a string (C{None}, a tuple) is kept.
        """
        self.assertIs(compact(None), None)

    @given(st.text())
    def test_bounded(self, key):
        """
        Whatever the string, what is kept is at most L{MAX_KEY_CHARS}
        characters or 16 bytes, and never a digest equal to a kept string.
        """
        kept = compact(key)
        if isinstance(kept, str):
            self.assertEqual(kept, key)
            self.assertLessEqual(len(kept), MAX_KEY_CHARS)
        else:
            self.assertEqual(len(kept), 16)


class LRUTests(unittest.TestCase):
    """
    L{LRU} holds at most its size and weight, dropping the least recently
    used entry first.
    """

    def test_dropsLeastRecentlyUsed(self):
        """
        Past its size, the entry read or written longest ago goes.
        """
        lru = LRU(2)
        lru["a"] = 1
        lru["b"] = 2
        self.assertEqual(lru.get("a"), 1)
        lru["c"] = 3
        self.assertEqual(sorted(lru), ["a", "c"])
        self.assertIsNone(lru.get("b"))

    def test_peekKeepsOrder(self):
        """
        L{LRU.peek} reads without making the entry recent.
        """
        lru = LRU(2)
        lru["a"] = 1
        lru["b"] = 2
        self.assertEqual(lru.peek("a"), 1)
        lru["c"] = 3
        self.assertNotIn("a", lru)

    def test_weight(self):
        """
        With C{maxWeight}, the oldest entries go until the weight is under
        it, and the weight follows replacements and removals.
        """
        lru = LRU(10, maxWeight=10, weigh=lambda key, value: len(value))
        lru["a"] = "x" * 4
        lru["b"] = "x" * 4
        self.assertEqual(lru.weight, 8)
        lru["a"] = "x" * 2
        self.assertEqual(lru.weight, 6)
        lru["c"] = "x" * 6
        self.assertEqual(sorted(lru), ["a", "c"])
        self.assertEqual(lru.weight, 8)
        self.assertEqual(lru.pop("a"), "xx")
        self.assertEqual(lru.weight, 6)
        self.assertIsNone(lru.pop("a"))

    def test_oldest(self):
        """
        L{LRU.oldest} is the entry that would go next.
        """
        lru = LRU(3)
        self.assertIsNone(lru.oldest())
        lru["a"] = 1
        lru["b"] = 2
        lru.get("a")
        self.assertEqual(lru.oldest(), ("b", 2))

    @given(st.lists(st.tuples(st.text(max_size=3), st.integers()), max_size=50))
    def test_neverOverSize(self, writes):
        """
        Whatever is written, the table holds at most its size, and the
        last key written is there.
        """
        lru = LRU(5)
        for key, value in writes:
            lru[key] = value
            self.assertLessEqual(len(lru), 5)
            self.assertEqual(lru.peek(key), value)
