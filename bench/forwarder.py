"""
BENCHMARK BASELINE, NOT A PRODUCT: the bare forwarder.

A minimal external component (XEP-0114) that forwards IQ requests to the
target's resources and replies back by rewriting the `from` and `to`
attributes of each stanza's start tag as bytes: no XML parsing, no checks,
no pending table, no timeouts, no presence. It is the ceiling of any
external component on a given server, and the reference clientproxy is
measured against.

It splits stanzas by searching for the end of the top-level element
(`/>` or `</name>`), which is right for the stanzas the benchmark sends and
for nothing else. Resources are given on the command line and used in
turn.

    .venv/bin/python bench/forwarder.py --jid fwd.localhost --secret S --port 5347 \\
        --resource svc@localhost/r0 [--resource ...]
"""

import argparse
import hashlib
import re
import sys

from twisted.internet import protocol, reactor

START_TAG = re.compile(rb"<([A-Za-z:]+)[^>]*?(/?)>")
ADDRESS = re.compile(rb"""\s(from|to)=(['"])(.*?)\2""")


class BareForwarder(protocol.Protocol):
    def __init__(self, jid, secret, resources):
        self.jid = jid.encode()
        self.prefix = self.jid + b"/"
        self.secret = secret.encode()
        self.resources = [r.encode() for r in resources]
        self.next = 0
        self.buffer = b""
        self.digestSent = False
        self.ready = False

    def connectionMade(self):
        self.transport.write(
            b"<stream:stream xmlns='jabber:component:accept' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='%s'>" % self.jid
        )

    def dataReceived(self, data):
        self.buffer += data
        if not self.ready:
            self.handshake()
            if not self.ready:
                return
        out = []
        buffer = self.buffer
        position = 0
        while True:
            begin = buffer.find(b"<", position)
            if begin < 0:
                break
            tag = START_TAG.match(buffer, begin)
            if tag is None:
                break
            if tag.group(2):
                end = tag.end()
            else:
                close = buffer.find(b"</" + tag.group(1) + b">", tag.end())
                if close < 0:
                    break
                end = close + len(tag.group(1)) + 3
            if tag.group(1) == b"iq":
                out.append(self.rewrite(buffer[begin : tag.end()]) + buffer[tag.end() : end])
            position = end
        self.buffer = buffer[position:]
        if out:
            self.transport.write(b"".join(out))

    def rewrite(self, start):
        addresses = {m.group(1): m.group(3) for m in ADDRESS.finditer(start)}
        sender, recipient = addresses.get(b"from", b""), addresses.get(b"to", b"")
        if recipient.startswith(self.prefix):
            newFrom, newTo = self.jid, recipient[len(self.prefix) :]
        else:
            newFrom = self.prefix + sender
            newTo = self.resources[self.next % len(self.resources)]
            self.next += 1
        start = ADDRESS.sub(b"", start)
        return start[:3] + b" from='%s' to='%s'" % (newFrom, newTo) + start[3:]

    def handshake(self):
        """
        XEP-0114: answer the stream header with the digest, then wait for
        the server's empty <handshake/>.
        """
        if not self.digestSent:
            match = re.search(rb"""\sid=(['"])(.*?)\1""", self.buffer)
            if match is None:
                return
            digest = hashlib.sha1(match.group(2) + self.secret).hexdigest()
            self.transport.write(b"<handshake>%s</handshake>" % digest.encode())
            self.digestSent = True
        done = self.buffer.find(b"<handshake/>")
        if done >= 0:
            self.buffer = self.buffer[done + len(b"<handshake/>") :]
            self.ready = True
            print("bare forwarder ready", flush=True)
        elif b"stream:error" in self.buffer:
            print("bare forwarder refused: %r" % (self.buffer,), flush=True)
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--jid", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--resource", action="append", required=True)
    args = parser.parse_args(argv)
    factory = protocol.ClientFactory()
    factory.protocol = lambda: BareForwarder(args.jid, args.secret, args.resource)
    reactor.connectTCP(args.host, args.port, factory)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
