"""
The rules of routing, with no I/O: the target's resources, which one
serves a request (selection, strategies, learnt refusals), who may ask
(policy), the requests in flight (pending), the errors the component
answers with, and the bounded tables outsiders can add to.
"""
