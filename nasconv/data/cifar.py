"""CIFAR-10 and CIFAR-100 from their python pickle files, unpickled with a loader that refuses
anything but arrays, and decoded once into the data cache (:mod:`nasconv.data.store`).

CIFAR-10 (``cifar-10-batches-py/``): ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` (keys
``data``, ``labels``) and ``batches.meta`` (``label_names``). CIFAR-100 (``cifar-100-python/``):
``train``, ``test`` (keys ``data``, ``fine_labels``) and ``meta`` (``fine_label_names``). Every
``data`` row is 3072 bytes: the red 32x32 plane, then green, then blue. Stored as they are (32x32).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasconv.data.cache import fingerprint
from nasconv.data.dataset import Dataset
from nasconv.data.store import Built, ImageWriter, key_digest, stored_dataset
from nasconv.errors import DataError


@dataclass(frozen=True)
class CifarKind:
    """What differs between CIFAR-10 and CIFAR-100: file names, keys and where to get them."""

    name: str  # the spec name: cifar10, cifar100
    title: str  # CIFAR-10, CIFAR-100
    folder: str  # what the official tarball extracts to
    tarball: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    labels_key: str
    names_key: str
    num_classes: int

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)


CIFAR10 = CifarKind("cifar10", "CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                    tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
                    "labels", "label_names", 10)
CIFAR100 = CifarKind("cifar100", "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
                     ("train",), "test", "meta", "fine_labels", "fine_label_names", 100)
CIFAR_KINDS = {k.name: k for k in (CIFAR10, CIFAR100)}
#: kept for callers of the CIFAR-10-only module this was
CIFAR_FILES = CIFAR10.files


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


def read_cifar_pickle(path: Path, title: str = "CIFAR") -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            # The official batches were pickled by Python 2: str keys arrive as bytes.
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{title} file {path} is missing") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # a corrupt pickle raises almost anything
        raise DataError(f"{path} is not a readable {title} pickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a {title} pickle: holds {type(obj).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_batch(path: Path, kind: CifarKind) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path, kind.title)
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[kind.labels_key], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"{path} has no {exc.args[0]!r} entry") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path} has malformed data: {exc}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise DataError(f"{path}: expected data of shape (N, 3072) and N labels, "
                        f"got {data.shape} and {labels.shape}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= kind.num_classes):
        raise DataError(f"{path} has labels outside [0, {kind.num_classes})")
    return data.reshape(-1, 3, 32, 32), labels


def _class_names(directory: Path, kind: CifarKind) -> tuple[str, ...]:
    path = directory / kind.meta_file
    names = read_cifar_pickle(path, kind.title).get(kind.names_key)
    if not isinstance(names, list) or len(names) != kind.num_classes:
        raise DataError(f"{path} has no {kind.names_key} list of {kind.num_classes} names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def cifar_files(directory: Path, kind: CifarKind) -> list[Path]:
    return [directory / n for n in kind.files]


def load_cifar(directory: Path, kind: CifarKind, *, cache_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """CIFAR from the pickle files in ``directory``, through the data cache."""
    if not directory.is_dir():
        raise DataError(f"{kind.title} folder {directory} does not exist")
    key = {"files": key_digest(fingerprint(cifar_files(directory, kind)))}
    return stored_dataset(kind.name, key, lambda writer: _decode(directory, kind, writer), cache_dir=cache_dir)


def _decode(directory: Path, kind: CifarKind, writer: ImageWriter) -> Built:
    classes = _class_names(directory, kind)
    # A pickle has no header to read the image count from: the train files are read first
    # (150 MB, once), then copied into the mapped file.
    train = [_cifar_batch(directory / name, kind) for name in kind.train_files]
    test_x, test_y = _cifar_batch(directory / kind.test_file, kind)
    n_train = sum(len(y) for _, y in train)
    out = writer.images(n_train, len(test_y), (3, 32, 32))
    row = 0
    for x, y in train:
        out[row:row + len(y)] = x
        row += len(y)
    out[row:] = test_x
    return Built(name=kind.name, source=str(directory), classes=classes,
                 train_y=np.concatenate([y for _, y in train]), val_y=test_y)
