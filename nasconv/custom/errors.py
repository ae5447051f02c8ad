"""Errors of a user's own model: one line each, as every :class:`~nasconv.errors.NasconvError`."""

from __future__ import annotations

from nasconv.errors import SpaceError, UsageError


class ModelError(SpaceError):
    """The user's model cannot become (or no longer matches) a search space: exit 1."""


class ModelUsageError(UsageError):
    """A factory reference, keyword arguments or input shape that cannot be used: exit 2."""


def first_line(exc: BaseException) -> str:
    """``TypeError: bad thing`` from an exception, on one line (the user's code raised it)."""
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"
