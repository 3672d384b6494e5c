"""What a pull can fail with, and the exit status each means."""

from __future__ import annotations

from ..errors import DecoderError

__all__ = ["PullError", "StateConflict", "Stopped", "UsageError"]


class PullError(DecoderError):
    """Talking to the API failed for good (after retries); exit 1. The message is one line, secrets removed."""


class UsageError(DecoderError):
    """The command asks for something that cannot be done as asked (exit 2)."""


class StateConflict(UsageError):
    """The state file belongs to another provider or API, or another run holds it."""


class Stopped(Exception):
    """A stop was requested (Ctrl-C, SIGTERM) while waiting or before a request."""
