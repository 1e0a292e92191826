"""
The C{twistd clientproxy} command.
"""

from twisted.application.service import ServiceMaker


class ClientProxyMaker(ServiceMaker):
    """
    twistd's maker of C{clientproxy.tap}'s service, with the process's log
    observer (C{--log-level}, C{--log-format}): see
    L{clientproxy.tap.makeProcessService}.
    """

    def makeService(self, options):
        from clientproxy.tap import makeProcessService

        return makeProcessService(options)


clientproxy = ClientProxyMaker(
    "clientproxy",
    "clientproxy.tap",
    "An XMPP component that proxies IQ requests to the resources of a client account.",
    "clientproxy",
)
