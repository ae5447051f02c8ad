"""Image datasets held in memory as uint8 tensors, for brief training of CNN candidates.

``load_dataset(spec)`` names a dataset by a short string:

* ``fashion-mnist`` (default): the real 70,000 grey 28x28 images; ``train`` is the 60k train
  split, ``val`` the 10k t10k split (never trained on).
* ``cifar10:DIR``: the standard python pickle batches.
* ``imagefolder:DIR``: one sub-folder of PNG/JPEG files per class, with or without
  ``train/`` and ``val/`` (or ``test/``) splits.
* ``synthetic`` or ``synthetic:N``: random images with a class signal, for smoke tests only.

Images stay uint8 (a quarter of the memory of float32) until :func:`prepare_batch` turns a
batch into the float tensor a model expects.
"""

from __future__ import annotations

import gzip
import operator
import os
import pickle
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nasconv.errors import DataError, UnknownNameError, UsageError

__all__ = [
    "Dataset",
    "KNOWN_SPECS",
    "clear_cache",
    "load_dataset",
    "prepare_batch",
    "subset",
]

KNOWN_SPECS = ("fashion-mnist", "cifar10:DIR", "imagefolder:DIR", "synthetic")

# Where Debian's package ``dataset-fashion-mnist`` installs the idx files.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CACHE_DIR = Path("~/.cache/nasconv/fashion-mnist")
FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
FASHION_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "val_x": "t10k-images-idx3-ubyte",
    "val_y": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Short, because an offline machine should fail over to the error message, not hang.
