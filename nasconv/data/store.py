"""The decoded-data cache: a dataset is decoded once into a uint8 file that every later load, in
any process, memory-maps.

Where: ``cache_dir`` when given, else ``$NASCONV_CACHE_DIR``, else ``$XDG_CACHE_HOME/nasconv``,
else ``~/.cache/nasconv`` (:func:`cache_root`); entries live in its ``decoded/`` folder.

An entry is named ``<kind>-<hash>``, the hash of what was asked for (each source file's path,
size and mtime, the stored image size, the split settings where they matter), and is three files:

* ``.images.npy``: every image, uint8 ``N x C x H x W``, the train split first, then val;
* ``.labels.npy``: the int64 labels, in the same order;
* ``.json``: class names, split sizes, shape, per-channel mean/std (so a load reads no pixel),
  and the exact byte size of the other two files. It is written last: without it there is no
  entry, and a load checks the two sizes and shapes against it.

Every file is written under a temporary name in the same folder, fsynced and renamed into place,
so no reader ever sees half a file; a lock file (``flock``) makes a second process that wants
the same entry wait for the first and then map its result rather than decode again. A load opens
the images with ``np.load(mmap_mode="c")``: copy-on-write, so torch gets a writable array
without a copy, and pages stay shared between every process that maps them (through the page
cache): a worker's resident memory does not grow with the dataset.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasconv.data.dataset import Dataset, stats_from_histograms
from nasconv.errors import DataError

CACHE_ENV = "NASCONV_CACHE_DIR"
#: bumped when the files' layout or meaning changes, so old entries are not read as new ones
FORMAT_VERSION = 1
_STATS_CHUNK = 2048  # images per histogram step: bounded memory for any dataset size
_log = logging.getLogger(__name__)


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``, else ``$NASCONV_CACHE_DIR``, else ``$XDG_CACHE_HOME/nasconv``, else ``~/.cache/nasconv``."""
    if cache_dir is not None and str(cache_dir):
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path("~/.cache").expanduser()) / "nasconv"


