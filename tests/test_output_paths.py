"""What nasconv writes at a path the user named (:mod:`nasconv.outputs`): every writing command
against every kind of file that may already be there (all made in a temporary folder: nothing
here touches ``/dev``), study names that are not file names, temporary files of killed writers,
``dashboard --port 0`` and ``--artifacts`` that is not a folder."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import urllib.request
import warnings
from pathlib import Path

import optuna
import pytest

from nasconv.cli import main
from nasconv.outputs import (
    OutputError,
    check_folder_arg,
    check_output_file,
    path_kind,
    pid_alive,
    remove_stale_temps,
    stale_temp_pid,
    temp_path,
    write_output_file,
)
from nasconv.paths import file_stem

#: a quick real search: synflow scores on synthetic images, no training, no latency
SEARCH = ["search", "--space", "resnet20", "--budget", "30mflops", "--sampler", "random", "--inline", "--trials", "2",
          "--no-baseline", "--no-latency", "--objectives", "accuracy,macs", "--data", "synthetic", "--json",
          "--proxy", "synflow", "--resolution", "16"]
#: names that are not file names: path separators, climbing out, CJK, emoji
NAMES = ["../../x", "a/b", "数据 🙂"]
EXPORT_NAME = "resnet20-baseline"  # export --space resnet20 --arch baseline


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """One SQLite file holding a quickly searched study for each of :data:`NAMES`."""
    folder = tmp_path_factory.mktemp("studies")
    url = f"sqlite:///{folder / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in NAMES:
        assert main([*SEARCH, "--storage", url, "--study", name]) == 0
    return url


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == 1 and lines[0].startswith("nasconv: error: "), err
    return lines[0]


# --- every kind of file that can be in the way ------------------------------------------------------

KINDS = ["FIFO", "socket", "folder", "symlink", "regular file", "character device", "block device"]
#: what path_kind calls each
WORDS = {"FIFO": "a FIFO (named pipe)", "socket": "a socket", "folder": "a folder", "symlink": "a symbolic link",
         "regular file": "a regular file", "character device": "a character device", "block device": "a block device"}


def _make(kind: str, path: Path, sockets: list[socket.socket]) -> None:
    """Create a ``kind`` at ``path`` (a symbolic link points to a regular file ``path.target``)."""
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sockets.append(s)
        here = os.getcwd()
        os.chdir(path.parent)  # a socket's path is limited to ~107 bytes: bound by its relative name
        try:
            s.bind(path.name)
        finally:
            os.chdir(here)
    elif kind == "folder":
        path.mkdir()
    elif kind == "symlink":
        target = path.with_name(path.name + ".target")
        target.write_text("the link's target")
        path.symlink_to(target)
    elif kind == "regular file":
        path.write_text("an older file")
    else:
        mode = stat.S_IFCHR if kind == "character device" else stat.S_IFBLK
        try:  # (1, 3) is the null device, (0, 0) no device: nothing to harm even if opened
            os.mknod(path, mode | 0o600, os.makedev(1, 3) if mode == stat.S_IFCHR else os.makedev(0, 0))
        except PermissionError:
            pytest.skip(f"creating a {kind} node needs root (CAP_MKNOD); the FIFO, socket and folder cases "
                        "check the same rule")
    assert path_kind(path) == WORDS[kind]


def _writer(name: str, tmp_path: Path, url: str) -> tuple[list[str], Path]:
    """The command line of a writing command and the path it writes."""
    if name == "report --out":
        target = tmp_path / "r.html"
        return ["report", "--study", NAMES[2], "--storage", url, "--out", str(target), "--no-attach"], target
    if name == "pareto --plot":
        target = tmp_path / "p.png"
        return ["pareto", "--study", NAMES[2], "--storage", url, "--plot", str(target)], target
    out = tmp_path / "o"
    argv = ["export", "--space", "resnet20", "--arch", "baseline", "--out", str(out)]
    if name == "export --out (its folder)":
        return argv, out
    out.mkdir()
    return argv, out / f"{EXPORT_NAME}.py"


WRITERS = ["report --out", "pareto --plot", "export --out (a file in it)", "export --out (its folder)"]


# (export --out names a folder: a folder there is what it expects, not a case of this rule)
CASES = [(w, k) for w in WRITERS for k in KINDS if not (w == "export --out (its folder)" and k == "folder")]


@pytest.mark.parametrize("force", [False, True], ids=["", "--force"])
@pytest.mark.parametrize("writer, kind", CASES)
def test_only_regular_files_are_replaced_and_only_with_force(writer, kind, force, studies, tmp_path, capsys):
    argv, target = _writer(writer, tmp_path, studies)
    sockets: list[socket.socket] = []
    try:
        _make(kind, target, sockets)
        before = os.lstat(target)
        capsys.readouterr()
        code = main(argv + (["--force"] if force else []))
        out, err = capsys.readouterr()
    finally:
        for s in sockets:
            s.close()
    replaceable = kind in ("regular file", "symlink") and writer != "export --out (its folder)"
    if replaceable and force:
        assert code == 0, err
        assert path_kind(target) == "a regular file" and target.stat().st_size > 100  # the new file, whole
        if kind == "symlink":  # the link itself was replaced; what it pointed to is as it was
            assert target.with_name(target.name + ".target").read_text() == "the link's target"
        return
    line = _one_line(err)
    assert code == 1
    after = os.lstat(target)
    assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode), before.st_ino), line
    if writer == "export --out (its folder)":
        assert "not a folder" in line
    elif kind == "regular file":
        assert "exists; pass --force to overwrite it" in line
    elif kind == "symlink":
        assert "is a symbolic link to" in line and "pass --force to replace the link itself" in line
    else:
        assert f"it is {WORDS[kind]}, not a regular file" in line and "even with --force" in line
    # nothing else was left behind (no temporary file, no half-written export)
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


def test_export_into_a_symbolic_link_to_a_folder(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert main(["export", "--space", "resnet20", "--arch", "baseline", "--out", str(tmp_path / "link")]) == 0
    assert (real / f"{EXPORT_NAME}.py").is_file() and (tmp_path / "link").is_symlink()
    before = sorted(p.name for p in real.iterdir())
    assert main(["export", "--space", "resnet20", "--arch", "baseline", "--out", str(tmp_path / "link"),
                 "--force"]) == 0  # into the folder the link names: files replaced there, nothing left over
    assert sorted(p.name for p in real.iterdir()) == before and (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    capsys.readouterr()
    assert main(["export", "--space", "resnet20", "--arch", "baseline", "--out", str(tmp_path / "dangling")]) == 1
    assert "it is a symbolic link to nothing, not a folder" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "missing").exists()


# --- the library's rule ------------------------------------------------------------------------------


def test_check_and_write_output_file(tmp_path):
    path = tmp_path / "f.txt"
    assert write_output_file(path, b"one", force=False) == path and path.read_bytes() == b"one"
    with pytest.raises(OutputError, match="exists; pass --force"):
        write_output_file(path, b"two", force=False)
    write_output_file(path, b"two", force=True)
    assert path.read_bytes() == b"two"
    os.mkfifo(tmp_path / "fifo")
    for force in (False, True):
        with pytest.raises(OutputError, match=r"it is a FIFO \(named pipe\), not a regular file"):
            write_output_file(tmp_path / "fifo", b"x", force=force, what="the plot")
    assert path_kind(tmp_path / "fifo") == "a FIFO (named pipe)"
    with pytest.raises(OutputError, match="folder .*missing does not exist"):
        check_output_file(tmp_path / "missing" / "f", force=True)
    with pytest.raises(OutputError, match="folder .*f.txt is a regular file, not a folder"):
        check_output_file(path / "g", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "fifo"]  # no temporary file left


def test_check_folder_arg(tmp_path):
    check_folder_arg("--artifacts", None)
    check_folder_arg("--artifacts", tmp_path / "not-yet")  # made when needed
    check_folder_arg("--artifacts", tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="--artifacts .*f: it is a regular file, not a folder") as info:
        check_folder_arg("--artifacts", tmp_path / "f")
    assert info.value.exit_code == 2


# --- temporary files and folders of writers that were killed -------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def test_stale_temporary_names_are_recognised(tmp_path):
    own = temp_path(tmp_path / "o", "export")
    assert stale_temp_pid(own.name) == os.getpid()
    host = re.fullmatch(r"\.o\.export-\d+-([0-9a-f]{8})-[0-9a-f]{6}", own.name)[1]
    other_host = own.name.replace(f"-{host}-", "-00000000-" if host != "00000000" else "-11111111-")
    assert stale_temp_pid(other_host) is None  # another host's: its process cannot be looked up here
    assert stale_temp_pid(".o.export-123-abcdef") == 123  # the name before the host was in it
    assert stale_temp_pid(".r.html.123-abcdef.tmp") == 123
    assert stale_temp_pid(".o.export-123") is None and stale_temp_pid("o.export-123-abcdef") is None


def test_an_export_removes_what_killed_exports_left(tmp_path, capsys):
    dead, live = _dead_pid(), os.getppid()
    template = temp_path(tmp_path / "o", "export").name
    name_of = lambda pid: re.sub(r"export-\d+-", f"export-{pid}-", template)  # noqa: E731
    stale, kept = tmp_path / name_of(dead), tmp_path / name_of(live)
    legacy = tmp_path / f".old.export-{dead}-abcdef"  # from a nasconv before the host was in the name
    for folder in (stale, kept, legacy):
        folder.mkdir()
        (folder / f"{EXPORT_NAME}.py").write_text("# half an export")
    assert main(["export", "--space", "resnet20", "--arch", "baseline", "--out", str(tmp_path / "o")]) == 0, \
        capsys.readouterr().err
    assert not stale.exists() and not legacy.exists()
    assert (kept / f"{EXPORT_NAME}.py").is_file()  # a live process's: still being written
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["o", kept.name])


def test_a_file_write_removes_what_killed_writers_left(tmp_path):
    dead = _dead_pid()
    stale = Path(re.sub(r"write-\d+-", f"write-{dead}-", str(temp_path(tmp_path / "r.html", "write"))))
    stale.write_text("half a report")
    mine = temp_path(tmp_path / "r.html", "write")  # this process's: never taken for a dead one
    mine.write_text("being written")
    write_output_file(tmp_path / "r.html", b"<html>", force=False)
    assert not stale.exists() and mine.exists()
    assert remove_stale_temps(tmp_path) == []


# --- names that are not file names, and glyphs the font lacks -------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_report_of_any_study_name_attaches_without_glyph_warnings(name, studies, tmp_path, capsys):
    out = tmp_path / "r.html"
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["report", "--study", name, "--storage", studies, "--out", str(out),
                     "--artifacts", str(tmp_path / "artifacts")])
    err = capsys.readouterr().err
    assert code == 0, err
    glyphs = [str(w.message) for w in caught if "Glyph" in str(w.message)]
    assert not glyphs and "Glyph" not in err, glyphs or err
    assert err.splitlines()[0] == f"report written to {out}" and "attached to study" in err, err
    study = optuna.load_study(study_name=name, storage=studies)
    files = sorted(a.filename for a in optuna.artifacts.get_all_artifact_meta(study))
    assert f"front-{file_stem(name)}.png" in files and "r.html" in files
    assert f"Which convolution where: {html.escape(name)}</h1>" in out.read_text()
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


# --- dashboard ----------------------------------------------------------------------------------------


def test_dashboard_artifacts_must_be_a_folder(studies, tmp_path, capsys):
    pytest.importorskip("optuna_dashboard")
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    for what, word in (("file", "a regular file"), ("fifo", "a FIFO (named pipe)")):
        code = main(["dashboard", "--storage", studies, "--port", "0", "--artifacts", str(tmp_path / what)])
        line = _one_line(capsys.readouterr().err)
        assert code == 2 and f"it is {word}, not a folder" in line


def test_dashboard_port_0_prints_the_port_it_serves_on(studies, tmp_path):
    pytest.importorskip("optuna_dashboard")
    proc = subprocess.Popen([sys.executable, "-m", "nasconv.cli", "dashboard", "--storage", studies, "--port", "0",
                             "--study", NAMES[2]], stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        for ln in proc.stderr:
            lines.append(ln)
            if ln.startswith("optuna-dashboard on"):
                started.set()
        started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(120), "no banner"
        banner = next((ln for ln in lines if ln.startswith("optuna-dashboard on")), None)
        assert banner, "".join(lines)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/(\S*) for", banner)
        assert m and int(m[1]) != 0, banner
        url = f"http://127.0.0.1:{m[1]}/{m[2]}"
        with urllib.request.urlopen(url, timeout=60) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{m[1]}/api/studies", timeout=60) as api:
            assert sorted(s["study_name"] for s in json.load(api)["study_summaries"]) == sorted(NAMES)
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(timeout=30)
    # stopped by SIGTERM right after serving requests (a signal raised inside a request would be
    # answered as that request's error and the server would go on)
    assert code == 128 + signal.SIGTERM and lines[-1].startswith("nasconv: interrupted by SIGTERM"), lines
