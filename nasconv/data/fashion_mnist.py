"""Fashion-MNIST: finding the idx files (``--data-dir``, ``NASCONV_DATA``, the Debian package, the
cache root's ``fashion-mnist/``), downloading them when missing (each checked against its MD5),
parsing the idx format, and decoding them once into the data cache (:mod:`nasconv.data.store`)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from nasconv.data.cache import fingerprint
from nasconv.data.dataset import Dataset
from nasconv.data.download import DOWNLOAD_TIMEOUT_S, fetch, mirror_override
from nasconv.data.store import Built, ImageWriter, cache_root, file_lock, key_digest, stored_dataset
from nasconv.errors import DataError

# Where Debian's package ``dataset-fashion-mnist`` installs the idx files.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: where downloads go; ``None``: the cache root's ``fashion-mnist/`` (see :func:`cache_root`)
FASHION_MNIST_CACHE_DIR: Path | None = None
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
#: MD5 of each official gzipped file (Debian's package re-compresses them: only downloads are checked)
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def download_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    if FASHION_MNIST_CACHE_DIR is not None:
        return Path(FASHION_MNIST_CACHE_DIR).expanduser()
    return cache_root(cache_dir) / "fashion-mnist"


def fashion_files(directory: Path) -> dict[str, Path]:
    """The four files in ``directory``, gzipped or not (gzip preferred: that is how it ships)."""
    out = {}
    for key, stem in FASHION_MNIST_FILES.items():
        gz = directory / f"{stem}.gz"
        out[key] = gz if gz.is_file() else directory / stem
    return out


def _fashion_candidates(data_dir: str | os.PathLike[str] | None,
                        cache_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        found += [("--data-dir", d), ("--data-dir", d / "fashion-mnist")]
    env = os.environ.get("NASCONV_DATA")
    if env:
        d = Path(env).expanduser()
        found += [("NASCONV_DATA", d), ("NASCONV_DATA", d / "fashion-mnist")]
    found.append(("dataset-fashion-mnist", SYSTEM_FASHION_MNIST_DIR))
    found.append(("cache", download_dir(cache_dir)))
    return found


def find_fashion_mnist(data_dir: str | os.PathLike[str] | None,
                       cache_dir: str | os.PathLike[str] | None = None) -> Path:
    for origin, given in (("--data-dir", data_dir), ("NASCONV_DATA", os.environ.get("NASCONV_DATA"))):
        if given and not Path(given).expanduser().is_dir():
            # A mistyped folder would otherwise fall through to another copy without a word.
            raise DataError(f"{origin} {Path(given).expanduser()} is not a directory")
    looked = []
    for origin, directory in _fashion_candidates(data_dir, cache_dir):
        files = fashion_files(directory)
        present = [p for p in files.values() if p.is_file()]
        if len(present) == len(files):
            return directory
        if present and origin != "cache":
            # Half a copy is a mistake worth reporting rather than silently skipping.
            missing = ", ".join(p.name for p in files.values() if not p.is_file())
            raise DataError(f"Fashion-MNIST in {directory} ({origin}) is incomplete: missing {missing}")
        looked.append(str(directory))
    cache = download_dir(cache_dir)
    mirrors = _mirrors()
    try:
        _download_fashion_mnist(cache)
    except DataError as exc:
        raise DataError(
            f"Fashion-MNIST not found (looked in {', '.join(looked)}) and download failed ({exc}); "
            f"pass --data-dir DIR or set NASCONV_DATA=DIR to a folder with the four idx files, "
            f"or run `apt-get install dataset-fashion-mnist`, or download them from "
            f"{mirrors[0]} into {cache}"
        ) from None
    return cache


def _mirrors() -> tuple[str, ...]:
    override = mirror_override()
    return (override,) if override else FASHION_MNIST_MIRRORS


def _download_fashion_mnist(directory: Path) -> None:
    """Fetch the missing gzipped idx files into ``directory``, trying each mirror in turn."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {directory}: {exc.strerror}") from None
    mirrors = _mirrors()
    with file_lock(directory / ".download.lock", f"to finish downloading Fashion-MNIST into {directory}"):
        _download_missing(directory, mirrors)


def _download_missing(directory: Path, mirrors: tuple[str, ...]) -> None:
    for stem in FASHION_MNIST_FILES.values():
        dest = directory / f"{stem}.gz"
        if dest.is_file() or (directory / stem).is_file():
            continue
        errors = []
        for mirror in mirrors:
            try:
                _download_file(mirror + dest.name, dest)
                break
            except DataError as exc:  # says which URL
                errors.append(str(exc))
            except OSError as exc:
                errors.append(f"{mirror}: {getattr(exc, 'reason', exc)}")
        else:
            raise DataError("; ".join(errors))


def _download_file(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` atomically and check it against the official MD5."""
    fetch(url, dest, FASHION_MNIST_MD5.get(dest.name), timeout=DOWNLOAD_TIMEOUT_S)


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


def load_fashion_mnist(directory: Path, *, cache_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """The four idx files in ``directory``, through the data cache."""
    files = fashion_files(directory)
    key = {"files": key_digest(fingerprint(files.values()))}
    return stored_dataset("fashion-mnist", key, lambda writer: _decode(directory, files, writer), cache_dir=cache_dir)


def _decode(directory: Path, files: dict[str, Path], writer: ImageWriter) -> Built:
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
        split[which] = (x, y.astype(np.int64))
    (train_x, train_y), (val_x, val_y) = split["train"], split["val"]
    if train_x.shape[1:] != val_x.shape[1:]:
        raise DataError(f"{files['train_x']} holds {train_x.shape[1:]} images but {files['val_x']} "
                        f"holds {val_x.shape[1:]}")
    out = writer.images(len(train_x), len(val_x), (1, *train_x.shape[1:]))
    out[:len(train_x), 0] = train_x
    out[len(train_x):, 0] = val_x
    return Built(name="fashion-mnist", source=str(directory), classes=FASHION_MNIST_CLASSES,
                 train_y=train_y, val_y=val_y)
