"""``nasconv doctor`` and ``nasconv --version``: each check reports what is there, and what to do
where something is missing; a problem makes the exit status 1."""

from __future__ import annotations

import gzip
import json

import pytest

from nasconv import doctor
from nasconv._version import __version__
from nasconv.cli import main
from nasconv.data.fashion_mnist import FASHION_MNIST_FILES
from nasconv.latency import LatencyTable, current_setting, open_tables


def _by_name(checks):
    return {c.name: c for c in checks}


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"nasconv {__version__}"


def test_every_check_not_ok_says_what_to_do(tmp_path):
    checks = doctor.run_checks(storage=f"sqlite:///{tmp_path}/s.db", cache_dir=str(tmp_path / "cache"))
    names = [c.name for c in checks]
    for want in ("nasconv", "torch", "CUDA", "native bf16", "Ray", "storage", "latency tables", "data fashion-mnist",
                 "data cifar10", "data cifar100", "cache"):
        assert want in names
    assert all(c.todo for c in checks if c.status != "ok")
    by = _by_name(checks)
    assert by["storage"].status == "ok" and "made by the first search" in by["storage"].found
    assert by["latency tables"].status == "note" and "nasconv latency profile" in by["latency tables"].todo


def test_storage_that_does_not_answer_is_a_problem(capsys):
    from tests.conftest import free_port

    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    c = doctor.check_storage(url)
    assert c.status == "problem" and "cannot connect" in c.found and "--storage" in c.todo
    assert doctor.check_storage("not a url").status == "problem"
    code = main(["doctor", "--storage", url, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and _by_name(doctor.Check(**d) for d in out)["storage"].status == "problem"


def test_unwritable_sqlite_folder_is_a_problem(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        c = doctor.check_storage(f"sqlite:///{ro}/sub/s.db")
        import os

        assert c.status == ("ok" if os.access(ro, os.W_OK) else "problem")  # root writes anywhere
    finally:
        ro.chmod(0o700)


def test_datasets_found_where_they_are(tmp_path, monkeypatch):
    fm = tmp_path / "data" / "fashion-mnist"
    fm.mkdir(parents=True)
    for stem in FASHION_MNIST_FILES.values():
        with gzip.open(fm / f"{stem}.gz", "wb") as f:
            f.write(b"x")
    (tmp_path / "data" / "cifar-10-batches-py").mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"):
        (tmp_path / "data" / "cifar-10-batches-py" / name).write_bytes(b"x")
    monkeypatch.setenv("NASCONV_DATA", str(tmp_path / "data"))
    by = _by_name(doctor.check_datasets(None, str(tmp_path / "cache")))
    assert by["data fashion-mnist"].status == "ok" and str(fm) in by["data fashion-mnist"].found
    assert "NASCONV_DATA" in by["data fashion-mnist"].found
    assert by["data cifar10"].status == "ok" and "NASCONV_DATA" in by["data cifar10"].found
    assert by["data cifar100"].status == "note" and "--data-dir" in by["data cifar100"].todo


def test_cache_size(tmp_path):
    (tmp_path / "c" / "x").mkdir(parents=True)
    (tmp_path / "c" / "x" / "blob").write_bytes(b"\0" * 2_500_000)
    c = doctor.check_cache(str(tmp_path / "c"))
    assert c.status == "ok" and "2.5 MB" in c.found and str(tmp_path / "c") in c.found


def test_latency_tables_listed(tmp_path):
    url = f"sqlite:///{tmp_path}/lat.db"
    tables = open_tables(url)
    try:
        setting = current_setting("cpu", threads=1)
        LatencyTable(tables, url).put_calibration(setting, "tiny20", "abc", {"slope": 1.0, "intercept_ms": 0.0})
    finally:
        tables.dispose()
    c = doctor.check_latency_tables(url)
    assert c.status == "ok" and c.found.startswith("1: tiny20 on ") and "1 threads, batch 1" in c.found


def test_cli_one_screen(tmp_path, capsys):
    code = main(["doctor", "--storage", f"sqlite:///{tmp_path}/s.db", "--cache-dir", str(tmp_path / "c")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) <= 24 and out[-1].startswith("ready")
    assert any(line.split()[1:2] == ["torch"] for line in out)


@pytest.mark.slow
def test_postgres_reachable(postgres_url):
    c = doctor.check_storage(postgres_url)
    assert c.status == "ok" and "reachable" in c.found
    assert doctor.check_latency_tables(postgres_url).status == "note"