DOWNLOAD_TIMEOUT_S = 10.0

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
# ITU-R BT.601, the weights Pillow uses for "L", so grey made here matches grey made there.
_LUMA = (0.299, 0.587, 0.114)
DEFAULT_SYNTHETIC_SIZE = 2000


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset in memory. Images are uint8 ``N x C x H x W``; labels int64 in ``[0, num_classes)``.

    ``mean`` and ``std`` are per channel, in units of ``pixel / 255``, computed on the train
    split, for ``prepare_batch(..., mean_std=(ds.mean, ds.std))``. Tensors are shared with the
    process cache of :func:`load_dataset`: never modify them in place.
    """

    name: str
    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    val_x: torch.Tensor = field(repr=False)
    val_y: torch.Tensor = field(repr=False)
    num_classes: int
    classes: tuple[str, ...] = field(repr=False)
    source: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            x: torch.Tensor = getattr(self, f"{split}_x")
            y: torch.Tensor = getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise DataError(f"{self.name}: {split}_x must be uint8 N x C x H x W, "
                                f"got {x.dtype} of shape {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise DataError(f"{self.name}: {split}_y must be int64 of shape ({x.shape[0]},), "
                                f"got {y.dtype} of shape {tuple(y.shape)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DataError(f"{self.name}: {split} labels must lie in [0, {self.num_classes}), "
                                f"got [{int(y.min())}, {int(y.max())}]")
        if self.train_x.shape[1:] != self.val_x.shape[1:] and self.val_x.shape[0]:
            raise DataError(f"{self.name}: train images are {tuple(self.train_x.shape[1:])} "
                            f"but val images are {tuple(self.val_x.shape[1:])}")
        if len(self.classes) != self.num_classes:
            raise DataError(f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes")
        if not self.mean:
            # Frozen: computed defaults have to go through object.__setattr__.
            mean, std = _channel_stats(self.train_x)
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])

    def __repr__(self) -> str:
        c, h, w = self.train_x.shape[1:]
        return (f"Dataset({self.name!r}, train={len(self.train_y)}, val={len(self.val_y)}, "
                f"{c}x{h}x{w}, classes={self.num_classes}, source={self.source!r})")


# ---------------------------------------------------------------------------------------------
# Public API


_CACHE: dict[tuple[Any, ...], Dataset] = {}


def clear_cache() -> None:
    """Forget every dataset loaded in this process (tests, or to free memory)."""
    _CACHE.clear()


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
    if not isinstance(spec, str):
        raise UsageError(f"dataset spec must be a string, got {type(spec).__name__}")
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if image_size is not None and kind != "imagefolder":
        raise UsageError(f"image_size applies to imagefolder datasets only, not {spec!r}")

    if kind in ("fashion-mnist", "fashion_mnist", "fashionmnist") and not arg:
        directory = _find_fashion_mnist(data_dir)
        return _cached(("fashion-mnist", _fingerprint(_fashion_files(directory).values())),
                       lambda: _load_fashion_mnist(directory))
    if kind == "cifar10" and arg:
        directory = _cifar_dir(arg)
        files = [directory / n for n in _CIFAR_FILES]
        return _cached(("cifar10", _fingerprint(files)), lambda: _load_cifar10(directory))
    if kind == "imagefolder" and arg:
        size = _parse_size(image_size)
        root = Path(arg).expanduser()
        splits = _scan_imagefolder(root)
        files = [p for split in splits.values() for paths in split.values() for p in paths]
        key = ("imagefolder", _fingerprint(files), size,
               None if "val" in splits else (val_fraction, seed))
        return _cached(key, lambda: _load_imagefolder(root, splits, size, val_fraction, seed))
    if kind == "synthetic":
        n = _parse_count(arg, spec) if arg else DEFAULT_SYNTHETIC_SIZE
        return _cached(("synthetic", n, val_fraction, seed),
                       lambda: _make_synthetic(n, val_fraction, seed))
    raise UnknownNameError("dataset", spec, KNOWN_SPECS)


def prepare_batch(
    x_uint8: torch.Tensor,
    *,
    channels: int,
    resolution: int | tuple[int, int],
    mean_std: tuple[Sequence[float], Sequence[float]] | None = None,
) -> torch.Tensor:
    """Turn a uint8 ``N x C x H x W`` batch into the float32 input a model expects.

    Scales to ``[0, 1]``; normalises by ``mean_std = (mean, std)`` per input channel (or one
    value for all) when given; converts grey to ``channels=3`` by repetition, RGB to
    ``channels=1`` by luminance; resizes to ``resolution`` (bilinear, antialiased when
    shrinking) when the size differs. Stays on the batch's device.
    """
    if x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4:
        raise UsageError(f"prepare_batch wants a uint8 N x C x H x W batch, "
                         f"got {x_uint8.dtype} of shape {tuple(x_uint8.shape)}")
    c_in = int(x_uint8.shape[1])
    if c_in not in (1, 3) or channels not in (1, 3):
        raise UsageError(f"prepare_batch converts between 1 and 3 channels, got {c_in} -> {channels}")
    out_hw = _parse_size(resolution)
    if out_hw is None:
        raise UsageError("prepare_batch needs a resolution")
    x = x_uint8.float().div_(255.0)
    if mean_std is not None:
        x = _normalise(x, mean_std)
    if c_in == 3 and channels == 1:
        # Shrink channels before resizing: three times less to interpolate.
        luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * luma).sum(dim=1, keepdim=True)
    if tuple(x.shape[2:]) != out_hw:
        shrinking = out_hw[0] < x.shape[2] or out_hw[1] < x.shape[3]
        x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=shrinking)
    if c_in == 1 and channels == 3:
        # Repeat last so the resize above ran on one channel, not three.
        x = x.expand(-1, 3, -1, -1).contiguous()
    return x


def subset(ds: Dataset, n_train: int | None, n_val: int | None, seed: int) -> Dataset:
    """A random subset of ``ds`` with ``n_train``/``n_val`` images (``None``: all of them).

    Classes keep their proportions (to within one image) and the same ``seed`` picks the same
    images. Asking for more images than there are gives all of them. ``mean``/``std`` stay those
    of the full dataset so that a subset is normalised like the whole.
    """
    picks = []
    for split, n, offset in (("train", n_train, 0), ("val", n_val, 1)):
        y: torch.Tensor = getattr(ds, f"{split}_y")
        if n is not None:
            try:
                n = operator.index(n)  # numpy integers too, but not 2.5
            except TypeError:
                raise UsageError(f"n_{split} must be an integer or None, got {n!r}") from None
            if n < 0:
                raise UsageError(f"n_{split} must be non-negative, got {n}")
        if n is None or n >= len(y):
            picks.append(None)
        else:
            picks.append(_stratified_pick(y, n, ds.num_classes, seed * 2 + offset))
    (tr, va) = picks
    if tr is None and va is None:
        return ds
    return Dataset(
        name=ds.name,
        train_x=ds.train_x if tr is None else ds.train_x[tr],
        train_y=ds.train_y if tr is None else ds.train_y[tr],
        val_x=ds.val_x if va is None else ds.val_x[va],
        val_y=ds.val_y if va is None else ds.val_y[va],
        num_classes=ds.num_classes,
        classes=ds.classes,
        source=f"{ds.source} (subset n_train={n_train}, n_val={n_val}, seed={seed})",
        mean=ds.mean,
        std=ds.std,
    )


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _cached(key: tuple[Any, ...], load: Any) -> Dataset:
    ds = _CACHE.get(key)
    if ds is None:
        ds = _CACHE[key] = load()
    return ds


def _fingerprint(paths: Any) -> tuple[tuple[str, int, int], ...]:
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


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std of uint8 images from a 256-bin histogram, in pixel/255 units.

    A histogram needs no float copy of the images (60k x 784 floats would be 190 MB).
    """
    if x.shape[0] == 0:
        return (0.0,) * x.shape[1], (1.0,) * x.shape[1]
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).double()
        total = hist.sum()
        mean = float((hist * levels).sum() / total)
        var = float((hist * (levels - mean) ** 2).sum() / total)
        means.append(mean)
        # A constant channel would divide by zero when normalising.
        stds.append(max(var ** 0.5, 1e-6))
    return tuple(means), tuple(stds)


