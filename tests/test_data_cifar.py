"""CIFAR-10/100 by name or folder, tarballs, checked downloads (from a local server) and the
default-data chooser; Fashion-MNIST's checked downloads."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nasconv import data
from nasconv.data import KNOWN_SPECS, check_spec, choose_default_data, cifar_sources, fashion_mnist, load_dataset
from nasconv.data.cifar import CIFAR10, CIFAR100
from nasconv.errors import DataError, UnknownNameError

NAMES10 = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Own cache folder, no NASCONV_DATA, no mirror, and the official host replaced by a port
    where nothing listens: no test reaches the network."""
    data.clear_cache()
    monkeypatch.delenv("NASCONV_DATA", raising=False)
    monkeypatch.delenv("NASCONV_DATA_MIRROR", raising=False)
    monkeypatch.setenv("NASCONV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cifar_sources, "CIFAR_URL", f"http://127.0.0.1:{closed_port()}/")
    yield
    data.clear_cache()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free again once closed: a connection is refused at once


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> Path:
    """Pickles shaped like the official ones (Python 2 style: bytes keys)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate([*CIFAR10.train_files, CIFAR10.test_file]):
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [(i + j) % 10 for j in range(per_batch)], b"batch_label": name.encode()}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": NAMES10, b"num_vis": 3072}, f, protocol=2)
    return root


def write_cifar100(root: Path, n_train: int = 300, n_test: int = 100) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"fine_labels": [j % 100 for j in range(n)], b"coarse_labels": [j % 20 for j in range(n)],
                 b"filenames": [f"{j}.png".encode() for j in range(n)]}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}, f, protocol=2)
    return root


def make_tarball(path: Path, top: str, source: Path, extra: list[tarfile.TarInfo] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=top)
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        self.server.requests.append(self.path)


@pytest.fixture
def server(tmp_path):
    """A local HTTP server for tmp_path/www; ``.url`` is its base URL, ``.requests`` what was asked."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    httpd.requests = []
    httpd.root = root
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Names, folders, tarballs


def test_names_are_known():
    assert "cifar10[:DIR]" in KNOWN_SPECS and "cifar100[:DIR]" in KNOWN_SPECS
    with pytest.raises(UnknownNameError, match="cifar100"):
        load_dataset("cifar1000")


def test_cifar100_from_its_folder(tmp_path):
    write_cifar100(tmp_path / "c" / "cifar-100-python")
    for where in (tmp_path / "c", tmp_path / "c" / "cifar-100-python"):
        data.clear_cache()
        ds = load_dataset(f"cifar100:{where}")
        assert ds.name == "cifar100" and ds.num_classes == 100 and ds.classes[7] == "class7"
        assert ds.train_x.shape == (300, 3, 32, 32) and ds.val_x.shape == (100, 3, 32, 32)
        assert ds.train_y.tolist()[:3] == [0, 1, 2] and int(ds.val_y.max()) == 99
    with open(tmp_path / "c" / "cifar-100-python" / "train", "rb") as f:
        row = pickle.load(f, encoding="bytes")[b"data"][5]
    assert ds.train_x[5].flatten().tolist() == row.tolist()  # red plane, green plane, blue plane


def test_bare_name_looks_in_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "cache" / "cifar-10-batches-py", per_batch=2)
    assert len(load_dataset("cifar10").train_y) == 10
    write_cifar10(tmp_path / "env" / "cifar-10-batches-py", per_batch=3)
    monkeypatch.setenv("NASCONV_DATA", str(tmp_path / "env"))
    data.clear_cache()
    assert len(load_dataset("cifar10").train_y) == 15
    write_cifar10(tmp_path / "mine" / "cifar-10-batches-py", per_batch=4)
    ds = load_dataset("cifar10", data_dir=tmp_path / "mine")
    assert len(ds.train_y) == 20 and ds.source == str(tmp_path / "mine" / "cifar-10-batches-py")
    with pytest.raises(DataError, match="--data-dir .*nowhere is not a directory"):
        load_dataset("cifar10", data_dir=tmp_path / "nowhere")


def test_incomplete_copy_is_an_error_not_a_miss(tmp_path):
    write_cifar10(tmp_path / "d" / "cifar-10-batches-py")
    (tmp_path / "d" / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataError, match="incomplete: missing data_batch_4"):
        load_dataset("cifar10", data_dir=tmp_path / "d")


