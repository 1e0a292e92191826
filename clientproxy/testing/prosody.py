"""
A throwaway Prosody (the Debian package) on loopback, for the integration
tests, the demo and the benchmarks.

It runs as an ordinary process from a temporary directory with its own
configuration, data and log, on free loopback ports.
"""

import os
import subprocess

from clientproxy.testing.server import ThrowawayServer

PROSODY = "prosody"
PROSODYCTL = "prosodyctl"

CONFIG = """\
-- Written by clientproxy.testing.prosody: a throwaway test server.
run_as_root = true
daemonize = false
pidfile = "{directory}/prosody.pid"
data_path = "{directory}/data"
certificates = "{directory}/certs"
log = {{ {loglevel} = "{directory}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2sPort} }}
component_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {componentPort} }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "carbons"; "ping"; {tlsModule} }}
{tls}
modules_disabled = {{ "s2s" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
{extra}
VirtualHost "{domain}"
{components}
{includes}
"""

TLS = """\
ssl_ports = {{ {port} }}
ssl_interfaces = {{ "127.0.0.1" }}
ssl = {{ certificate = "{certificate}"; key = "{key}"; }}
"""

COMPONENT = """\
Component "{name}"
    component_secret = "{secret}"
"""


class ThrowawayProsody(ThrowawayServer):
    """
    One Prosody server in a temporary directory.
    """

    name = "prosody"

    def __init__(
        self,
        components,
        domain="localhost",
        reactor=None,
        loglevel="info",
        tls=None,
        includes=(),
        extra="",
    ):
        """
        @param includes: more configuration files, named relative to the
            server's directory, included last and in this order (they need
            exist only once the server starts).
        @param extra: more lines for the global section of the
            configuration (C{component_conflict_resolve = "kick_old"}, say).
        """
        kwargs = {} if reactor is None else {"reactor": reactor}
        ThrowawayServer.__init__(self, components, domain, tls=tls, **kwargs)
        for sub in ("data", "certs"):
            os.mkdir(os.path.join(self.directory, sub))
        fragment, module = "", ""
        if tls is not None:
            # Prosody 0.12 has no TLS port for components of its own; its
            # multiplex_ssl service (mod_net_multiplex) takes direct TLS and
            # hands a stream in jabber:component:accept to mod_component.
            module = '"net_multiplex";'
            fragment = TLS.format(port=self.componentTLSPort, certificate=tls[0], key=tls[1])
        self.config = self.writeConfig(
            "prosody.cfg.lua",
            CONFIG,
            COMPONENT,
            loglevel=loglevel,
            tls=fragment,
            tlsModule=module,
            includes="".join('Include "%s"\n' % (name,) for name in includes),
            extra=extra,
        )

    @property
    def log(self):
        """
        The path of the server's log file.
        """
        return os.path.join(self.directory, "prosody.log")

    def command(self):
        return PROSODY, [PROSODY, "--config", self.config, "-F"], dict(os.environ)

    def register(self, user, password, host=None):
        """
        Create an account on C{host} (the server's domain by default;
        synchronous, it takes a few milliseconds).
        """
        subprocess.run(
            [PROSODYCTL, "--config", self.config, "register", user, host or self.domain, password],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
