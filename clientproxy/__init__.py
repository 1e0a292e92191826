"""
clientproxy: an external XMPP component (XEP-0114) that gives a service
implemented inside an ordinary client a service address of its own.

Every IQ request sent to the component goes to one available resource of a
configured target account, with the requester's address translated into a
resource of the component (JAT), and the reply translated back.
"""

__version__ = "0.2.0.dev0"