def test_tarball_in_data_dir_is_extracted_into_the_cache(tmp_path):
    src = write_cifar10(tmp_path / "src", per_batch=3)
    tarball = make_tarball(tmp_path / "d" / "cifar-10-python.tar.gz", "cifar-10-batches-py", src)
    before = sorted(p.name for p in (tmp_path / "d").iterdir())
    ds = load_dataset("cifar10", data_dir=tmp_path / "d")
    assert len(ds.train_y) == 15 and ds.classes[-1] == "truck"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == before and tarball.is_file()
    extracted = list((tmp_path / "cache" / "extracted").glob("cifar10-*/cifar-10-batches-py"))
    assert len(extracted) == 1 and ds.source == str(extracted[0])
    # cifar10:TARBALL works too, and a different tarball is never taken for this one.
    other = make_tarball(tmp_path / "e" / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                         write_cifar10(tmp_path / "src2", per_batch=5))
    data.clear_cache()
    assert len(load_dataset(f"cifar10:{other}").train_y) == 25


@pytest.mark.parametrize("bad", ["../escape", "/abs/path", "link"])
def test_unsafe_tarball_is_refused(tmp_path, bad):
    info = tarfile.TarInfo(bad)
    if bad == "link":
        info = tarfile.TarInfo("cifar-10-batches-py/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        info.size = 3
    make_tarball(tmp_path / "d" / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                 write_cifar10(tmp_path / "src"), extra=[info])
    with pytest.raises(DataError, match="refusing to extract") as err:
        load_dataset("cifar10", data_dir=tmp_path / "d")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "escape").exists() and not Path("/abs/path").exists()
    assert not list((tmp_path / "cache").rglob("data_batch_1"))


def test_image_folder_layout(tmp_path):
    for split, n in (("train", 2), ("test", 1)):
        for c, name in enumerate(n.decode() for n in NAMES10):
            for i in range(n):
                p = tmp_path / "jpeg" / "cifar10" / split / name / f"{i}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (32, 32), (c * 20, i, 0)).save(p)
    for spec in (f"cifar10:{tmp_path / 'jpeg' / 'cifar10'}", f"cifar10:{tmp_path / 'jpeg'}"):
        data.clear_cache()
        ds = load_dataset(spec)
        assert ds.name == "cifar10" and ds.classes[0] == "airplane"
        assert ds.train_x.shape == (20, 3, 32, 32) and ds.val_x.shape == (10, 3, 32, 32)
    data.clear_cache()
    assert load_dataset("cifar10", data_dir=tmp_path / "jpeg").train_x.shape == (20, 3, 32, 32)
    with pytest.raises(DataError, match="10 class folders; CIFAR-100 has 100"):
        load_dataset(f"cifar100:{tmp_path / 'jpeg' / 'cifar10'}")


