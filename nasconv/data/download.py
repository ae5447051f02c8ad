"""Downloading a dataset file (atomically, checked against its MD5) and unpacking a tarball safely.

``$NASCONV_DATA_MIRROR``, a base URL, replaces the official hosts: a file's name is appended to
it (a local mirror, or a test's own server).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from nasconv.errors import DataError

MIRROR_ENV = "NASCONV_DATA_MIRROR"
# Short, because an offline machine should fail over to the error message, not hang.
DOWNLOAD_TIMEOUT_S = 10.0
_PROGRESS_MIN_BYTES = 8 << 20


def mirror_override() -> str | None:
    """``$NASCONV_DATA_MIRROR`` with a trailing ``/``, or ``None``."""
    base = os.environ.get(MIRROR_ENV, "").strip()
    if not base:
        return None
    return base if base.endswith("/") else base + "/"


def file_md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, dest: Path, md5: str | None, *, timeout: float | None = None) -> None:
    """Download ``url`` to ``dest`` through ``dest.part`` (renamed only when complete and, with
    ``md5``, matching it), so that nothing half-downloaded or corrupt is ever left at ``dest``.

    Raises :class:`DataError` saying what went wrong, without the "where else to look" advice
    that the caller adds.
    """
    tmp = dest.with_name(dest.name + ".part")
    h = hashlib.md5(usedforsecurity=False)
    try:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S if timeout is None else timeout) as response:
                total = int(response.headers.get("Content-Length") or 0)
                with open(tmp, "wb") as f, tqdm(total=total or None, desc=f"downloading {dest.name}", unit="B",
                                                unit_scale=True, file=sys.stderr, leave=False,
                                                disable=total < _PROGRESS_MIN_BYTES or not sys.stderr.isatty()) as bar:
                    while chunk := response.read(1 << 20):
                        f.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
                    f.flush()
                    os.fsync(f.fileno())
        except urllib.error.URLError as exc:  # before OSError: it is one, with the reason inside
            reason = exc.reason
            raise DataError(f"{url}: {getattr(reason, 'strerror', None) or reason}") from None
        except OSError as exc:  # timeouts, resets, a full disk
            raise DataError(f"{url}: {exc.strerror or str(exc) or type(exc).__name__}") from None
        if md5 is not None and h.hexdigest() != md5:
            raise DataError(f"{url}: the download's MD5 is {h.hexdigest()}, expected {md5} (deleted it)")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _member_problem(member: tarfile.TarInfo) -> str | None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or ".." in name.parts:
        return "a path outside the folder"
    if not (member.isfile() or member.isdir()):
        return "a link or special file"
    return None


def extract_tarball(archive: Path, into: Path, top: str) -> Path:
    """Extract ``top/`` from ``archive`` to ``into / top`` and return that path.

    Members with an absolute path, ``..``, links and special files are refused, not skipped:
    such a tarball is not the official one. Extraction goes to a temporary folder beside the
    target, renamed into place when complete.
    """
    dest = into / top
    tmp = into / f".{top}.extracting-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                problem = _member_problem(m)
                if problem:
                    raise DataError(f"refusing to extract {archive}: member {m.name!r} is {problem}")
            if not any(PurePosixPath(m.name).parts[:1] == (top,) for m in members):
                raise DataError(f"{archive} has no {top}/ folder")
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)  # noqa: S202 (members checked above)
        shutil.rmtree(dest, ignore_errors=True)  # an incomplete copy, or we would not be extracting
        os.replace(tmp / top, dest)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive} is not a readable tar.gz ({type(exc).__name__}: {exc}); delete it") from None
    except OSError as exc:
        raise DataError(f"cannot extract {archive} into {into}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
