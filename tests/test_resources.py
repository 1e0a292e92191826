"""
Tests for L{clientproxy.routing.resources}.
"""

from twisted.trial import unittest

from clientproxy.routing.resources import ResourceSet


class ResourceSetTests(unittest.TestCase):
    def setUp(self):
        self.set = ResourceSet()
        self.removed = []
        self.set.whenRemoved(self.removed.append)

    def add(self, *names):
        for name in names:
            self.set.update("svc@example.org/" + name, name, 0)

    def names(self):
        return sorted(r.name for r in self.set.available)

    def test_removeLeavesNoHole(self):
        self.add("a", "b", "c", "d")
        self.set.remove("svc@example.org/b")
        self.assertEqual(self.names(), ["a", "c", "d"])
        self.assertEqual(len(self.set.available), 3)
        self.assertNotIn(None, self.set.available)
        self.set.remove("svc@example.org/d")
        self.set.remove("svc@example.org/a")
        self.assertEqual(self.names(), ["c"])

    def test_removeTellsObservers(self):
        self.add("a")
        resource = self.set.get("svc@example.org/a")
        self.assertIs(self.set.remove("svc@example.org/a"), resource)
        self.assertEqual(self.removed, [resource])

    def test_removeUnknown(self):
        self.assertIsNone(self.set.remove("svc@example.org/x"))
        self.assertEqual(self.removed, [])

    def test_clearDoesNotTell(self):
        self.add("a", "b")
        self.set.clear()
        self.assertEqual(len(self.set), 0)
        self.assertEqual(self.removed, [])
        self.assertNotIn("svc@example.org/a", self.set)

    def test_updateKeepsIdentity(self):
        self.add("a")
        first = self.set.get("svc@example.org/a")
        self.set.update("svc@example.org/a", "a", 3)
        self.assertIs(self.set.get("svc@example.org/a"), first)
        self.assertEqual(first.priority, 3)

    def test_filterSearchesName(self):
        filtered = ResourceSet("svc$")
        self.assertIsNone(filtered.update("a@b/phone", "phone", 0))
        self.assertIsNotNone(filtered.update("a@b/my-svc", "my-svc", 0))
        self.assertEqual(len(filtered), 1)