def test_check_spec_reads_nothing_and_downloads_nothing(tmp_path, server, monkeypatch):
    monkeypatch.setenv("NASCONV_DATA_MIRROR", server.url)
    check_spec("cifar10")  # nothing local, and no download attempted either
    check_spec("cifar100", data_dir=tmp_path)
    assert server.requests == [] and not (tmp_path / "cache").exists()
    with pytest.raises(DataError, match="does not exist"):
        check_spec(f"cifar10:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no CIFAR-10"):
        check_spec(f"cifar10:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="--data-dir"):
        check_spec("cifar10", data_dir=tmp_path / "nowhere")
    write_cifar10(tmp_path / "ok" / "cifar-10-batches-py")
    check_spec(f"cifar10:{tmp_path / 'ok'}")
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------------------------------
# Downloads from a local server


def serve_cifar10(server, tmp_path, per_batch=3) -> Path:
    return make_tarball(server.root / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                        write_cifar10(tmp_path / "src", per_batch=per_batch))


def test_download_checked_extracted_and_used(tmp_path, server, monkeypatch):
    tarball = serve_cifar10(server, tmp_path)
    monkeypatch.setenv("NASCONV_DATA_MIRROR", server.url.rstrip("/"))  # the slash is added
    monkeypatch.setitem(cifar_sources.CIFAR_MD5, "cifar-10-python.tar.gz", md5(tarball))
    ds = load_dataset("cifar10")
    assert len(ds.train_y) == 15 and server.requests == ["/cifar-10-python.tar.gz"]
    cache = tmp_path / "cache"
    assert (cache / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert not (cache / "cifar-10-python.tar.gz").exists()  # extracted, then deleted
    assert not [p for p in cache.iterdir() if p.name.endswith(".part") or ".extracting" in p.name]
    data.clear_cache()
    load_dataset("cifar10")
    assert len(server.requests) == 1  # found in the cache the second time


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, server, monkeypatch):
    serve_cifar10(server, tmp_path)
    monkeypatch.setenv("NASCONV_DATA_MIRROR", server.url)
    monkeypatch.setitem(cifar_sources.CIFAR_MD5, "cifar-10-python.tar.gz", "0" * 32)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10")
    msg = str(info.value)
    assert "\n" not in msg and "MD5" in msg and "0" * 32 in msg and "cifar10:DIR" in msg
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_unreachable_download_is_one_line_naming_where_it_looked(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path / "d")
    msg = str(info.value)
    assert "\n" not in msg
    for part in ("CIFAR-10 not found", str(tmp_path / "d"), "(--data-dir)", str(tmp_path / "cache"),
                 "download failed", "cifar10:DIR", "--data-dir DIR"):
        assert part in msg, part
    with pytest.raises(DataError, match="cifar100:DIR"):
        load_dataset("cifar100")


def test_official_checksums_and_url():
    assert cifar_sources.CIFAR_MD5 == {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
                                       "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"}
    assert CIFAR100.tarball in cifar_sources.CIFAR_MD5
    assert fashion_mnist.FASHION_MNIST_MD5["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"


# ---------------------------------------------------------------------------------------------
# The default-data chooser


def test_choose_default_data(tmp_path, server, monkeypatch):
    name, why = choose_default_data(data_dir=None)
    assert name == "fashion-mnist" and "CIFAR-10 not found" in why and "download failed" in why
    write_cifar10(tmp_path / "d" / "cifar-10-batches-py")
    name, why = choose_default_data(data_dir=tmp_path / "d")
    assert name == "cifar10" and str(tmp_path / "d") in why and "--data-dir" in why
    # Downloadable (and verified) counts too; a bad checksum does not.
    tarball = serve_cifar10(server, tmp_path)
    monkeypatch.setenv("NASCONV_DATA_MIRROR", server.url)
    monkeypatch.setitem(cifar_sources.CIFAR_MD5, "cifar-10-python.tar.gz", "f" * 32)
    name, why = choose_default_data(cache_dir=tmp_path / "c1")
    assert name == "fashion-mnist" and "MD5" in why
    monkeypatch.setitem(cifar_sources.CIFAR_MD5, "cifar-10-python.tar.gz", md5(tarball))
    name, why = choose_default_data(cache_dir=tmp_path / "c2")
    assert name == "cifar10" and "downloaded" in why
    assert (tmp_path / "c2" / "cifar-10-batches-py" / "batches.meta").is_file()


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST downloads are checked too


def serve_fashion(server) -> dict[str, str]:
    sums = {}
    for stem, n in (("train", 6), ("t10k", 4)):
        images = bytes([0, 0, 8, 3]) + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28)) + bytes(n * 784)
        labels = bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + bytes(range(n))
        for name, raw in ((f"{stem}-images-idx3-ubyte.gz", images), (f"{stem}-labels-idx1-ubyte.gz", labels)):
            (server.root / name).write_bytes(gzip.compress(raw))
            sums[name] = md5(server.root / name)
    return sums


def test_fashion_download_is_checked(tmp_path, server, monkeypatch):
    sums = serve_fashion(server)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "not-installed")
    monkeypatch.setenv("NASCONV_DATA_MIRROR", server.url)
    with pytest.raises(DataError) as info:  # the official checksums: these files do not match
        load_dataset("fashion-mnist")
    assert "\n" not in str(info.value) and "MD5" in str(info.value) and server.url in str(info.value)
    target = tmp_path / "cache" / "fashion-mnist"
    assert not list(target.glob("*.gz")) and not list(target.glob("*.part"))
    for name, digest in sums.items():
        monkeypatch.setitem(fashion_mnist.FASHION_MNIST_MD5, name, digest)
    ds = load_dataset("fashion-mnist")
    assert len(ds.train_y) == 6 and ds.source == str(target)
    assert sorted(p.name for p in target.glob("*.gz")) == sorted(sums)