def _normalise(x: torch.Tensor, mean_std: tuple[Sequence[float], Sequence[float]]) -> torch.Tensor:
    try:
        mean, std = (torch.as_tensor([float(v) for v in s], dtype=x.dtype, device=x.device)
                     for s in mean_std)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"mean_std must be (mean, std), two sequences of numbers: {exc}") from None
    c = x.shape[1]
    if mean.numel() not in (1, c) or std.numel() not in (1, c):
        raise UsageError(f"mean_std must have 1 or {c} values each, "
                         f"got {mean.numel()} and {std.numel()}")
    if bool((std <= 0).any()):
        raise UsageError(f"std must be positive, got {std.tolist()}")
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def _parse_size(size: int | tuple[int, int] | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise UsageError(f"image size must be a positive int or (height, width), got {size!r}")
    return int(hw[0]), int(hw[1])


def _parse_count(arg: str, spec: str) -> int:
    try:
        n = int(arg)
    except ValueError:
        n = -1
    if n < 20:
        raise UsageError(f"synthetic:N needs an integer N >= 20 (images in all), got {spec!r}")
    return n


def _stratified_pick(y: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` labels, classes in proportion, chosen at random but fixed by ``seed``.

    Each index gets the key (rank within its class in a random order) / (class size); taking
    the ``n`` smallest keys interleaves the classes in proportion to their sizes.
    """
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=gen)
    labels = y[perm]
    key = torch.empty(len(y), dtype=torch.float64)
    for c in range(num_classes):
        where = (labels == c).nonzero(as_tuple=True)[0]
        if len(where):
            key[where] = (torch.arange(len(where), dtype=torch.float64) + 0.5) / len(where)
    order = torch.sort(key, stable=True).indices[:n]
    return torch.sort(perm[order]).values


def _holdout_split(
    y: torch.Tensor, num_classes: int, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, hold out ``round(n * val_fraction)`` images (at least one while two are left)."""
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in range(num_classes):
        idx = (y == c).nonzero(as_tuple=True)[0]
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = round(len(idx) * val_fraction)
        if val_fraction > 0 and len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST (idx files)


def _fashion_files(directory: Path) -> dict[str, Path]:
    """The four files in ``directory``, gzipped or not (gzip preferred: that is how it ships)."""
    out = {}
    for key, stem in FASHION_MNIST_FILES.items():
        gz = directory / f"{stem}.gz"
        out[key] = gz if gz.is_file() else directory / stem
    return out


def _fashion_candidates(data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        found += [("--data-dir", d), ("--data-dir", d / "fashion-mnist")]
    env = os.environ.get("NASCONV_DATA")
    if env:
        d = Path(env).expanduser()
        found += [("NASCONV_DATA", d), ("NASCONV_DATA", d / "fashion-mnist")]
    found.append(("dataset-fashion-mnist", SYSTEM_FASHION_MNIST_DIR))
    found.append(("cache", FASHION_MNIST_CACHE_DIR.expanduser()))
    return found


def _find_fashion_mnist(data_dir: str | os.PathLike[str] | None) -> Path:
    for origin, given in (("--data-dir", data_dir), ("NASCONV_DATA", os.environ.get("NASCONV_DATA"))):
        if given and not Path(given).expanduser().is_dir():
            # A mistyped folder would otherwise fall through to another copy without a word.
            raise DataError(f"{origin} {Path(given).expanduser()} is not a directory")
    looked = []
    for origin, directory in _fashion_candidates(data_dir):
        files = _fashion_files(directory)
        present = [p for p in files.values() if p.is_file()]
        if len(present) == len(files):
            return directory
        if present and origin != "cache":
            # Half a copy is a mistake worth reporting rather than silently skipping.
            missing = ", ".join(p.name for p in files.values() if not p.is_file())
            raise DataError(f"Fashion-MNIST in {directory} ({origin}) is incomplete: missing {missing}")
        looked.append(str(directory))
    cache = FASHION_MNIST_CACHE_DIR.expanduser()
    try:
        _download_fashion_mnist(cache)
    except DataError as exc:
        raise DataError(
            f"Fashion-MNIST not found (looked in {', '.join(looked)}) and download failed ({exc}); "
            f"pass --data-dir DIR or set NASCONV_DATA=DIR to a folder with the four idx files, "
            f"or run `apt-get install dataset-fashion-mnist`, or download them from "
            f"{FASHION_MNIST_MIRRORS[0]} into {cache}"
        ) from None
    return cache


def _download_fashion_mnist(directory: Path) -> None:
    """Fetch the missing gzipped idx files into ``directory``, trying each mirror in turn."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {directory}: {exc.strerror}") from None
    for stem in FASHION_MNIST_FILES.values():
        dest = directory / f"{stem}.gz"
        if dest.is_file() or (directory / stem).is_file():
            continue
        errors = []
        for mirror in FASHION_MNIST_MIRRORS:
            try:
                _download_file(mirror + dest.name, dest)
                break
            except OSError as exc:  # URLError, timeouts and disk errors are all OSErrors
                errors.append(f"{mirror}: {getattr(exc, 'reason', exc)}")
        else:
            raise DataError("; ".join(errors))


def _download_file(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` atomically, so an interrupted download leaves no half file."""
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    # Trust the content, not the name: an un-gzipped file might still be called .gz.
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is a corrupt or truncated gzip file: {exc}") from None
    return raw


def read_idx(path: str | os.PathLike[str], ndim: int) -> np.ndarray:
    """Parse an idx file of unsigned bytes with ``ndim`` dimensions (gzipped or not)."""
    path = Path(path)
    raw = _read_maybe_gzip(path)
    # Magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DataError(f"{path} is not an idx file of {ndim}-d unsigned bytes "
                        f"(magic {raw[:4].hex() or 'missing'}, expected 000008{ndim:02x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: header cut short")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path} is {'truncated' if len(raw) < expected else 'too long'}: "
                        f"{len(raw)} bytes for shape {dims}, expected {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_fashion_mnist(directory: Path) -> Dataset:
    files = _fashion_files(directory)
    split = {}
    for which in ("train", "val"):
        x = read_idx(files[f"{which}_x"], 3)
        y = read_idx(files[f"{which}_y"], 1)
        if len(x) != len(y):
            raise DataError(f"{files[f'{which}_x']} has {len(x)} images but "
                            f"{files[f'{which}_y']} has {len(y)} labels")
        if len(y) and int(y.max()) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"{files[f'{which}_y']} has label {int(y.max())}, "
                            f"expected < {len(FASHION_MNIST_CLASSES)}")
        split[which] = (torch.from_numpy(x.copy()).unsqueeze(1),
                        torch.from_numpy(y.astype(np.int64)))
    return Dataset(
        name="fashion-mnist",
        train_x=split["train"][0], train_y=split["train"][1],
        val_x=split["val"][0], val_y=split["val"][1],
        num_classes=len(FASHION_MNIST_CLASSES),
        classes=FASHION_MNIST_CLASSES,
        source=str(directory),
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)


_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_FILES = (*_CIFAR_TRAIN, "test_batch", "batches.meta")


def _cifar_dir(arg: str) -> Path:
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


def _load_cifar10(directory: Path) -> Dataset:
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


# ---------------------------------------------------------------------------------------------
# Image folders


def _class_dirs(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, sorted, for each sub-folder of ``root``."""
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[d.name] = sorted(p for p in d.iterdir()
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                             and not p.name.startswith("."))
    return out


def _scan_imagefolder(root: Path) -> dict[str, dict[str, list[Path]]]:
    """``{"train": {class: files}, "val": ...}``; only ``"all"`` when there are no splits."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    val_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        splits = {"train": _class_dirs(root / "train"), "val": _class_dirs(val_dir)}
        unknown = sorted(set(splits["val"]) - set(splits["train"]))
        if unknown:
            raise DataError(f"{val_dir} has classes not in {root / 'train'}: {', '.join(unknown)}")
    else:
        splits = {"all": _class_dirs(root)}
    main = splits.get("train", splits.get("all", {}))
    if len(main) < 2:
        raise DataError(f"image folder {root} needs at least 2 class sub-folders, found {len(main)}"
                        + (f" ({', '.join(main)})" if main else ""))
    for name, files in main.items():
        if not files:
            raise DataError(f"class folder {name!r} in {root} has no PNG or JPEG images")
    return splits


def _load_imagefolder(
    root: Path,
    splits: dict[str, dict[str, list[Path]]],
    size: tuple[int, int] | None,
    val_fraction: float,
    seed: int,
) -> Dataset:
    classes = tuple(splits["train" if "train" in splits else "all"])
    items = [(p, i, split) for split, by_class in splits.items()
             for i, name in enumerate(classes) for p in by_class.get(name, [])]

    # First pass reads headers only, to choose the channels and size before decoding anything.
    modes, sizes = [], Counter()
    for path, _, _ in items:
        try:
            with Image.open(path) as im:
                modes.append(im.mode)
                sizes[(im.height, im.width)] += 1
        except Exception as exc:  # Pillow raises many types for bad files
            raise DataError(f"cannot read image {path}: {exc}") from None
    grey = all(m in _GREY_MODES for m in modes)
    mode = "L" if grey else "RGB"
    # Ties go to the size seen first in sorted file order, so the choice is deterministic.
    target = size or sizes.most_common(1)[0][0]

    xs = {split: [] for split in splits}
    ys = {split: [] for split in splits}
    for path, label, split in items:
        try:
            with Image.open(path) as im:
                im = _to_mode(im, mode)
                if (im.height, im.width) != target:
                    im = im.resize((target[1], target[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except Exception as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        xs[split].append(arr[None] if grey else arr.transpose(2, 0, 1))
        ys[split].append(label)

    def stack(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        c = 1 if grey else 3
        if not xs[split]:
            return torch.empty((0, c, *target), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
        return torch.from_numpy(np.stack(xs[split])), torch.tensor(ys[split], dtype=torch.int64)

    if "all" in splits:
        x, y = stack("all")
        tr, va = _holdout_split(y, len(classes), val_fraction, seed)
        train_x, train_y, val_x, val_y = x[tr], y[tr], x[va], y[va]
        how = f"held out {val_fraction:g} per class, seed {seed}"
    else:
        (train_x, train_y), (val_x, val_y) = stack("train"), stack("val")
        how = "train/val folders"
    return Dataset(
        name=f"imagefolder:{root.name}",
        train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
        num_classes=len(classes), classes=classes,
        source=f"{root.resolve()} ({how})",
    )


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    if im.mode == mode:
        return im
    if mode == "L" and im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float grey would saturate in convert("L"): rescale to 0..255 first.
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if mode == "RGB" and (im.mode in ("RGBA", "LA", "PA")
                          or (im.mode == "P" and "transparency" in im.info)):
        # Composite onto white: transparent pixels would otherwise show whatever colour they hold.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert(mode)
    return im.convert(mode)


# ---------------------------------------------------------------------------------------------
# Synthetic


def _make_synthetic(n: int, val_fraction: float, seed: int) -> Dataset:
    """Ten classes of 3x32x32 noise, each with its own fixed low-frequency pattern.

    The pattern is strong enough that a small CNN learns it in a few hundred steps, weak enough
    that a broken training loop stays near chance: a smoke test can tell the two apart.
    """
    num_classes = 10
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, 3, 4, 4, generator=gen)
    patterns = F.interpolate(patterns, size=(32, 32), mode="bilinear", align_corners=False)
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=gen)]
    noise = torch.randn(n, 3, 32, 32, generator=gen)
    x = (128.0 + 40.0 * patterns[y] + 40.0 * noise).round().clamp(0, 255).to(torch.uint8)
    tr, va = _holdout_split(y, num_classes, val_fraction, seed)
    return Dataset(
        name=f"synthetic:{n}",
        train_x=x[tr], train_y=y[tr], val_x=x[va], val_y=y[va],
        num_classes=num_classes,
        classes=tuple(f"class{i}" for i in range(num_classes)),
        source=f"synthetic: random images with a class signal, seed {seed} (smoke tests only, not real data)",
    )
