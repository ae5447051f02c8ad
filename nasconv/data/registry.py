"""``load_dataset(spec)``: a short string names a dataset; a table maps its name to the format's loader.

* ``fashion-mnist`` (default): the real 70,000 grey 28x28 images; ``train`` is the 60k train
  split, ``val`` the 10k t10k split (never trained on).
* ``cifar10:DIR``: the standard python pickle batches.
* ``imagefolder:DIR``: one sub-folder of PNG/JPEG files per class, with or without
  ``train/`` and ``val/`` (or ``test/``) splits.
* ``synthetic`` or ``synthetic:N``: random images with a class signal, for smoke tests only.

Each entry also says how its cache key is made, so that repeated loads in one process are free,
and how :func:`check_spec` checks a spec without loading it (before a search writes anything).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from nasconv.data.cache import cached, fingerprint
from nasconv.data.cifar10 import CIFAR_FILES, cifar_dir, load_cifar10
from nasconv.data.dataset import Dataset
from nasconv.data.fashion_mnist import fashion_files, find_fashion_mnist, load_fashion_mnist
from nasconv.data.imagefolder import load_imagefolder, scan_imagefolder
from nasconv.data.synthetic import DEFAULT_SYNTHETIC_SIZE, make_synthetic, parse_count
from nasconv.data.transforms import parse_size
from nasconv.errors import DataError, UnknownNameError, UsageError


@dataclass(frozen=True)
class _Request:
    """One call of :func:`load_dataset`, after its arguments were checked."""

    spec: str
    arg: str  # what follows the first ``:`` of ``spec``
    data_dir: str | os.PathLike[str] | None
    val_fraction: float
    seed: int
    image_size: int | tuple[int, int] | None


@dataclass(frozen=True)
class _Format:
    usage: str  # how the spec is written, as error messages show it
    open: Callable[[_Request], Dataset]
    arg: Literal["none", "required", "optional"]
    sized: bool = False  # whether ``image_size`` applies
    #: cheap checks of what ``open`` needs (folders and files there), reading no images
    check: Callable[[_Request], None] = lambda req: None


def _open_fashion_mnist(req: _Request) -> Dataset:
    directory = find_fashion_mnist(req.data_dir)
    return cached(("fashion-mnist", fingerprint(fashion_files(directory).values())),
                  lambda: load_fashion_mnist(directory))


def _open_cifar10(req: _Request) -> Dataset:
    directory = cifar_dir(req.arg)
    files = [directory / n for n in CIFAR_FILES]
    return cached(("cifar10", fingerprint(files)), lambda: load_cifar10(directory))


def _check_fashion_mnist(req: _Request) -> None:
    # Where the images are found (or downloaded to) is decided by loading; a folder given that
    # is not one is an error either way.
    for origin, given in (("--data-dir", req.data_dir), ("NASCONV_DATA", os.environ.get("NASCONV_DATA"))):
        if given and not Path(given).expanduser().is_dir():
            raise DataError(f"{origin} {Path(given).expanduser()} is not a directory")


def _check_cifar10(req: _Request) -> None:
    directory = cifar_dir(req.arg)
    if not directory.is_dir():
        raise DataError(f"CIFAR-10 folder {directory} does not exist")
    missing = [n for n in CIFAR_FILES if not (directory / n).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 folder {directory} lacks {', '.join(missing)} (the python version's batches)")


def _check_imagefolder(req: _Request) -> None:
    parse_size(req.image_size)
    root = Path(req.arg).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")


def _check_synthetic(req: _Request) -> None:
    if req.arg:
        parse_count(req.arg, req.spec)


def _open_imagefolder(req: _Request) -> Dataset:
    size = parse_size(req.image_size)
    root = Path(req.arg).expanduser()
    splits = scan_imagefolder(root)
    files = [p for split in splits.values() for paths in split.values() for p in paths]
    key = ("imagefolder", fingerprint(files), size,
           None if "val" in splits else (req.val_fraction, req.seed))
    return cached(key, lambda: load_imagefolder(root, splits, size, req.val_fraction, req.seed))


def _open_synthetic(req: _Request) -> Dataset:
    n = parse_count(req.arg, req.spec) if req.arg else DEFAULT_SYNTHETIC_SIZE
    return cached(("synthetic", n, req.val_fraction, req.seed),
                  lambda: make_synthetic(n, req.val_fraction, req.seed))


_FASHION_MNIST = _Format("fashion-mnist", _open_fashion_mnist, arg="none", check=_check_fashion_mnist)
_FORMATS: dict[str, _Format] = {
    "fashion-mnist": _FASHION_MNIST,
    "fashion_mnist": _FASHION_MNIST,
    "fashionmnist": _FASHION_MNIST,
    "cifar10": _Format("cifar10:DIR", _open_cifar10, arg="required", check=_check_cifar10),
    "imagefolder": _Format("imagefolder:DIR", _open_imagefolder, arg="required", sized=True,
                           check=_check_imagefolder),
    "synthetic": _Format("synthetic", _open_synthetic, arg="optional", check=_check_synthetic),
}

KNOWN_SPECS = tuple(dict.fromkeys(f.usage for f in _FORMATS.values()))


def load_dataset(
    spec: str = "fashion-mnist",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
) -> Dataset:
    """Load the dataset named by ``spec`` (see the module docstring) into memory.

    ``data_dir`` is where to look first for Fashion-MNIST. ``val_fraction`` and ``seed`` choose
    the held-out images of an ``imagefolder`` without splits and of ``synthetic``.
    ``image_size`` (``imagefolder`` only; an int means square) is the size every image is
    resized to; by default, the most common size. Repeated loads in one process are free.
    """
    fmt, req = _parse(spec, data_dir, val_fraction, seed, image_size)
    return fmt.open(req)


def check_spec(spec: str = "fashion-mnist", data_dir: str | os.PathLike[str] | None = None, *,
               image_size: int | tuple[int, int] | None = None) -> None:
    """Raise what :func:`load_dataset` would for a malformed spec or missing folders and files,
    without reading any image (a search checks its data so before it writes anything)."""
    fmt, req = _parse(spec, data_dir, 0.1, 0, image_size)
    fmt.check(req)


def _parse(spec: str, data_dir: str | os.PathLike[str] | None, val_fraction: float, seed: int,
           image_size: int | tuple[int, int] | None) -> tuple[_Format, _Request]:
    if not isinstance(spec, str):
        raise UsageError(f"dataset spec must be a string, got {type(spec).__name__}")
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    kind, _, arg = spec.strip().partition(":")
    fmt = _FORMATS.get(kind.lower())
    if image_size is not None and (fmt is None or not fmt.sized):
        raise UsageError(f"image_size applies to imagefolder datasets only, not {spec!r}")
    if fmt is None or (fmt.arg == "none" and arg) or (fmt.arg == "required" and not arg):
        raise UnknownNameError("dataset", spec, KNOWN_SPECS)
    return fmt, _Request(spec, arg, data_dir, val_fraction, seed, image_size)
