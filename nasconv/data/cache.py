"""The process-wide cache of loaded datasets, keyed by what was asked for and the files on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasconv.data.dataset import Dataset

_CACHE: dict[tuple[Any, ...], Dataset] = {}


def clear_cache() -> None:
    """Forget every dataset loaded in this process (tests, or to free memory)."""
    _CACHE.clear()


def cached(key: tuple[Any, ...], load: Any) -> Dataset:
    ds = _CACHE.get(key)
    if ds is None:
        ds = _CACHE[key] = load()
    return ds


def fingerprint(paths: Any) -> tuple[tuple[str, int, int], ...]:
    """Path, size and mtime of each file: a changed file on disk is a different cache entry."""
    out = []
    for p in paths:
        p = Path(p)
        try:
            st = p.stat()
            out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), -1, -1))  # the loader reports the missing file properly
    return tuple(out)
