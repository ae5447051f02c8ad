"""Files on disk: a full disk (a 2 MiB tmpfs) under the database, the kept weights, an export and a
plot; a read-only and a corrupted database; study names that become file names; kept weights of a
candidate served from the evaluation cache.

Each failure must end in one line on stderr (no traceback) with exit code 1 (2 for usage), and
leave what was there as it was; the same command must work once space is freed. The tmpfs needs
root (CI runs as root); elsewhere those tests are skipped, saying why.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from nasconv.build import build_model
from nasconv.checkpoint import weights_payload
from nasconv.cli import main
from nasconv.paths import file_stem, safe_name
from nasconv.spaces import load_space
from nasconv.storage import NasconvTables
from nasconv.storage.weights import adopt_weights, load_weights, save_weights, weights_path

SEARCH = ["search", "--space", "resnet20", "--budget", "30mflops", "--sampler", "random", "--inline",
          "--no-baseline", "--no-latency", "--objectives", "accuracy,macs", "--data", "synthetic", "--json"]
QUICK = ["--proxy", "synflow", "--resolution", "16"]
TRAIN = ["--proxy", "train", "--full-proxy", "--keep-weights", "--train-images", "32", "--epochs", "1",
         "--batch-size", "32", "--resolution", "16"]
LONG_NAME = "long-" + "n" * 295  # 300 characters: searched, then exported


# --- helpers ----------------------------------------------------------------------------------


def _mount(path: Path, size: str = "2m") -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that can be filled) needs root; CI runs as root")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs at {path}: {r.stderr.strip() or r.returncode}")


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB file system, unmounted afterwards."""
    fs = tmp_path / "fs"
    _mount(fs)
    yield fs
    subprocess.run(["umount", "-l", str(fs)], capture_output=True)


def _fill(fs: Path) -> Path:
    """Fill ``fs`` to the last byte; returns the filler file (delete it to free the space)."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.statvfs(fs).f_bavail == 0
    return filler


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("nasconv: warning:")]
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert len(lines) == 1 and lines[0].startswith("nasconv: error: "), err
    return lines[0]


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """As its own process: a regression to an abort (exit 134) must not take the test run with it."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("NASCONV_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "nasconv.cli", *argv], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=300)


def _trials(url: str, study: str) -> list[tuple]:
    st = optuna.load_study(study_name=study, storage=url)
    return [(t.number, t.state.name, tuple(t.values or ()), t.user_attrs.get("arch_hash")) for t in st.trials]


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def long_study(tmp_path_factory):
    """A study with a 300-character name, searched once (2 evaluations)."""
    folder = tmp_path_factory.mktemp("long")
    url = f"sqlite:///{folder / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert main([*SEARCH, *QUICK, "--trials", "2", "--storage", url, "--study", LONG_NAME]) == 0
    return {"folder": folder, "url": url, "db": folder / "s.db"}


# --- a full disk ------------------------------------------------------------------------------


def test_search_on_a_full_disk_says_so_keeps_what_was_committed_and_resumes(small_fs, tmp_path, capsys):
    url = f"sqlite:///{small_fs / 's.db'}"
    filler = _fill(small_fs)
    code, _, err = _cli([*SEARCH, *QUICK, "--trials", "2", "--storage", url, "--study", "s"], capsys)
    assert code == 1 and "no space left on device at" in _one_line(err) and str(small_fs) in err
    filler.unlink()

    assert _cli([*SEARCH, *QUICK, "--trials", "2", "--storage", url, "--study", "s"], capsys)[0] == 0
    before = _trials(url, "s")
    filler = _fill(small_fs)
    code, _, err = _cli([*SEARCH, *QUICK, "--trials", "5", "--storage", url, "--study", "s"], capsys)
    assert code == 1 and "no space left on device at" in _one_line(err) and "s.db" in err
    filler.unlink()
    after = _trials(url, "s")
    assert after[:len(before)] == before  # nothing committed was lost
    assert all(state in ("RUNNING", "FAIL") for _, state, _, _ in after[len(before):])

    code, out, err = _cli([*SEARCH, *QUICK, "--trials", "5", "--storage", url, "--study", "s"], capsys)
    assert code == 0, err
    assert sum(1 for t in _trials(url, "s") if t[1] == "COMPLETE") >= 5
    assert _trials(url, "s")[:len(before)] == before


