"""File names derived from user-given names, one-line file-system errors and atomic file writes
(standard library only)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
from pathlib import Path

#: a name longer than this (in bytes) is shortened: a file ``<name>-trial12.torchscript.pt`` must
#: stay within the 255 bytes most file systems allow for one name
MAX_PLAIN_NAME = 100
#: how much of a name a shortened or hashed spelling keeps, before ``-`` and :data:`HASH_CHARS` hex digits
SLUG_CHARS = 60
HASH_CHARS = 8

#: errno -> what a one-line error says happened
ERRNO_WORDS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.ENAMETOOLONG: "file name too long"}


def safe_name(text: str) -> str:
    """A file-name-safe spelling of a study or space name (not one-to-one: see :func:`file_stem`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip(".") or "model"


def file_stem(text: str) -> str:
    """The file or folder name of a study or space name: the name itself when it is file-name-safe
    and short (so ordinary names keep their files), else a readable slug of it plus a hash of
    the real name, so that two names never share files (``p/q`` and ``p_q``) and a long name
    stays within the file system's limits."""
    slug = safe_name(text)
    if slug == text and len(text.encode()) <= MAX_PLAIN_NAME:
        return text
    return f"{slug[:SLUG_CHARS]}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:HASH_CHARS]}"


def os_problem(exc: OSError, path: str | Path) -> str:
    """``no space left on device at PATH`` (the errno's words, else the OS's text)."""
    words = ERRNO_WORDS.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__
    return f"{words} at {path}"


def disk_full(path: str | Path) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing parent) has no room left."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    return st.f_bavail == 0 or (st.f_files > 0 and st.f_favail == 0)


def write_atomic(path: Path, data: bytes | bytearray | memoryview) -> None:
    """``data`` to ``path`` atomically (a temporary file beside it, synced and renamed into place):
    a kill or a full disk leaves the previous file or the new one, whole. Creates the folder;
    the temporary file is removed on any failure, whose exception is raised as it is."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
