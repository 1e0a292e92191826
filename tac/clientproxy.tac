# -*- mode: python -*-
"""
clientproxy as a twistd application file: the same service as
`twistd clientproxy`, built by the same Options and makeService.

    CLIENTPROXY_SECRET=... twistd -ny tac/clientproxy.tac

Edit the options below (or read them from wherever you keep configuration).
The secret comes from $CLIENTPROXY_SECRET here, so it is in no file you share.
"""

from twisted.application import service

from clientproxy.tap import Options, makeService

options = Options()
options.parseOptions(
    [
        "--jid", "proxy.example.org",
        "--target", "svc@example.org",
        "--host", "127.0.0.1",
        "--port", "5347",
        "--timeout", "30",
        "--strategy", "random",
    ]
)

application = service.Application("clientproxy")
makeService(options).setServiceParent(application)
