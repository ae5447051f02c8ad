"""Fashion-MNIST: finding the idx files (``--data-dir``, ``NASCONV_DATA``, the Debian package, the
user cache), downloading them when missing, and parsing the idx format."""

from __future__ import annotations

import gzip
import os
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from nasconv.data.dataset import Dataset
from nasconv.errors import DataError

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


def fashion_files(directory: Path) -> dict[str, Path]:
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


def find_fashion_mnist(data_dir: str | os.PathLike[str] | None) -> Path:
    for origin, given in (("--data-dir", data_dir), ("NASCONV_DATA", os.environ.get("NASCONV_DATA"))):
        if given and not Path(given).expanduser().is_dir():
            # A mistyped folder would otherwise fall through to another copy without a word.
            raise DataError(f"{origin} {Path(given).expanduser()} is not a directory")
    looked = []
    for origin, directory in _fashion_candidates(data_dir):
        files = fashion_files(directory)
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


def load_fashion_mnist(directory: Path) -> Dataset:
    files = fashion_files(directory)
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
