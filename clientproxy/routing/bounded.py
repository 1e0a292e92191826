# -*- test-case-name: tests.test_bounded -*-
"""
Tables that outsiders can add to, bounded in entries and in bytes.

Anyone on the network chooses the namespaces, attribute values and ids of
what they send; a table keyed by such strings, kept for longer than one
stanza, is memory that grows with every name a peer invents unless it is
bounded. The tables here are bounded twice:

 - in entries: an L{LRU} keeps at most C{size} of them and drops the one
   least recently used when a new one comes (O(1): an ordered dict);
 - in bytes: every key passes through L{compact} first, which keeps a
   short string as it is and replaces a long one by a 16-byte digest, so a
   key costs at most about L{MAX_KEY_CHARS} characters whatever came in;
   and a table whose values are sized by outsiders (the features of a
   disco#info answer) is given C{maxWeight} and a C{weigh} function, and
   drops its oldest entries until the weight is under it.

Why not C{functools.lru_cache} or C{cachetools}: neither bounds the bytes
of the keys, and the tables here are read on the path of every stanza,
where a plain ordered dict costs least.
"""

import hashlib
from collections import OrderedDict

#: The longest string key kept as it is, in characters; a longer one is
#: kept as a digest.
MAX_KEY_CHARS = 64

_MISSING = object()


def compact(key):
    """
    C{key} if it is a string of at most L{MAX_KEY_CHARS} characters (or not
    a string), else a 16-byte BLAKE2b digest of it. A digest is L{bytes},
    so it never equals a kept string; two long keys share a digest only
    with negligible probability (2**-64 for a birthday collision over 2**32
    keys).
    """
    if key.__class__ is str and len(key) > MAX_KEY_CHARS:
        return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return key


class LRU:
    """
    A mapping of at most C{size} entries (and, with C{maxWeight}, at most
    that total weight): the least recently used entry is dropped first.
    Reading an entry with L{get} makes it the most recently used.

    Keys are used as given: pass outsiders' strings through L{compact}.

    @ivar weight: the total weight of the entries (0 without C{weigh}).
    """

    def __init__(self, size, maxWeight=None, weigh=None):
        if size < 1:
            raise ValueError("an LRU holds at least one entry")
        self.size = size
        self.maxWeight = maxWeight
        self._weigh = weigh
        self.weight = 0
        self._items = OrderedDict()

    def __len__(self):
        return len(self._items)

    def __contains__(self, key):
        return key in self._items

    def __iter__(self):
        return iter(self._items)

    def get(self, key, default=None):
        """
        The value for C{key}, made the most recently used; C{default} when
        there is none.
        """
        items = self._items
        value = items.get(key, _MISSING)
        if value is _MISSING:
            return default
        items.move_to_end(key)
        return value

    def peek(self, key, default=None):
        """
        The value for C{key}, leaving the order as it is.
        """
        return self._items.get(key, default)

    def __setitem__(self, key, value):
        items = self._items
        if self._weigh is not None:
            old = items.get(key, _MISSING)
            if old is not _MISSING:
                self.weight -= self._weigh(key, old)
            self.weight += self._weigh(key, value)
        items[key] = value
        items.move_to_end(key)
        while len(items) > self.size or (
            self.maxWeight is not None and self.weight > self.maxWeight and len(items) > 1
        ):
            self._dropOldest()

    def pop(self, key, default=None):
        """
        Remove C{key}; its value, or C{default} when there was none.
        """
        value = self._items.pop(key, _MISSING)
        if value is _MISSING:
            return default
        if self._weigh is not None:
            self.weight -= self._weigh(key, value)
        return value

    def oldest(self):
        """
        The least recently used C{(key, value)}, or C{None} when empty.
        """
        for key, value in self._items.items():
            return key, value
        return None

    def clear(self):
        self._items.clear()
        self.weight = 0

    def _dropOldest(self):
        key, value = self._items.popitem(last=False)
        if self._weigh is not None:
            self.weight -= self._weigh(key, value)
