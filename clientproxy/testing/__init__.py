"""
Real XMPP parts for the integration tests, the demo and the benchmarks: a
throwaway Prosody on loopback (L{clientproxy.testing.prosody}) and plain
client connections to it (L{clientproxy.testing.client}).

Nothing here is used by the component itself.
"""
