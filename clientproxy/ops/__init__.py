"""
Running it: the configuration file, reloads, counters and metrics, the
HTTP health endpoints, systemd notification, rate-limited logging and hot
standby.
"""