def key_digest(key: Any) -> str:
    """A stable hex digest of a JSON-able key."""
    text = json.dumps(key, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def unwritable(path: Path, exc: OSError) -> str:
    return (f"cannot write to the nasconv data cache at {path}: {exc.strerror or exc}; "
            f"set {CACHE_ENV} (or pass cache_dir) to a writable folder")


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(unwritable(path, exc)) from None
    return path


@contextmanager
def file_lock(path: Path, waiting_for: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing); says on stderr when it has
    to wait, since another process may take minutes to decode or download."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DataError(unwritable(path.parent, exc)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"nasconv: waiting for another process {waiting_for}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Built:
    """What a builder returns once it has filled :meth:`ImageWriter.images`."""

    name: str
    source: str
    classes: tuple[str, ...]
    train_y: np.ndarray
    val_y: np.ndarray


class ImageWriter:
    """Gives a builder the memory-mapped file (under its temporary name) to decode into."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.array: np.memmap | None = None
        self.n_train = 0

    def images(self, n_train: int, n_val: int, chw: tuple[int, int, int]) -> np.memmap:
        """The uint8 ``(n_train + n_val) x C x H x W`` array to fill: train rows first."""
        self.n_train = n_train
        self.array = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8,
                                               shape=(n_train + n_val, *chw))
        # Reserve the blocks now: writing into a sparse mapping on a full disk kills the process
        # (SIGBUS) instead of raising an error.
        fd = os.open(self.path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        finally:
            os.close(fd)
        return self.array


class _Entry:
    def __init__(self, directory: Path, stem: str) -> None:
        self.dir = directory
        self.meta = directory / f"{stem}.json"
        self.images = directory / f"{stem}.images.npy"
        self.labels = directory / f"{stem}.labels.npy"
        self.lock = directory / f"{stem}.lock"
        self.stem = stem

    def damaged(self, path: Path, why: str) -> DataError:
        return DataError(f"nasconv data cache file {path} is damaged ({why}): delete "
                         f"{self.dir / self.stem}.* and load again to decode it afresh")

    def load(self) -> Dataset | None:
        """The entry, memory-mapped; ``None`` while it has no metadata (not written yet)."""
        try:
            meta = json.loads(self.meta.read_text())
            n_train, n_val = int(meta["n_train"]), int(meta["n_val"])
            shape = (n_train + n_val, *(int(v) for v in meta["shape"]))
            sizes = {self.images: int(meta["images_bytes"]), self.labels: int(meta["labels_bytes"])}
            classes = tuple(str(c) for c in meta["classes"])
            mean, std = tuple(float(v) for v in meta["mean"]), tuple(float(v) for v in meta["std"])
            if meta["format"] != FORMAT_VERSION:
                raise ValueError(f"format {meta['format']}")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise DataError(f"cannot read {self.meta}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise self.damaged(self.meta, f"unreadable metadata: {exc}") from None
        for path, expected in sizes.items():
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise self.damaged(path, exc.strerror or str(exc)) from None
            if size != expected:
                raise self.damaged(path, f"{size} bytes, expected {expected}")
        try:
            x = np.load(self.images, mmap_mode="c")
        except (OSError, ValueError) as exc:
            raise self.damaged(self.images, str(exc)) from None
        try:
            y = np.load(self.labels)  # (a pickled object array is refused: allow_pickle is off)
        except (OSError, ValueError) as exc:
            raise self.damaged(self.labels, str(exc)) from None
        if x.dtype != np.uint8 or x.shape != shape:
            raise self.damaged(self.images, f"holds {x.dtype} {x.shape}, expected uint8 {shape}")
        if y.dtype != np.int64 or y.shape != shape[:1]:
            raise self.damaged(self.labels, f"holds {y.dtype} {y.shape}, expected int64 {shape[:1]}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            # same size, other bytes: the dataset's own check would not say which file to delete
            raise self.damaged(self.labels, f"labels in [{int(y.min())}, {int(y.max())}], outside the "
                                            f"{len(classes)} classes [0, {len(classes)})")
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        return Dataset(
            name=str(meta["name"]),
            train_x=xt[:n_train], train_y=yt[:n_train], val_x=xt[n_train:], val_y=yt[n_train:],
            num_classes=len(classes), classes=classes, source=str(meta["source"]),
            mean=mean, std=std,
        )

    def build(self, builder: Callable[[ImageWriter], Built]) -> None:
        """Run ``builder`` into temporary files and rename them into place, metadata last."""
        self._remove_leftovers()
        tag = f".tmp-{os.getpid()}"
        tmp = {p: p.with_name(p.name + tag) for p in (self.images, self.labels, self.meta)}
        writer = ImageWriter(tmp[self.images])
        try:
            built = builder(writer)
            x = writer.array
            if x is None:
                raise RuntimeError("a data cache builder wrote no images")
            n_train = writer.n_train
            if built.train_y.shape != (n_train,) or built.val_y.shape != (len(x) - n_train,):
                raise RuntimeError(f"labels {built.train_y.shape} + {built.val_y.shape} for "
                                   f"{n_train} + {len(x) - n_train} images")
            mean, std = _chunked_stats(x, n_train)
            meta: dict[str, Any] = {
                "format": FORMAT_VERSION, "name": built.name, "source": built.source,
                "classes": list(built.classes), "n_train": n_train, "n_val": len(x) - n_train,
                "shape": list(x.shape[1:]), "mean": list(mean), "std": list(std),
            }
            x.flush()
            writer.array = x = None  # unmap before the rename
            fsync_path(tmp[self.images])
            with open(tmp[self.labels], "wb") as f:
                np.save(f, np.concatenate([built.train_y, built.val_y]).astype(np.int64))
                f.flush()
                os.fsync(f.fileno())
            meta["images_bytes"] = tmp[self.images].stat().st_size
            meta["labels_bytes"] = tmp[self.labels].stat().st_size
            os.replace(tmp[self.images], self.images)
            os.replace(tmp[self.labels], self.labels)
            with open(tmp[self.meta], "w") as f:
                json.dump(meta, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp[self.meta], self.meta)
            fsync_path(self.dir)
        except OSError as exc:
            raise DataError(unwritable(self.dir, exc)) from None
        finally:
            writer.array = None
            for p in tmp.values():
                p.unlink(missing_ok=True)

    def _remove_leftovers(self) -> None:
        # Temporary files of a writer that was killed: only the lock holder writes, so any there
        # now are dead.
        for p in self.dir.glob(f"{self.stem}.*.tmp-*"):
            p.unlink(missing_ok=True)


def _chunked_stats(x: np.ndarray, n_train: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The train rows' per-channel statistics, as :class:`Dataset` computes them, a chunk at a time."""
    hists = np.zeros((x.shape[1], 256), dtype=np.int64)
    for start in range(0, n_train, _STATS_CHUNK):
        chunk = np.asarray(x[start:min(start + _STATS_CHUNK, n_train)])
        for c in range(x.shape[1]):
            hists[c] += np.bincount(chunk[:, c].reshape(-1), minlength=256)
    return stats_from_histograms(list(hists))


def stored_dataset(kind: str, key: dict[str, Any], builder: Callable[[ImageWriter], Built], *,
                   cache_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """The dataset of the cache entry for ``key``, decoded by ``builder`` first if there is none.

    ``builder(writer)`` calls ``writer.images(...)`` once, fills the array and returns
    :class:`Built`. Concurrent callers with the same key run it once between them.
    """
    directory = cache_root(cache_dir) / "decoded"
    entry = _Entry(directory, f"{kind}-{key_digest({'format': FORMAT_VERSION, 'kind': kind, **key})[:24]}")
    ds = entry.load()
    if ds is not None:
        return ds
    ensure_dir(directory)
    with file_lock(entry.lock, f"to finish decoding {kind} into {directory}"):
        ds = entry.load()
        if ds is None:
            _log.info("decoding %s into %s", kind, entry.images)
            entry.build(builder)
            ds = entry.load()
    if ds is None:
        raise DataError(f"{entry.meta} vanished right after it was written")
    return ds