def test_full_weights_folder_keeps_the_evaluation_and_no_partial_file(small_fs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NASCONV_WEIGHTS_DIR", str(small_fs / "weights"))
    (small_fs / "weights").mkdir()
    url = f"sqlite:///{tmp_path / 's.db'}"
    filler = _fill(small_fs)
    code, _, err = _cli([*SEARCH, *TRAIN, "--trials", "1", "--storage", url, "--study", "w"], capsys)
    line = _one_line(err)
    assert code == 1 and "cannot keep the weights" in line and "no space left on device at" in line
    assert not [p for p in (small_fs / "weights").rglob("*") if p.is_file()]  # no partial .tmp
    tables = NasconvTables(url)
    try:
        assert tables.cache_size() == 1  # the finished evaluation is kept
    finally:
        tables.dispose()
    filler.unlink()
    code, _, err = _cli([*SEARCH, *TRAIN, "--trials", "1", "--storage", url, "--study", "w"], capsys)
    assert code == 0, err  # resumes; its one candidate comes from the cache, and says it kept no weights
    assert "served from the evaluation cache" in err and "none are kept" in err


def test_export_torchscript_onto_a_full_disk(small_fs, tmp_path):
    out = small_fs / "out"
    argv = ["export", "--space", "resnet20", "--arch", "baseline", "--torchscript", "--out", str(out)]
    filler = _fill(small_fs)
    r = _run(argv, tmp_path)
    assert r.returncode == 1, r.stderr
    assert "no space left on device at" in _one_line(r.stderr)
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]  # no partial or temporary folder
    filler.unlink()
    r = _run(argv, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (out / "resnet20-baseline.torchscript.pt").is_file()


def test_plot_onto_a_full_disk_leaves_no_partial_file(small_fs, long_study, capsys):
    plot = small_fs / "front.png"
    filler = _fill(small_fs)
    code, _, err = _cli(["pareto", "--study", LONG_NAME, "--storage", long_study["url"], "--plot", str(plot)],
                        capsys)
    assert code == 1 and "no space left on device at" in _one_line(err)
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]
    filler.unlink()
    assert _cli(["pareto", "--study", LONG_NAME, "--storage", long_study["url"], "--plot", str(plot)],
                capsys)[0] == 0
    assert plot.stat().st_size > 0


# --- read-only and corrupted databases --------------------------------------------------------


def test_read_only_media_can_be_read_and_refuse_a_search(long_study, tmp_path, capsys):
    media = tmp_path / "ro"
    _mount(media, "8m")
    try:
        # as copied: the database with its -wal and -shm; and one checkpointed copy, no -wal, no -shm
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{long_study['db']}{suffix}").exists():
                shutil.copy(f"{long_study['db']}{suffix}", media / f"s.db{suffix}")
        src, dst = sqlite3.connect(long_study["db"]), sqlite3.connect(media / "alone.db")
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")
        src.close()
        dst.close()
        files = _files(media)
        subprocess.run(["mount", "-o", "remount,ro", str(media)], check=True)
        for name in ("s.db", "alone.db"):
            code, out, err = _cli(["pareto", "--study", LONG_NAME, "--storage", f"sqlite:///{media / name}"],
                                  capsys)
            assert code == 0 and "2 evaluated" in out, err
        url = f"sqlite:///{media / 's.db'}"
        code, out, err = _cli(["export", "--study", LONG_NAME, "--storage", url, "--pareto",
                               "--out", str(tmp_path / "o")], capsys)
        assert code == 0, err
        code, _, err = _cli([*SEARCH, *QUICK, "--trials", "3", "--storage", url, "--study", LONG_NAME], capsys)
        line = _one_line(err)
        assert code == 1 and "read-only file system" in line and str(media) in line
        assert _files(media) == files
    finally:
        subprocess.run(["umount", "-l", str(media)], capture_output=True)


def test_a_mistyped_database_is_reported_not_created(tmp_path, capsys):
    missing = tmp_path / "nope" / "s.db"
    for argv in (["pareto", "--study", "s"], ["export", "--study", "s", "--pareto", "--out", str(tmp_path / "o")],
                 ["dashboard"]):
        code, _, err = _cli([*argv, "--storage", f"sqlite:///{missing}"], capsys)
        line = _one_line(err)
        assert code == 1 and ("no database at" in line or "does not exist" in line), line
    assert not (tmp_path / "nope").exists() and not (tmp_path / "o").exists()


def test_a_corrupted_database_is_one_line(long_study, tmp_path, capsys):
    bad = tmp_path / "bad.db"
    data = bytearray(long_study["db"].read_bytes())
    data[100:16384] = os.urandom(16384 - 100)  # the 100-byte header stays valid
    bad.write_bytes(bytes(data))
    before = bad.read_bytes()
    url = f"sqlite:///{bad}"
    for argv in (["pareto", "--study", LONG_NAME], ["dashboard", "--port", "0"],
                 [*SEARCH, *QUICK, "--trials", "1", "--study", "s"]):
        code, _, err = _cli([*argv, "--storage", url], capsys)
        line = _one_line(err)
        assert code == 1 and "is not a valid nasconv/Optuna database" in line and str(bad) in line, line
    assert bad.read_bytes() == before


