"""The error every surface reports bad input with, and the one line the CLI prints for it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot run; ``str()`` lists every problem as ``field.path: reason``."""


def error_line(message: str) -> str:
    """The one error format on stderr: ``clearsim: error: <message>``."""
    return f"clearsim: error: {message}"
