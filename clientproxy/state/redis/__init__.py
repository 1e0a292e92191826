"""
State shared by several processes through Redis (C{--redis}): the client
(L{client}), the requests in flight (L{requests}), the facts learnt about
the target (L{facts}), the queue and subscribers (L{store}), and what makes
the processes one: membership, heartbeats, the channels (L{cluster}).
"""