def test_dashboard_port_in_use_and_invalid_port(long_study, capsys):
    pytest.importorskip("optuna_dashboard")
    code, _, err = _cli(["dashboard", "--storage", long_study["url"], "--port", "99999"], capsys)
    assert code == 2 and "[0, 65535]" in _one_line(err)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = _cli(["dashboard", "--storage", long_study["url"], "--port", str(port)], capsys)
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("optuna-dashboard on")]
    assert code == 1 and len(lines) == 1 and "Address already in use" in lines[0] and "Traceback" not in err


# --- names that become paths ------------------------------------------------------------------


def test_long_study_name_searches_and_exports(long_study, tmp_path, capsys):
    code, out, err = _cli(["export", "--study", LONG_NAME, "--storage", long_study["url"], "--pareto",
                           "--torchscript", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    names = [p.name for p in (tmp_path / "o").iterdir()]
    assert names and all(len(n.encode()) < 255 and n.startswith(file_stem(LONG_NAME)) for n in names)
    assert len(file_stem(LONG_NAME)) == 60 + 1 + 8


def test_names_that_sanitise_alike_keep_apart(tmp_path, monkeypatch):
    monkeypatch.delenv("NASCONV_WEIGHTS_DIR", raising=False)
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert file_stem("p_q") == "p_q" and file_stem("p/q") != file_stem("p_q")
    assert file_stem("resnet50-all") == "resnet50-all"  # ordinary names keep their files
    arch = load_space("resnet20").baseline()
    a, b = build_model(arch), build_model(arch)
    with torch.no_grad():
        next(b.parameters()).add_(1.0)
    pa = save_weights(url, "p/q", arch.arch_hash, weights_payload(a))
    pb = save_weights(url, "p_q", arch.arch_hash, weights_payload(b))
    assert pa != pb and pa.parent.parent == pb.parent.parent == tmp_path / "weights"
    key = next(iter(weights_payload(a)["state_dict"]))
    for study, model in (("p/q", a), ("p_q", b)):
        kept = load_weights(url, study, arch.arch_hash)
        assert kept is not None and torch.equal(kept["state_dict"][key], weights_payload(model)["state_dict"][key])
    # A study kept under the older spelling is still found, unless the file there is another study's.
    legacy = tmp_path / "weights" / safe_name("x/y") / f"{arch.arch_hash}.pt"
    legacy.parent.mkdir(parents=True)
    torch.save(weights_payload(a), legacy)
    assert load_weights(url, "x/y", arch.arch_hash) is not None
    pa.unlink()  # p/q's own file gone: p_q's file in the older spelling's folder is not taken for it
    assert load_weights(url, "p/q", arch.arch_hash) is None


# --- kept weights of a cached candidate -------------------------------------------------------


def test_a_cached_candidate_finds_the_weights_of_its_evaluation(tmp_path, monkeypatch):
    monkeypatch.delenv("NASCONV_WEIGHTS_DIR", raising=False)
    url = f"sqlite:///{tmp_path / 's.db'}"
    arch = load_space("resnet20").baseline()
    save_weights(url, "A", arch.arch_hash, weights_payload(build_model(arch)), settings_key="k1")
    path = adopt_weights(url, "B", "k1", arch.arch_hash)
    assert path == weights_path(url, "B", arch.arch_hash) and path.is_file()
    kept = load_weights(url, "B", arch.arch_hash)
    assert kept is not None and kept["study"] == "A" and kept["settings_key"] == "k1"
    assert adopt_weights(url, "C", "other-settings", arch.arch_hash) is None
    assert not weights_path(url, "C", arch.arch_hash).exists()


def _settled(db: Path) -> str:
    """The database's whole content, after merging its write-ahead log into the file.

    The search that made the study may still hold a pooled connection in this process; whenever
    that connection is collected, SQLite merges the log into the file, which grows it without any
    write. Merging first leaves nothing for that to change."""
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return "\n".join(con.iterdump())
    finally:
        con.close()


def test_read_only_commands_create_nothing(long_study, capsys):
    content = _settled(long_study["db"])
    before = _files(long_study["folder"])
    assert _cli(["pareto", "--study", LONG_NAME, "--storage", long_study["url"]], capsys)[0] == 0
    after = _files(long_study["folder"])
    assert {k: v for k, v in after.items() if not k.endswith(("-wal", "-shm"))} == \
        {k: v for k, v in before.items() if not k.endswith(("-wal", "-shm"))}  # no file made or grown
    assert _settled(long_study["db"]) == content  # and not one row written
