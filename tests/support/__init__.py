"""Helpers for tests that need real servers (Dovecot, ...)."""
