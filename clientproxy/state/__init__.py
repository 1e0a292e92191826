"""
The state the handlers keep beyond one stanza, behind the interfaces of
L{clientproxy.state.interfaces}: for a process alone,
L{clientproxy.state.local} and SQLite (L{clientproxy.state.sqlite}); with
C{--redis}, shared by several processes (L{clientproxy.state.redis}).
"""
