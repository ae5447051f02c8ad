"""CIFAR-10 from its python pickle batches, unpickled with a loader that refuses anything but arrays."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasconv.data.dataset import Dataset
from nasconv.errors import DataError

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = (*_CIFAR_TRAIN, "test_batch", "batches.meta")


def cifar_dir(arg: str) -> Path:
    root = Path(arg).expanduser()
    inner = root / "cifar-10-batches-py"
    return inner if inner.is_dir() else root


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold (dicts, lists, numpy arrays).

    A pickle can run arbitrary code when loaded; a dataset folder is not code the user means
    to run, so anything beyond numpy arrays is refused.
    """

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        # Pickles from numpy 1 name numpy.core, which numpy 2 only keeps as a deprecated alias.
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            # The official batches were pickled by Python 2: str keys arrive as bytes.
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 file {path} is missing") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # a corrupt pickle raises almost anything
        raise DataError(f"{path} is not a readable CIFAR-10 pickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR-10 pickle: holds {type(obj).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _read_cifar_pickle(path)
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"{path} has no {exc.args[0]!r} entry") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path} has malformed data: {exc}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise DataError(f"{path}: expected data of shape (N, 3072) and N labels, "
                        f"got {data.shape} and {labels.shape}")
    # Rows are the red plane, then green, then blue, each 32x32 row-major.
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def load_cifar10(directory: Path) -> Dataset:
    if not directory.is_dir():
        raise DataError(f"CIFAR-10 folder {directory} does not exist")
    meta = _read_cifar_pickle(directory / "batches.meta")
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{directory / 'batches.meta'} has no label_names list")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    train = [_cifar_batch(directory / n) for n in _CIFAR_TRAIN]
    val_x, val_y = _cifar_batch(directory / "test_batch")
    for path, (_, y) in zip([*_CIFAR_TRAIN, "test_batch"], [*train, (val_x, val_y)]):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            raise DataError(f"{directory / path} has labels outside [0, {len(classes)})")
    return Dataset(
        name="cifar10",
        train_x=torch.cat([x for x, _ in train]), train_y=torch.cat([y for _, y in train]),
        val_x=val_x, val_y=val_y,
        num_classes=len(classes), classes=classes,
        source=str(directory),
    )
