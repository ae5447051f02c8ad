"""Finding CIFAR-10/100 on disk, or downloading it, for ``cifar10``, ``cifar100`` and ``cifarNN:DIR``.

``cifar10:DIR`` (or ``cifar100:DIR``): DIR holds the python version's files, or the folder the
official tarball extracts to (``cifar-10-batches-py/``, ``cifar-100-python/``), or the tarball
itself (or DIR is the tarball), or image folders ``train/<class>/*.png|jpg`` and ``test/`` (or
``val/``), there or in ``DIR/cifar10``.

``cifar10`` alone looks in ``--data-dir``, then ``$NASCONV_DATA``, then the cache root, each for
the extracted folder, the official tarball or a ``cifar10/`` image folder; failing those it
downloads the official tarball into the cache root (checked against its MD5) and extracts it. A
tarball is extracted into the cache root (``extracted/`` for one found elsewhere), never next to
the user's files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nasconv.data.cache import fingerprint
from nasconv.data.cifar import CIFAR10, CifarKind
from nasconv.data.download import extract_tarball, fetch, mirror_override
from nasconv.data.store import cache_root, ensure_dir, file_lock, key_digest
from nasconv.errors import DataError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
#: MD5 of each official tarball (tests put their own small tarballs' here)
CIFAR_MD5 = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
}


@dataclass(frozen=True)
class CifarSource:
    layout: Literal["pickles", "imagefolder", "tarball"]
    path: Path
    origin: str  # what led there: "cifar10:DIR", "--data-dir", "NASCONV_DATA", "cache", "download"


def _complete(directory: Path, kind: CifarKind) -> bool:
    return all((directory / n).is_file() for n in kind.files)


def _image_folders(directory: Path) -> bool:
    return (directory / "train").is_dir() and ((directory / "test").is_dir() or (directory / "val").is_dir())


def _look_in(base: Path, kind: CifarKind, origin: str, *, explicit: bool) -> CifarSource | None:
    """What ``base`` holds of ``kind``; half a copy of the pickle files is an error, not a miss."""
    if explicit and base.is_file() and base.name.endswith((".tar.gz", ".tgz", ".tar")):
        return CifarSource("tarball", base, origin)
    # Only a folder named for CIFAR, unless the user pointed at this one: "train" and "test"
    # files elsewhere may belong to anything.
    for d in (base / kind.folder, base) if explicit else (base / kind.folder,):
        present = [n for n in kind.files if (d / n).is_file()]
        if len(present) == len(kind.files):
            return CifarSource("pickles", d, origin)
        if present and origin != "cache":
            missing = ", ".join(n for n in kind.files if n not in present)
            raise DataError(f"{kind.title} in {d} ({origin}) is incomplete: missing {missing} "
                            f"(the python version's files)")
    if (base / kind.tarball).is_file():
        return CifarSource("tarball", base / kind.tarball, origin)
    for d in (base, base / kind.name) if explicit else (base / kind.name,):
        if _image_folders(d):
            return CifarSource("imagefolder", d, origin)
    return None


def _bases(data_dir: str | os.PathLike[str] | None, cache_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    out = []
    for origin, given in (("--data-dir", data_dir), ("NASCONV_DATA", os.environ.get("NASCONV_DATA"))):
        if given:
            d = Path(given).expanduser()
            if not d.is_dir():
                # A mistyped folder would otherwise fall through to another copy without a word.
                raise DataError(f"{origin} {d} is not a directory")
            out.append((origin, d))
    out.append(("cache", cache_root(cache_dir)))
    return out


def _how_to(kind: CifarKind) -> str:
    return (f"pass {kind.name}:DIR (a folder with {kind.folder}/, {kind.tarball}, or train/ and test/ "
            f"image folders) or --data-dir DIR, or set NASCONV_DATA=DIR")


def check_cifar(kind: CifarKind, arg: str, data_dir: str | os.PathLike[str] | None) -> None:
    """What :func:`locate_cifar` would refuse without downloading, extracting or reading data."""
    if arg:
        base = Path(arg).expanduser()
        if not base.exists():
            raise DataError(f"{kind.title} folder {base} does not exist")
        if _look_in(base, kind, f"{kind.name}:DIR", explicit=True) is None:
            raise DataError(f"{base} holds no {kind.title}: {_how_to(kind)}")
        return
    for origin, given in (("--data-dir", data_dir), ("NASCONV_DATA", os.environ.get("NASCONV_DATA"))):
        if given and not Path(given).expanduser().is_dir():
            raise DataError(f"{origin} {Path(given).expanduser()} is not a directory")


def locate_cifar(kind: CifarKind, arg: str, data_dir: str | os.PathLike[str] | None,
                 cache_dir: str | os.PathLike[str] | None, *, download: bool = True) -> CifarSource:
    """Where ``kind`` is, as pickle files or image folders (a tarball found is extracted first)."""
    root = cache_root(cache_dir)
    if arg:
        base = Path(arg).expanduser()
        if not base.exists():
            raise DataError(f"{kind.title} folder {base} does not exist")
        found = _look_in(base, kind, f"{kind.name}:DIR", explicit=True)
        if found is None:
            raise DataError(f"{base} holds no {kind.title}: expected the python version's files "
                            f"({', '.join(kind.files)}), {kind.folder}/, {kind.tarball}, or train/ and test/ "
                            f"image folders")
        return _unpacked(found, kind, root)
    looked = []
    for origin, base in _bases(data_dir, cache_dir):
        found = _look_in(base, kind, origin, explicit=False)
        if found is not None:
            return _unpacked(found, kind, root)
        looked.append(f"{base} ({origin})")
    if not download:
        raise DataError(f"{kind.title} not found in {', '.join(looked)}; {_how_to(kind)}")
    try:
        return CifarSource("pickles", download_cifar(kind, root), "download")
    except DataError as exc:
        raise DataError(f"{kind.title} not found in {', '.join(looked)} and download failed: {exc}; "
                        f"{_how_to(kind)}") from None


def _unpacked(found: CifarSource, kind: CifarKind, root: Path) -> CifarSource:
    if found.layout != "tarball":
        return found
    # The cache root's own tarball unpacks there; one found elsewhere to a folder named for its
    # size and mtime, so that a different tarball is never mistaken for it.
    into = root if found.path.parent == root else root / "extracted" / (
        f"{kind.name}-{key_digest(fingerprint([found.path]))[:16]}")
    target = into / kind.folder
    if not _complete(target, kind):
        ensure_dir(into)
        with file_lock(into / f".{kind.folder}.lock", f"to finish extracting {found.path}"):
            if not _complete(target, kind):
                extract_tarball(found.path, into, kind.folder)
        if not _complete(target, kind):
            missing = ", ".join(n for n in kind.files if not (target / n).is_file())
            raise DataError(f"{found.path} is not the official {kind.title} tarball: {kind.folder}/ lacks {missing}")
    return CifarSource("pickles", target, found.origin)


def download_cifar(kind: CifarKind, root: Path) -> Path:
    """Download and extract the official tarball into ``root``; returns the extracted folder."""
    ensure_dir(root)
    target = root / kind.folder
    with file_lock(root / f".{kind.tarball}.lock", f"to finish downloading {kind.tarball}"):
        if _complete(target, kind):  # another process got it meanwhile
            return target
        tarball = root / kind.tarball
        try:
            fetch((mirror_override() or CIFAR_URL) + kind.tarball, tarball, CIFAR_MD5.get(kind.tarball))
            extract_tarball(tarball, root, kind.folder)
        finally:
            tarball.unlink(missing_ok=True)  # extracted, or not worth keeping
    if not _complete(target, kind):
        raise DataError(f"the downloaded {kind.tarball} lacks some of {', '.join(kind.files)}")
    return target


def choose_default_data(data_dir: str | os.PathLike[str] | None = None,
                        cache_dir: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """``("cifar10", why)`` when CIFAR-10 is on disk (``data_dir``, ``$NASCONV_DATA``, the cache)
    or could be downloaded and verified just now; else ``("fashion-mnist", why not CIFAR-10)``."""
    try:
        found = locate_cifar(CIFAR10, "", data_dir, cache_dir)
    except DataError as exc:
        # the where-it-looked part; the advice on naming a folder is the caller's line to give
        return "fashion-mnist", str(exc).split("; pass ")[0]
    if found.origin == "download":
        return "cifar10", f"CIFAR-10 downloaded to {found.path}"
    return "cifar10", f"CIFAR-10 found in {found.path} ({found.origin})"
