"""Bad data input at the command line: a cache directory that cannot be written, a damaged cache
entry, a download that fails its checksum. Each is one line on stderr, exit 1, no traceback, and
leaves no file half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasconv import data
from nasconv.cli import main
from nasconv.data import cifar_sources, load_dataset
from tests.test_data_cifar import md5, serve_cifar10, server, write_cifar10  # noqa: F401 (server: a fixture)

EVAL = ["evaluate", "--space", "resnet20", "--proxy", "synflow", "--no-latency", "--json", "--resolution", "16"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def _one_line(capsys, code: int, returncode: int, phrase: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert returncode == code, err
    assert len(lines) == 1 and "Traceback" not in err and phrase in lines[0], err
    return lines[0]


@pytest.fixture(autouse=True)
def _fresh_process_cache():
    data.clear_cache()
    yield
    data.clear_cache()


def test_unwritable_cache_dir(tmp_path, capsys):
    src = write_cifar10(tmp_path / "c10", per_batch=20)
    (tmp_path / "file").write_text("x")
    before = _files(tmp_path)
    rc = main([*EVAL, "--data", f"cifar10:{src}", "--cache-dir", str(tmp_path / "file" / "cache")])
    _one_line(capsys, 1, rc, "cannot write to the nasconv data cache")
    assert _files(tmp_path) == before


def test_damaged_cache_entry(tmp_path, capsys):
    src = write_cifar10(tmp_path / "c10", per_batch=20)
    cache = tmp_path / "cache"
    load_dataset(f"cifar10:{src}", cache_dir=cache)
    images = next(cache.rglob("*.images.npy"))
    images.write_bytes(images.read_bytes()[:-100])  # truncated behind nasconv's back
    data.clear_cache()
    before = _files(tmp_path)
    rc = main([*EVAL, "--data", f"cifar10:{src}", "--cache-dir", str(cache)])
    line = _one_line(capsys, 1, rc, "damaged")
    assert images.stem.split(".")[0] in line
    assert _files(tmp_path) == before


def test_download_failing_its_checksum(tmp_path, server, monkeypatch, capsys):  # noqa: F811 (the fixture)
    serve_cifar10(server, tmp_path)
    monkeypatch.setenv("NASCONV_DATA_MIRROR", server.url)
    monkeypatch.setitem(cifar_sources.CIFAR_MD5, "cifar-10-python.tar.gz", "0" * 32)
    cache = tmp_path / "cache"
    rc = main([*EVAL, "--data", "cifar10", "--cache-dir", str(cache)])
    _one_line(capsys, 1, rc, "MD5")
    assert [p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")] == []
    assert server.requests == ["/cifar-10-python.tar.gz"]
