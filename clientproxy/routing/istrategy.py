"""
Interfaces for dispatch strategies: how the resource that serves a request
is chosen.

A third party adds a strategy by dropping a module into a C{twisted/plugins}
directory on the Python path with an object that provides
L{IStrategyPlugin}; C{--strategy NAME} then selects it. See
docs/plugins.md.
"""

from zope.interface import Attribute, Interface


class IDispatchStrategy(Interface):
    """
    Chooses one resource of the target for each request.
    """

    def choose(resources, requester):
        """
        Pick the resource that gets the next request.

        Called once per request, on the hot path: keep it cheap.

        @param resources: the available resources, a non-empty list of
            L{clientproxy.routing.resources.Resource} (C{jid}, C{name}, C{priority},
            and C{pending}, the number of requests it holds now). Do not
            change it.
        @param requester: the full JID (a string) of the entity asking.
        @return: one item of C{resources}.
        """


class IStrategyPlugin(Interface):
    """
    A named dispatch strategy, as found with L{twisted.plugin.getPlugins}.
    """

    name = Attribute("The name that selects it: C{--strategy NAME}.")
    description = Attribute("One line for C{--help} and the README.")

    def makeStrategy():
        """
        Return a new L{IDispatchStrategy} provider, one per component.
        """
