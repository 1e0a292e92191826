# -*- test-case-name: tests.test_jat -*-
"""
Jabber Address Translation: the encoded resource that stands for a requester.

A request from C{alice@example.org/abc} reaches the implementing client from
C{proxy.example.org/ENC}; the client answers to that address and the
component turns ENC back into the requester.

The encoding is anchor-compatible (the one Prosody's mod_client_proxy uses):
ENC is the requester's full JID as it is, so a service written for that
module keeps working and can see who asks. Both directions are plain string
operations: the server has already checked and normalised the C{from} of
every stanza it routes to us, so nothing is parsed here, and nothing is
interned (L{twisted.words.protocols.jabber.jid.internJID} would keep every
requester in memory for the life of the process).
"""

from twisted.words.protocols.jabber.jid import InvalidFormat, parse

#: RFC 7622: each part of a JID is at most 1023 bytes (UTF-8).
MAX_PART_BYTES = 1023


class Translator:
    """
    Encode requesters as resources of the component, and decode them.

    @ivar component: the component's own bare JID, e.g. C{proxy.example.org}.
    @ivar prefix: C{component + '/'}, the start of every encoded address.
    """

    def __init__(self, component):
        self.component = component
        self.prefix = component + "/"
        self._prefixLength = len(self.prefix)

    def encode(self, requester):
        """
        Return the encoded resource for C{requester} (a full or bare JID
        string), or C{None} when it cannot fit in a resource: the request is
        then refused rather than sent on with an address the server rejects.
        """
        if len(requester) * 4 > MAX_PART_BYTES and (
            len(requester.encode("utf-8")) > MAX_PART_BYTES
        ):
            return None
        return requester

    def address(self, encoded):
        """
        Return the component address that stands for C{encoded}.
        """
        return self.prefix + encoded

    def decode(self, address):
        """
        Return the encoded resource of a component C{address}, or C{None}
        when the address is not an encoded one (the bare component, or
        another domain).
        """
        if address.startswith(self.prefix):
            encoded = address[self._prefixLength :]
            if encoded:
                return encoded
        return None

    def requester(self, encoded):
        """
        Return the requester that C{encoded} stands for.
        """
        return encoded

    def peer(self, encoded):
        """
        Return the normalised address that C{encoded} stands for, when the
        target itself addresses C{component/encoded} (to message or ask a
        peer): unlike a requester's address, this one comes from a client
        and is checked. C{None} when it is not a valid JID, or is an address
        of the component itself (which would loop). Parsed without
        interning (see the module docstring); used off the hot path only.
        """
        try:
            user, host, resource = parse(encoded)
        except (InvalidFormat, RuntimeError, UnicodeError):
            return None
        if host == self.component:
            return None
        address = host if user is None else user + "@" + host
        return address if resource is None else address + "/" + resource
