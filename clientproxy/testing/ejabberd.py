"""
A throwaway ejabberd (the Debian package) on loopback, for the integration
tests: the same interface as L{clientproxy.testing.prosody.ThrowawayProsody}.

The Erlang VM is started directly (what C{ejabberdctl foreground} runs),
with its own configuration, Mnesia spool and log in a temporary directory,
and without Erlang distribution: no node name, so no epmd and no
distribution port is opened, and only the two loopback listeners exist.
Accounts are created by in-band registration (XEP-0077) from loopback once
the server runs, since C{ejabberdctl register} needs a distributed node.
"""

import glob
import os

from twisted.internet import defer
from twisted.words.protocols.jabber import client, xmlstream

from clientproxy.testing.server import ThrowawayServer

ERL = "erl"


def erlLibs():
    """
    Where Debian's ejabberd keeps its Erlang applications (what
    C{ejabberdctl} puts in C{ERL_LIBS}): C{/usr/lib/<arch>}.
    """
    found = sorted(glob.glob("/usr/lib/*/ejabberd-*/ebin/ejabberd.app"))
    if not found:
        raise RuntimeError("ejabberd is not installed (Debian package ejabberd)")
    return os.path.dirname(os.path.dirname(os.path.dirname(found[-1])))


CONFIG = """\
# Written by clientproxy.testing.ejabberd: a throwaway test server.
hosts:
  - {domain}
loglevel: {loglevel}
log_rotate_count: 0
certfiles: [{certfiles}]
auth_method: internal
auth_password_format: plain
registration_timeout: infinity
acl:
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  c2s:
    allow: all
  register:
    allow: all
  from_loopback:
    allow: loopback
shaper_rules:
  c2s_shaper: none
listen:
  -
    port: {c2sPort}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
    shaper: c2s_shaper
    access: c2s
  -
    port: {componentPort}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
{components}{tls}
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_carboncopy: {{}}
  mod_register:
    access: register
    ip_access: from_loopback
"""

#: A second ejabberd_service listener, with direct TLS; the certificate is
#: one of certfiles.
TLS = """\
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_service
    tls: true
    certfile: "{certfile}"
    hosts:
{components}"""

COMPONENT = """\
      {name}:
        password: "{secret}"
"""


class _RegisteringAuthenticator(xmlstream.ConnectAuthenticator):
    """
    Opens a client stream without logging in, to register an account.
    """

    namespace = "jabber:client"

    def associateWithStream(self, xs):
        xmlstream.ConnectAuthenticator.associateWithStream(self, xs)
        xs.initializers = [client.CheckVersionInitializer(xs)]


def registerInBand(reactor, host, port, domain, user, password, timeout=10):
    """
    Create C{user@domain} with XEP-0077 in-band registration.

    @return: a Deferred that fires once the server has answered with a
        result, or fails.
    """
    result = defer.Deferred()
    factory = xmlstream.XmlStreamFactory(_RegisteringAuthenticator(domain))
    factory.maxRetries = 0
    factory.noisy = False

    def ready(xs):
        iq = xmlstream.IQ(xs, "set")
        query = iq.addElement(("jabber:iq:register", "query"))
        query.addElement("username", content=user)
        query.addElement("password", content=password)
        iq.send().chainDeferred(result)
        result.addBoth(lambda outcome: (xs.transport.loseConnection(), outcome)[1])

    def failed(reason):
        if not result.called:
            result.errback(reason)

    factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, ready)
    factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, failed)
    factory.clientConnectionFailed = lambda connector, reason: failed(reason)
    reactor.connectTCP(host, port, factory)
    return result.addTimeout(timeout, reactor)


class ThrowawayEjabberd(ThrowawayServer):
    """
    One ejabberd server in a temporary directory.
    """

    name = "ejabberd"

    def __init__(self, components, domain="localhost", reactor=None, loglevel="warning", tls=None):
        kwargs = {} if reactor is None else {"reactor": reactor}
        ThrowawayServer.__init__(self, components, domain, tls=tls, **kwargs)
        self.spool = os.path.join(self.directory, "spool")
        os.mkdir(self.spool)
        fragment, certfiles = "", ""
        if tls is not None:
            # ejabberd wants the certificate and its key in one file.
            combined = os.path.join(self.directory, "component.pem")
            with open(combined, "w") as out:
                for part in tls:
                    with open(part) as f:
                        out.write(f.read())
            fragment = TLS.format(
                port=self.componentTLSPort,
                certfile=combined,
                components="".join(
                    COMPONENT.format(name=name, secret=secret)
                    for name, secret in self.components.items()
                ),
            )
            certfiles = '"%s"' % (combined,)
        self.config = self.writeConfig(
            "ejabberd.yml",
            CONFIG,
            COMPONENT,
            loglevel=loglevel,
            tls=fragment,
            certfiles=certfiles,
        )
        self._accounts = {}
        self._registered = set()

    @property
    def log(self):
        return os.path.join(self.directory, "ejabberd.log")

    def command(self):
        env = dict(os.environ)
        env.update(
            ERL_LIBS=erlLibs(),
            EJABBERD_CONFIG_PATH=self.config,
            EJABBERD_LOG_PATH=self.log,
            ERL_CRASH_DUMP=os.path.join(self.directory, "erl_crash.dump"),
            ERL_CRASH_DUMP_BYTES="0",
        )
        argv = [
            ERL,
            "-noinput",
            "-noshell",
            "-mnesia",
            "dir",
            '"%s"' % (self.spool,),
            "-s",
            "ejabberd",
        ]
        return ERL, argv, env

    def register(self, user, password):
        """
        Ask for an account; it is created in-band once the server runs.
        """
        self._accounts[user] = password

    @defer.inlineCallbacks
    def started(self):
        for user, password in self._accounts.items():
            if user not in self._registered:
                yield registerInBand(
                    self.reactor, "127.0.0.1", self.c2sPort, self.domain, user, password
                )
                self._registered.add(user)
