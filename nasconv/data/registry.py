"""``load_dataset(spec)``: a short string names a dataset; a table maps its name to the format's loader.

* ``fashion-mnist`` (default): the real 70,000 grey 28x28 images; ``train`` is the 60k train
  split, ``val`` the 10k t10k split (never trained on).
* ``cifar10``, ``cifar100``: found in ``--data-dir``, ``$NASCONV_DATA`` or the cache, else
  downloaded (see :mod:`nasconv.data.cifar_sources`); ``cifar10:DIR``, ``cifar100:DIR``: from DIR
  (the python version's files, the official tarball, or ``train/`` and ``test/`` image folders).
* ``imagefolder:DIR``: ``DIR/train/<class>/`` images with ``DIR/val/<class>/`` held out (else
  ``DIR/test/<class>/``: selection then happens on the test split; ``holdout=FRACTION`` holds
  out part of ``train/`` instead), or ``DIR/<class>/`` images with a fraction held out per class.
  Folder and file names starting with ``.`` are skipped; images are PNG or JPEG.
* ``synthetic`` or ``synthetic:N``: random images with a class signal, for smoke tests only.

Everything but ``synthetic`` is decoded once into the data cache (:mod:`nasconv.data.store`) and
memory-mapped from then on, in every process. Each entry also says how its process cache key is
made, so that repeated loads in one process are free, and how :func:`check_spec` checks a spec
without loading it (before a search writes anything).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from nasconv.data.cache import cached, fingerprint
from nasconv.data.cifar import CIFAR10, CIFAR100, CifarKind, cifar_files, load_cifar
from nasconv.data.cifar_sources import check_cifar, locate_cifar
from nasconv.data.dataset import Dataset
from nasconv.data.fashion_mnist import fashion_files, find_fashion_mnist, load_fashion_mnist
from nasconv.data.imagefolder import load_imagefolder, scan_imagefolder
from nasconv.data.store import cache_root
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
    cache_dir: str | os.PathLike[str] | None = None
    #: hold out this fraction of an image folder's ``train/`` (its ``val/``/``test/`` unread)
    holdout: float | None = None

    @property
    def cache_root(self) -> str:
        return str(cache_root(self.cache_dir))


@dataclass(frozen=True)
class _Format:
    usage: str  # how the spec is written, as error messages show it
    open: Callable[[_Request], Dataset]
    arg: Literal["none", "required", "optional"]
    sized: bool = False  # whether ``image_size`` applies
    #: cheap checks of what ``open`` needs (folders and files there), reading no images
    check: Callable[[_Request], None] = lambda req: None


def _open_fashion_mnist(req: _Request) -> Dataset:
    directory = find_fashion_mnist(req.data_dir, req.cache_dir)
    return cached(("fashion-mnist", fingerprint(fashion_files(directory).values()), req.cache_root),
                  lambda: load_fashion_mnist(directory, cache_dir=req.cache_dir))


def _open_cifar(kind: CifarKind) -> Callable[[_Request], Dataset]:
    def open_(req: _Request) -> Dataset:
        found = locate_cifar(kind, req.arg, req.data_dir, req.cache_dir)
        if found.layout == "imagefolder":
            scan = scan_imagefolder(found.path)
            if len(scan.classes) != kind.num_classes:
                raise DataError(f"{found.path} has {len(scan.classes)} class folders; "
                                f"{kind.title} has {kind.num_classes}")
            return cached((kind.name, "folder", str(scan.root), scan.digest, req.cache_root),
                          lambda: load_imagefolder(scan, None, req.val_fraction, req.seed,
                                                   cache_dir=req.cache_dir, name=kind.name))
        return cached((kind.name, fingerprint(cifar_files(found.path, kind)), req.cache_root),
                      lambda: load_cifar(found.path, kind, cache_dir=req.cache_dir))
    return open_


def _check_fashion_mnist(req: _Request) -> None:
    # Where the images are found (or downloaded to) is decided by loading; a folder given that
    # is not one is an error either way.
    for origin, given in (("--data-dir", req.data_dir), ("NASCONV_DATA", os.environ.get("NASCONV_DATA"))):
        if given and not Path(given).expanduser().is_dir():
            raise DataError(f"{origin} {Path(given).expanduser()} is not a directory")


def _check_cifar(kind: CifarKind) -> Callable[[_Request], None]:
    return lambda req: check_cifar(kind, req.arg, req.data_dir)


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
    scan = scan_imagefolder(Path(req.arg).expanduser(), holdout=req.holdout is not None)
    fraction = req.val_fraction if req.holdout is None else req.holdout
    key = ("imagefolder", str(scan.root), scan.digest, size,
           None if scan.has_val else (fraction, req.seed), req.cache_root)
    return cached(key, lambda: load_imagefolder(scan, size, fraction, req.seed, cache_dir=req.cache_dir))


def _open_synthetic(req: _Request) -> Dataset:
    n = parse_count(req.arg, req.spec) if req.arg else DEFAULT_SYNTHETIC_SIZE
    return cached(("synthetic", n, req.val_fraction, req.seed),
                  lambda: make_synthetic(n, req.val_fraction, req.seed))


_FASHION_MNIST = _Format("fashion-mnist", _open_fashion_mnist, arg="none", check=_check_fashion_mnist)
_FORMATS: dict[str, _Format] = {
    "fashion-mnist": _FASHION_MNIST,
    "fashion_mnist": _FASHION_MNIST,
    "fashionmnist": _FASHION_MNIST,
    "cifar10": _Format("cifar10[:DIR]", _open_cifar(CIFAR10), arg="optional", check=_check_cifar(CIFAR10)),
    "cifar100": _Format("cifar100[:DIR]", _open_cifar(CIFAR100), arg="optional", check=_check_cifar(CIFAR100)),
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
    cache_dir: str | os.PathLike[str] | None = None,
    holdout: float | None = None,
) -> Dataset:
    """Load the dataset named by ``spec`` (see the module docstring).

    ``data_dir`` is where to look first for Fashion-MNIST and CIFAR. ``val_fraction`` and
    ``seed`` choose the held-out images of an ``imagefolder`` without splits and of
    ``synthetic``. ``image_size`` (``imagefolder`` only; an int means square) is the size every
    image is stored at; by default, the rule of :mod:`nasconv.data.imagefolder`. ``cache_dir``
    is the data cache's folder (default ``$NASCONV_CACHE_DIR``, else the user cache): the first
    load decodes into it, later ones, in any process, memory-map it. Repeated loads in one
    process are free. ``holdout`` (``imagefolder`` only): hold out this fraction of each class
    of ``train/`` (seed ``seed``) instead of reading ``val/`` or ``test/``.
    """
    fmt, req = _parse(spec, data_dir, val_fraction, seed, image_size, cache_dir, holdout)
    return fmt.open(req)


def check_spec(spec: str = "fashion-mnist", data_dir: str | os.PathLike[str] | None = None, *,
               image_size: int | tuple[int, int] | None = None,
               cache_dir: str | os.PathLike[str] | None = None, holdout: float | None = None) -> None:
    """Raise what :func:`load_dataset` would for a malformed spec or missing folders and files,
    without reading any image, downloading or decoding (a search checks its data so before it
    writes anything)."""
    fmt, req = _parse(spec, data_dir, 0.1, 0, image_size, cache_dir, holdout)
    fmt.check(req)


def readable_here(spec: str, data_dir: str | os.PathLike[str] | None = None, holdout: float | None = None) -> bool:
    """Whether the data of ``spec`` is on this machine (a malformed spec still raises): a driver
    of a Ray cluster reads the data to fit the head and proxy where it can."""
    try:
        check_spec(spec, data_dir, holdout=holdout)
    except DataError:
        return False
    return True


def _parse(spec: str, data_dir: str | os.PathLike[str] | None, val_fraction: float, seed: int,
           image_size: int | tuple[int, int] | None,
           cache_dir: str | os.PathLike[str] | None,
           holdout: float | None = None) -> tuple[_Format, _Request]:
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
    if holdout is not None:
        if fmt.usage != "imagefolder:DIR":
            raise UsageError(f"--holdout applies to imagefolder datasets only, not {spec!r}")
        if not 0.0 < holdout < 1.0:
            raise UsageError(f"--holdout must be a fraction in (0, 1), got {holdout}")
    return fmt, _Request(spec, arg, data_dir, val_fraction, seed, image_size, cache_dir, holdout)
