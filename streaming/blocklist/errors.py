"""Blocklist errors: one line each, what was wrong and what to do."""

from __future__ import annotations

from features.errors import SimGuardError


class BlocklistError(SimGuardError):
    """A blocklist operation cannot be done as asked (bad input, unknown operator or number)."""


class PublishError(SimGuardError):
    """A blocklist channel (Kafka, an operator's webhook) cannot be reached or set up."""
