"""Supernet checkpoints: one file per identity, ``<folder>/<space>-<key>/supernet.pt``.

The identity is what makes two trainings interchangeable: the space's content hash, the data
(name, split sizes and a fingerprint of its labels and images), the proxy's training settings,
the seed, the budget the sampling is restricted to, the number of steps the schedule runs over
and the sampling rule. Its hash (:func:`identity_key`) names the folder, so another study with
the same settings finds the same supernet. A file is written atomically (a kill while it is
written leaves the previous one); one that cannot be read is refused in one line that offers to
train again; one whose identity differs is refused naming what differs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from nasconv.errors import NasconvError
from nasconv.paths import write_atomic

#: the layout of a checkpoint file (its ``format`` field)
FORMAT_VERSION = 1
FILE_NAME = "supernet.pt"
#: where supernets go when not beside a study's storage
SUPERNET_DIR_ENV = "NASCONV_SUPERNET_DIR"


class SupernetCheckpointError(NasconvError):
    """A checkpoint that cannot be used: unreadable, or trained with other settings."""


def identity_key(identity: Mapping[str, Any]) -> str:
    """16 hex digits of the canonical JSON of ``identity``."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_path(folder: str | os.PathLike[str], space_name: str, identity: Mapping[str, Any]) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in space_name)[:64]
    return Path(folder) / f"{safe}-{identity_key(identity)}" / FILE_NAME


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """``payload`` to ``path`` atomically: a kill leaves the previous file or the new one, whole."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **payload}, buf)
    write_atomic(path, buf.getbuffer())


def read_checkpoint(path: Path, expected: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint at ``path``; refused in one line when unreadable or (with ``expected``) when
    its identity differs from ``expected``, naming the settings that differ."""
    again = f"delete {path.parent} or run `nasconv supernet train ... --restart` to train it again"
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SupernetCheckpointError(f"no supernet checkpoint at {path}: train it first with `nasconv supernet "
                                      "train` and the same space, data and settings") from None
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError) as exc:
        raise SupernetCheckpointError(f"the supernet checkpoint {path} is corrupt or truncated "
                                      f"({type(exc).__name__}); {again}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION or "identity" not in data:
        raise SupernetCheckpointError(f"{path} is not a nasconv supernet checkpoint of format {FORMAT_VERSION}; "
                                      f"{again}")
    if expected is not None:
        differ = differences(data["identity"], expected)
        if differ:
            raise SupernetCheckpointError(f"the supernet checkpoint {path} was trained with other settings "
                                          f"({'; '.join(differ)}): refused")
    return data


def differences(stored: Mapping[str, Any], expected: Mapping[str, Any], prefix: str = "") -> list[str]:
    """What differs between two identities, as ``key: stored -> expected`` (nested keys dotted)."""
    out = []
    for k in sorted(set(stored) | set(expected)):
        a, b = stored.get(k), expected.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {_short(a)} here, {_short(b)} asked")
    return out


def _short(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def list_checkpoints(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every checkpoint in ``folder``: its path, identity, steps done and planned, or why unreadable."""
    out = []
    root = Path(folder)
    if not root.is_dir():
        return out
    for path in sorted(root.glob(f"*/{FILE_NAME}")):
        try:
            data = read_checkpoint(path)
        except SupernetCheckpointError as exc:
            out.append({"path": str(path), "error": str(exc)})
            continue
        out.append({"path": str(path), "identity": data["identity"], "step": int(data["step"]),
                    "steps": int(data["identity"].get("steps", 0)), "train_time_s": float(data.get("train_time_s", 0)),
                    "size_bytes": path.stat().st_size})
    return out
