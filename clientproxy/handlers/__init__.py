"""
The subprotocol handlers on the component's stream: IQ dispatch,
messages, the target's presence, the service's own presence, capability
learning, keepalive and the probe for other instances. Each applies the
rules of L{clientproxy.routing} to the stanzas of its kind.
"""
