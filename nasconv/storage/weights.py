"""Kept weights of a search, beside the study database: ``<weights dir>/<study>/<arch_hash>.pt``.

A search that keeps weights stores, per evaluated architecture, the payload of its trained
network (:func:`nasconv.checkpoint.weights_payload`) with :func:`save_weights`; ``export
--weights`` reads it back with :func:`load_weights`. Files are keyed by architecture, since
trials that repeat an architecture share its one evaluation.

The study's folder is :func:`nasconv.paths.file_stem` of its name (one folder per name, however
it is spelt); a study written before that, under the older spelling, is still read. Each file is
also linked as ``.by-settings/<settings key>/<arch_hash>.pt``, so that another study whose
candidate is served from the evaluation cache finds the weights of that evaluation
(:func:`adopt_weights`).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch

from nasconv.errors import StorageError
from nasconv.paths import file_stem, os_problem, safe_name, write_atomic
from nasconv.storage.database import _one_line, parse_url

#: where kept weights go when the storage is not a SQLite file (or to override it)
WEIGHTS_DIR_ENV = "NASCONV_WEIGHTS_DIR"
#: the folder (in the weights folder) of every kept file by evaluation settings; no study's
#: folder starts with a dot
SHARED_DIR = ".by-settings"


def dir_beside_storage(storage: str, env: str, name: str) -> Path:
    """A folder of files that go with ``storage``: ``$<env>``; else ``<name>/`` beside a SQLite
    database file; else ``studies/<name>`` in the current folder."""
    if os.environ.get(env):
        return Path(os.environ[env])
    url = parse_url(storage)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).expanduser().parent / name
    return Path("studies") / name


def weights_dir(storage: str) -> Path:
    """Where a search on ``storage`` keeps weights: ``$NASCONV_WEIGHTS_DIR``; else ``weights/``
    beside a SQLite database file; else ``studies/weights`` in the current folder."""
    return dir_beside_storage(storage, WEIGHTS_DIR_ENV, "weights")


def weights_path(storage: str, study: str, arch_hash: str) -> Path:
    """``<weights dir>/<study>/<arch_hash>.pt``: by architecture, since trials that repeat an
    architecture share its one evaluation."""
    return weights_dir(storage) / file_stem(study) / f"{arch_hash}.pt"


def _shared_path(storage: str, settings_key: str, arch_hash: str) -> Path:
    return weights_dir(storage) / SHARED_DIR / safe_name(settings_key) / f"{arch_hash}.pt"


def save_weights(storage: str, study: str, arch_hash: str, payload: Mapping[str, Any], *,
                 settings_key: str | None = None) -> Path:
    """Keep ``payload`` (:func:`~nasconv.checkpoint.weights_payload`) for ``arch_hash`` in ``study``;
    atomic (no partial file, whatever fails). With ``settings_key``, also findable by
    :func:`adopt_weights` for another study with the same evaluation settings."""
    path = weights_path(storage, study, arch_hash)
    buf = io.BytesIO()
    # The study's name travels with the file: a reader of the older folder spelling (shared by
    # names such as p/q and p_q) can tell whose it is.
    torch.save({**dict(payload), "study": study, "settings_key": settings_key}, buf)
    try:
        write_atomic(path, buf.getvalue())
    except OSError as exc:
        raise StorageError(f"cannot keep the weights of {arch_hash} for study {study!r}: "
                           f"{os_problem(exc, path.parent)}") from None
    if settings_key is not None:
        _link(path, _shared_path(storage, settings_key, arch_hash), copy=False)
    return path


def _link(src: Path, dst: Path, *, copy: bool) -> bool:
    """Hard-link ``src`` as ``dst`` (or copy it, when ``copy`` and links are not possible);
    False when neither worked: the weights stay where they are."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            if not copy:
                raise
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False


def adopt_weights(storage: str, study: str, settings_key: str, arch_hash: str) -> Path | None:
    """For a candidate of ``study`` served from the evaluation cache: the kept weights of that
    evaluation, linked (or copied) into the study's folder; None when that evaluation kept none."""
    path = weights_path(storage, study, arch_hash)
    if path.is_file():
        return path
    shared = _shared_path(storage, settings_key, arch_hash)
    if shared.is_file() and _link(shared, path, copy=True):
        return path
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StorageError(f"cannot read kept weights {path}: {_one_line(exc)}") from None


def load_weights(storage: str, study: str, arch_hash: str) -> dict[str, Any] | None:
    """The kept payload for ``arch_hash`` in ``study``, or None."""
    path = weights_path(storage, study, arch_hash)
    if path.is_file():
        return _read(path)
    old = weights_dir(storage) / safe_name(study) / f"{arch_hash}.pt"
    if old != path and old.is_file():  # kept before folder names were unique
        payload = _read(old)
        if payload.get("study", study) == study:  # not the file of another study of that spelling
            return payload
    return None
