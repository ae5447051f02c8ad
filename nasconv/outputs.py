"""Files and folders that nasconv writes at a path the user named (``report --out``, ``pareto
--plot``, ``export --out``...): what may be replaced, writing the whole file or none, and the
temporary files of writers that were killed.

The rule, the same for every command:

* a path that does not exist is written;
* a **regular file** is replaced only with ``--force`` (``force=True``);
* a **symbolic link** is never followed: without ``--force`` it is refused; with ``--force`` the
  link itself is replaced by a regular file and its target is left as it is (so a link can never
  redirect a write to a device, a FIFO or a file elsewhere);
* anything else -- a folder, a FIFO, a socket, a character or block device -- is never replaced,
  not even with ``--force``.

A refusal is one line (:class:`OutputError`, exit 1). A file is written under a temporary name in
its own folder and renamed into place, so a full disk or a kill leaves no half-written file; the
temporary names carry the writer's process id and host, and :func:`remove_stale_temps` removes
those of dead processes of this host (a ``kill -9`` skips every clean-up).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import stat
from pathlib import Path

from nasconv.errors import NasconvError, UsageError
from nasconv.paths import os_problem

__all__ = ["OutputError", "check_folder_arg", "check_output_file", "check_replaceable", "path_kind", "pid_alive",
           "remove_stale_temps", "stale_temp_pid", "temp_path", "write_output_file"]

_log = logging.getLogger(__name__)

#: st_mode file type -> what a message calls it
_KINDS = {stat.S_IFREG: "a regular file", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symbolic link",
          stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device"}


class OutputError(NasconvError):
    """An output path that nasconv will not write (see the module's rule). Exit code 1."""


def path_kind(path: str | os.PathLike[str]) -> str | None:
    """What is at ``path``, not following a symbolic link: ``"a regular file"``, ``"a FIFO (named
    pipe)"``...; None when nothing is there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a parent is a file: nothing can be there
        return None
    return _KINDS.get(stat.S_IFMT(mode), "a special file")


def _link_note(path: Path) -> str:
    try:
        return f" to {os.readlink(path)}"
    except OSError:
        return ""


def check_output_file(path: str | os.PathLike[str], *, force: bool, what: str = "the file") -> Path:
    """``path`` as a :class:`~pathlib.Path` if :func:`write_output_file` may write it, else an
    :class:`OutputError` in one line: its folder must exist; a regular file or a symbolic link
    there needs ``force``; anything else (folder, FIFO, socket, device) is refused whatever
    ``force`` says."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        kind = path_kind(folder)
        raise OutputError(f"cannot write {what} to {path}: folder {folder} "
                          + ("does not exist" if kind is None else f"is {kind}, not a folder"))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {what} to {path}: folder {folder} is not writable")
    return check_replaceable(path, force=force, what=what)


def check_replaceable(path: Path, *, force: bool, what: str = "the file") -> Path:
    """``path`` if nothing is there or what is there may be replaced (the module's rule), else
    an :class:`OutputError` in one line. Its folder is not checked (:func:`check_output_file`
    does)."""
    kind = path_kind(path)
    if kind is None:
        return path
    if kind == "a regular file":
        if not force:
            raise OutputError(f"{path} exists; pass --force to overwrite it")
        return path
    if kind == "a symbolic link":
        if not force:
            raise OutputError(f"{path} is a symbolic link{_link_note(path)}; pass --force to replace the link "
                              f"itself with {what} (its target is not written)")
        return path
    raise OutputError(f"cannot write {what} to {path}: it is {kind}, not a regular file (only regular files "
                      "are replaced, even with --force)")


def check_folder_arg(flag: str, folder: str | os.PathLike[str] | None) -> None:
    """A flag that names a folder (made when missing, e.g. ``--artifacts``): anything but a folder
    there (a regular file, a FIFO...) is a usage error."""
    if folder is None or str(folder) == "":
        return
    path = Path(folder).expanduser()
    kind = path_kind(path)
    if kind is not None and not path.is_dir():  # a symbolic link to a folder is that folder
        raise UsageError(f"{flag} {folder}: it is {kind}, not a folder")


def write_output_file(path: str | os.PathLike[str], data: bytes, *, force: bool, what: str = "the file") -> Path:
    """Write ``data`` to ``path`` under the rule of :func:`check_output_file`: the whole file or
    none (a temporary file beside it, renamed into place), so a full disk leaves no truncated file
    and no former file spoilt. Without ``force``, a file that appeared since the check is not
    replaced either (the temporary file is hard-linked into place, which fails if anything is
    there, where the file system can)."""
    path = check_output_file(path, force=force, what=what)
    remove_stale_temps(path.parent)
    tmp = temp_path(path, "write")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not force and _link_into_place(tmp, path):
            tmp.unlink()
            return path
        check_output_file(path, force=force, what=what)  # again, right before the rename
        os.replace(tmp, path)
    except FileExistsError:
        _remove(tmp)
        check_output_file(path, force=force, what=what)  # says what is there now
        raise OutputError(f"{path} exists; pass --force to overwrite it") from None
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"cannot write {what} to {path}: {os_problem(exc, path.parent)}") from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _link_into_place(tmp: Path, path: Path) -> bool:
    """Hard-link ``tmp`` at ``path`` (FileExistsError if anything is there); False where the file
    system has no hard links."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
            return False
        raise
    return True


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


# --- temporary names, and those of writers that were killed ----------------------------------------


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "surrogatepass")).hexdigest()[:8]


def temp_path(path: Path, kind: str) -> Path:
    """A hidden temporary name beside ``path``: ``.NAME.KIND-PID-HOST-XXXXXX`` (HOST: 8 hex digits
    of the host name's hash), which :func:`remove_stale_temps` recognises once PID is dead."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{_host_tag()}-{secrets.token_hex(3)}")


#: ``.NAME.export-PID-HOST-XXXXXX``, ``.NAME.write-PID-HOST-XXXXXX``; and the names of nasconv
#: versions before the host was in them (``.NAME.export-PID-XXXXXX``, ``.NAME.PID-XXXXXX.tmp``),
#: taken for this host's
_TEMP = re.compile(r"\..+\.(?:export|write)-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]{6}")
_LEGACY = re.compile(r"\..+\.export-(?P<pid>\d+)-[0-9a-f]{6}|\..+\.(?P<pid2>\d+)-[0-9a-f]{6}\.tmp")


def stale_temp_pid(name: str) -> int | None:
    """The process id in a temporary name of this host's (:func:`temp_path`), else None."""
    m = _TEMP.fullmatch(name)
    if m:
        return int(m["pid"]) if m["host"] == _host_tag() else None
    m = _LEGACY.fullmatch(name)
    if m:
        return int(m["pid"] or m["pid2"])
    return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (another user's process counts as alive)."""
    if pid <= 0:
        return True  # not a process id nasconv wrote: never taken for dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` that writers of this host left when
    they were killed (their process is gone); those of live processes and of other hosts stay.
    Returns what was removed; what cannot be removed is left, silently."""
    removed = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return removed
    for entry in entries:
        pid = stale_temp_pid(entry.name)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        p = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            continue
        _log.info("removed %s, left by process %d, which was killed", p, pid)
        removed.append(p)
    return removed
