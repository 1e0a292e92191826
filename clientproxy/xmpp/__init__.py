"""
The XMPP wire: the component's stream, its parser and writer, the
connection to the server, and pure helpers for stanzas, encoded addresses
(JAT) and entity capabilities (XEP-0115). Nothing here knows the target or
routes anything.
"""
