"""
The C{twistd clientproxy} command.
"""

from twisted.application.service import ServiceMaker

clientproxy = ServiceMaker(
    "clientproxy",
    "clientproxy.tap",
    "An XMPP component that proxies IQ requests to the resources of a client account.",
    "clientproxy",
)
