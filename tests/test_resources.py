"""
Tests for L{clientproxy.routing.resources}.
"""

from twisted.trial import unittest

from clientproxy.routing.resources import ResourceSet


class ResourceSetTests(unittest.TestCase):
    """
    The set of available resources: removal without holes, observers told of
    departures, the name filter, and resources kept across updates.
    """

    def setUp(self):
        self.set = ResourceSet()
        self.removed = []
        self.set.whenRemoved(lambda resource, origin: self.removed.append(resource))

    def add(self, *names):
        for name in names:
            self.set.update("svc@example.org/" + name, name, 0)

    def names(self):
        return sorted(r.name for r in self.set.available)

    def test_removeLeavesNoHole(self):
        """
        Removal from anywhere in the list leaves no gap (the last entry fills
        it), so a strategy picking by index always finds a resource.
        """
        self.add("a", "b", "c", "d")
        self.set.remove("svc@example.org/b")
        self.assertEqual(self.names(), ["a", "c", "d"])
        self.assertEqual(len(self.set.available), 3)
        self.assertNotIn(None, self.set.available)
        self.set.remove("svc@example.org/d")
        self.set.remove("svc@example.org/a")
        self.assertEqual(self.names(), ["c"])

    def test_removeTellsObservers(self):
        """
        Removing a resource returns it and tells the observers, so that the
        requests it held can be retried or answered.
        """
        self.add("a")
        resource = self.set.get("svc@example.org/a")
        self.assertIs(self.set.remove("svc@example.org/a"), resource)
        self.assertEqual(self.removed, [resource])

    def test_removeUnknown(self):
        """
        Removing a resource the set does not hold returns C{None} and tells no
        one: an unavailable presence of an unknown resource is harmless.
        """
        self.assertIsNone(self.set.remove("svc@example.org/x"))
        self.assertEqual(self.removed, [])

    def test_clearDoesNotTell(self):
        """
        Clearing (the connection is lost) forgets every resource without
        telling the observers: the dispatcher answers the pending requests
        itself then.
        """
        self.add("a", "b")
        self.set.clear()
        self.assertEqual(len(self.set), 0)
        self.assertEqual(self.removed, [])
        self.assertNotIn("svc@example.org/a", self.set)

    def test_updateKeepsIdentity(self):
        """
        A new presence of a known resource updates its priority in place: the
        same object stays, with its in-flight count and what was learnt of it.
        """
        self.add("a")
        first = self.set.get("svc@example.org/a")
        self.set.update("svc@example.org/a", "a", 3)
        self.assertIs(self.set.get("svc@example.org/a"), first)
        self.assertEqual(first.priority, 3)

    def test_filterSearchesName(self):
        """
        The C{--resources} filter is searched in the resource's name, not
        anchored: C{svc$} admits C{my-svc} and refuses C{phone}.
        """
        filtered = ResourceSet("svc$")
        self.assertIsNone(filtered.update("a@b/phone", "phone", 0))
        self.assertIsNotNone(filtered.update("a@b/my-svc", "my-svc", 0))
        self.assertEqual(len(filtered), 1)
