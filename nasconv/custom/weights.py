"""The user's trained weights (``init_from``): found, identified by content and loaded.

A space records the sha256 of the weights file it was made with (``model.init_sha256``); it is
part of the space's content hash, so of a study's identity: a study started from one set of
weights never continues from another. A file that changed under a space is refused in one line
that names it and both digests, when the space is read and again when a candidate is built.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from nasconv.custom.errors import ModelError, first_line

if TYPE_CHECKING:
    from nasconv.custom.space import ModelSpace


def weights_path(init_from: str, base_dir: str = "") -> Path:
    """The weights file: as given (from the working directory), else next to the space file."""
    path = Path(init_from)
    if not path.is_file() and base_dir and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise ModelError(f"init_from: weights file {init_from} not found")
    return path.resolve()


@functools.lru_cache(maxsize=16)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read the weights {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read once per content: the cache is keyed by mtime and size."""
    st = path.stat()
    return _digest(str(path), st.st_mtime_ns, st.st_size)


def check_weights(init_from: str, recorded: str | None, base_dir: str = "", where: str = "") -> str:
    """The weights file's sha256 now; :class:`ModelError` naming both digests when it is not the
    ``recorded`` one."""
    now = file_sha256(weights_path(init_from, base_dir))
    if recorded and recorded != now:
        raise ModelError(f"{where}the weights {init_from} changed since the space was made: sha256 {recorded[:16]} "
                         f"in the space, {now[:16]} now; a study started from the old weights does not continue "
                         "from new ones (make the space again with --init-from, and use another --study name)")
    return now


@functools.lru_cache(maxsize=4)
def _state_dict(path: str, mtime_ns: int) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: one line
        raise ModelError(f"cannot read the weights {path}: {first_line(exc)}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{path} holds no state dict (a mapping of names to tensors)")
    return sd


def load_init_weights(model: nn.Module, space: ModelSpace) -> None:
    """The user's trained weights into the unmodified model, every key matched. Where the head
    follows the data (``space.new_head``), tensors whose shape the class count changed keep the
    factory's initialisation: the classifier of other classes cannot carry over."""
    if not space.init_from:
        return
    check_weights(space.init_from, space.init_sha256, space.base_dir)
    path = weights_path(space.init_from, space.base_dir)
    sd = _state_dict(str(path), os.stat(path).st_mtime_ns)
    if space.new_head:
        own = model.state_dict()
        sd = {k: (v if k not in own or own[k].shape == v.shape else own[k]) for k, v in sd.items()}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"the weights {space.init_from} do not fit the model: {first_line(exc)[:240]}") from None
