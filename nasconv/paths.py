"""File names derived from user-given names (standard library only)."""

from __future__ import annotations

import re


def safe_name(text: str) -> str:
    """A file-name-safe spelling of a study or space name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip(".") or "model"
