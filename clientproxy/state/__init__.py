"""
State kept beyond one connection: the message queue and the subscribers
(SQLite, L{clientproxy.state.sqlite}), and, with C{--redis}, the state
several processes share (L{clientproxy.state.redis}).
"""
