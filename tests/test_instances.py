"""
Tests for L{clientproxy.handlers.instances}: probes for other processes connected
as the same component, answered, never dispatched, and another process
told loudly, once.
"""

from twisted.logger import capturedLogs
from twisted.trial import unittest

from clientproxy.handlers import instances
from tests.helpers import COMPONENT, Harness

PREFIX = COMPONENT + "/clientproxy-instance/"


class InstanceProbeTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness(probeInstances=True)
        self.h.online("a")
        self.probe = self.h.handlers.instances

    def probes(self, stanzas):
        return [s for s in stanzas if s.getAttribute("to") == PREFIX + "probe"]

    def test_probesFastThenSlow(self):
        """
        After the probe sent when the connection was made, one a second
        up to ten, then one a minute.
        """
        self.h.take()
        for _ in range(instances.FAST_PROBES - 1):
            self.h.clock.advance(instances.FAST_INTERVAL)
        self.assertEqual(len(self.probes(self.h.take())), instances.FAST_PROBES - 1)
        self.h.clock.advance(instances.INTERVAL - 1)
        self.assertEqual(self.probes(self.h.take()), [])
        self.h.clock.advance(1)
        [probe] = self.probes(self.h.take())
        self.assertEqual(probe["from"], PREFIX + self.probe.instanceID)

    def test_ownProbeAnsweredQuietly(self):
        """
        A probe of this process that the server routed back to it is
        answered and goes no further: no other process, nothing forwarded
        to the target.
        """
        self.h.take()
        with capturedLogs() as events:
            self.h.receive(
                "<iq type='get' id='probe-1' from='%s%s' to='%sprobe'><ping xmlns='urn:xmpp:ping'/></iq>"
                % (PREFIX, self.probe.instanceID, PREFIX)
            )
        [answer] = self.h.take()
        self.assertEqual((answer["type"], answer["to"]), ("result", PREFIX + self.probe.instanceID))
        self.assertEqual(self.h.stats.otherInstances, 0)
        self.assertEqual(self.h.stats.requests["forwarded"], 0)
        self.assertEqual([e for e in events if e["log_level"].name == "error"], [])

    def test_otherProcessToldOnce(self):
        """
        A probe from another process is answered, logged as an error once
        per process, and counted.
        """
        self.h.take()
        with capturedLogs() as events:
            for n in range(3):
                self.h.receive(
                    "<iq type='get' id='probe-%d' from='%sother' to='%sprobe'><ping xmlns='urn:xmpp:ping'/></iq>"
                    % (n, PREFIX, PREFIX)
                )
        self.assertEqual(len([s for s in self.h.take() if s["type"] == "result"]), 3)
        [error] = [e for e in events if e["log_level"].name == "error"]
        self.assertEqual((error["other"], error["jid"]), ("other", COMPONENT))
        self.assertEqual(self.h.stats.otherInstances, 1)
        self.assertEqual(self.h.stats.requests["forwarded"], 0)

    def test_outsiderToProbeAddressDropped(self):
        """
        Anyone else writing to the probe address is dropped and counted,
        not forwarded and not answered.
        """
        self.h.take()
        self.h.receive(
            "<iq type='get' id='x' from='alice@example.org/a' to='%sprobe'><ping xmlns='urn:xmpp:ping'/></iq>"
            % (PREFIX,)
        )
        self.assertEqual(self.h.take(), [])
        self.assertEqual(self.h.stats.dropped["probe-from-outsider"], 1)
        self.assertEqual(self.h.stats.otherInstances, 0)
