"""
State shared by several processes through Redis (C{--redis}): the client,
the queue and subscribers, and the cluster (the shared pending table,
heartbeats and events).
"""
