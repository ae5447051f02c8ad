"""The export's error, and exceptions told on one line."""

from __future__ import annotations

from nasconv.errors import NasconvError


class ExportError(NasconvError):
    """An export that cannot be done: unknown trial, missing weights, existing output..."""


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
