"""
Tests for clientproxy: unit tests on in-memory streams with
L{twisted.internet.task.Clock}, and integration tests against a real
Prosody (L{tests.test_integration}).
"""
