"""Kept weights of a search, beside the study database: ``<weights dir>/<study>/<arch_hash>.pt``.

A search that keeps weights stores, per evaluated architecture, the payload of its trained
network (:func:`nasconv.checkpoint.weights_payload`) with :func:`save_weights`; ``export
--weights`` reads it back with :func:`load_weights`. Files are keyed by architecture, since
trials that repeat an architecture share its one evaluation.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

import torch

from nasconv.errors import StorageError
from nasconv.paths import safe_name
from nasconv.storage.database import _one_line, parse_url

#: where kept weights go when the storage is not a SQLite file (or to override it)
WEIGHTS_DIR_ENV = "NASCONV_WEIGHTS_DIR"


def weights_dir(storage: str) -> Path:
    """Where a search on ``storage`` keeps weights: ``$NASCONV_WEIGHTS_DIR``; else ``weights/``
    beside a SQLite database file; else ``studies/weights`` in the current folder."""
    if os.environ.get(WEIGHTS_DIR_ENV):
        return Path(os.environ[WEIGHTS_DIR_ENV])
    url = parse_url(storage)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).expanduser().parent / "weights"
    return Path("studies") / "weights"


def weights_path(storage: str, study: str, arch_hash: str) -> Path:
    """``<weights dir>/<study>/<arch_hash>.pt``: by architecture, since trials that repeat an
    architecture share its one evaluation."""
    return weights_dir(storage) / safe_name(study) / f"{arch_hash}.pt"


def save_weights(storage: str, study: str, arch_hash: str, payload: Mapping[str, Any]) -> Path:
    """Keep ``payload`` (:func:`~nasconv.checkpoint.weights_payload`) for ``arch_hash`` in ``study``; atomic."""
    path = weights_path(storage, study, arch_hash)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(payload), tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot keep weights in {path.parent}: {exc.strerror}") from None
    return path


def load_weights(storage: str, study: str, arch_hash: str) -> dict[str, Any] | None:
    """The kept payload for ``arch_hash`` in ``study``, or None."""
    path = weights_path(storage, study, arch_hash)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StorageError(f"cannot read kept weights {path}: {_one_line(exc)}") from None
