# -*- mode: python -*-
"""
One process, two proxies: two components, each with its own target.

    CLIENTPROXY_SECRET=... twistd -ny tac/two-proxies.tac

Each proxy is its own service with its own connection, pending table and
counters; they only share the process and its reactor. Here both use the
secret from $CLIENTPROXY_SECRET; give each its own --secret-file where the
server's components have different secrets.
"""

from twisted.application import service

from clientproxy.tap import Options, makeService

PROXIES = [
    ["--jid", "focus.example.org", "--target", "focus@auth.example.org"],
    ["--jid", "search.example.org", "--target", "search@example.org",
     "--strategy", "least-pending", "--timeout", "10"],
]

application = service.Application("clientproxy")
for arguments in PROXIES:
    options = Options()
    options.parseOptions(arguments)
    makeService(options).setServiceParent(application)
