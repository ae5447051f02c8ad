from __future__ import annotations

import gzip
import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasconv import data
from nasconv.data import Dataset, cifar_sources, fashion_mnist, load_dataset, prepare_batch, subset
from nasconv.errors import DataError, NasconvError, UnknownNameError, UsageError

# ---------------------------------------------------------------------------------------------
# Helpers that write small datasets in the real on-disk formats


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_fake_fashion(directory: Path, *, n_train: int = 20, n_val: int = 10, gz: bool = True,
                       fill: int = 7) -> Path:
    """A tiny but well-formed Fashion-MNIST: ``fill`` in every pixel marks which copy was read."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_val)):
        write_idx(directory / f"{stem}-images-idx3-ubyte", np.full((n, 28, 28), fill), gz=gz)
        write_idx(directory / f"{stem}-labels-idx1-ubyte", np.arange(n) % 10, gz=gz)
    return directory


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test sees another's cache entries, the user's NASCONV_DATA, or the network."""
    data.clear_cache()
    monkeypatch.delenv("NASCONV_DATA", raising=False)
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_CACHE_DIR", tmp_path / "home-cache")

    def no_network(url, dest):
        raise urllib.error.URLError("network blocked in tests")

    monkeypatch.setattr(fashion_mnist, "_download_file", no_network)
    # CIFAR downloads go to a port where nothing listens (refused at once).
    monkeypatch.delenv("NASCONV_DATA_MIRROR", raising=False)
    monkeypatch.setattr(cifar_sources, "CIFAR_URL", "http://127.0.0.1:9/")
    yield
    data.clear_cache()


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST


def test_real_fashion_mnist_loads():
    ds = load_dataset("fashion-mnist")
    assert ds.name == "fashion-mnist"
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.train_x.dtype == torch.uint8
    assert ds.val_x.shape == (10000, 1, 28, 28)
    assert ds.train_y.dtype == torch.int64 and ds.train_y.shape == (60000,)
    assert ds.num_classes == 10 and len(ds.classes) == 10 and ds.classes[9] == "Ankle boot"
    for y in (ds.train_y, ds.val_y):
        assert int(y.min()) == 0 and int(y.max()) == 9
        assert torch.equal(torch.bincount(y), torch.full((10,), len(y) // 10))
    # The published statistics of Fashion-MNIST's train split.
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert ds.std[0] == pytest.approx(0.3530, abs=1e-3)
    assert ds.channels == 1 and ds.image_size == (28, 28)
    assert load_dataset() is ds  # the process cache makes a second load free
    # The repr summarises rather than printing 47 million pixels.
    assert repr(ds).startswith("Dataset('fashion-mnist', train=60000, val=10000, 1x28x28")


def test_data_dir_wins_over_system_copy(tmp_path):
    write_fake_fashion(tmp_path / "mine")
    ds = load_dataset(data_dir=tmp_path / "mine")
    assert len(ds.train_y) == 20 and len(ds.val_y) == 10
    assert ds.source == str(tmp_path / "mine")
    # The fashion-mnist sub-folder of data_dir counts too.
    write_fake_fashion(tmp_path / "parent" / "fashion-mnist", n_train=30)
    assert len(load_dataset(data_dir=str(tmp_path / "parent")).train_y) == 30


def test_nasconv_data_env_and_plain_idx(tmp_path, monkeypatch):
    write_fake_fashion(tmp_path / "env" / "fashion-mnist", n_train=40, gz=False)
    monkeypatch.setenv("NASCONV_DATA", str(tmp_path / "env"))
    ds = load_dataset("fashion-mnist")
    assert len(ds.train_y) == 40 and int(ds.train_x[0, 0, 0, 0]) == 7
    # --data-dir still comes before NASCONV_DATA.
    write_fake_fashion(tmp_path / "cli", n_train=50)
    assert len(load_dataset(data_dir=tmp_path / "cli").train_y) == 50


def test_cache_notices_changed_files(tmp_path):
    write_fake_fashion(tmp_path / "d", fill=1)
    first = load_dataset(data_dir=tmp_path / "d")
    assert load_dataset(data_dir=tmp_path / "d") is first
    write_fake_fashion(tmp_path / "d", n_train=30, fill=2)
    os.utime(tmp_path / "d" / "train-images-idx3-ubyte.gz", ns=(1, 1))
    second = load_dataset(data_dir=tmp_path / "d")
    assert second is not first and len(second.train_y) == 30


def test_missing_everywhere_names_every_way(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "not-installed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path / "empty")
    msg = str(info.value)
    assert "\n" not in msg
    for way in ("--data-dir", "NASCONV_DATA", "apt-get install dataset-fashion-mnist", "download"):
        assert way in msg
    assert "network blocked" in msg


def test_download_fills_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "not-installed")
    source = write_fake_fashion(tmp_path / "mirror")
    fetched = []

    def fake_download(url, dest):
        fetched.append(url)
        dest.write_bytes((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(fashion_mnist, "_download_file", fake_download)
    ds = load_dataset()
    assert len(fetched) == 4 and fetched[0].startswith(fashion_mnist.FASHION_MNIST_MIRRORS[0])
    assert len(ds.train_y) == 20 and ds.source == str(tmp_path / "home-cache")


def test_data_dir_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="--data-dir .*nowhere is not a directory"):
        load_dataset(data_dir=tmp_path / "nowhere")
    monkeypatch.setenv("NASCONV_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="NASCONV_DATA"):
        load_dataset()


def test_incomplete_data_dir_is_an_error(tmp_path):
    write_fake_fashion(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="incomplete.*t10k-labels"):
        load_dataset(data_dir=tmp_path / "d")


@pytest.mark.parametrize("damage", ["truncate-gzip", "truncate-data", "bad-magic", "wrong-rank"])
def test_corrupt_idx_names_the_file(tmp_path, damage):
    d = write_fake_fashion(tmp_path / "d")
    target = d / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    if damage == "truncate-gzip":
        target.write_bytes(target.read_bytes()[:40])
    elif damage == "truncate-data":
        target.write_bytes(gzip.compress(raw[:-5]))
    elif damage == "bad-magic":
        target.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + raw[4:]))
    else:
        target.write_bytes(gzip.compress(raw[:3] + b"\x01" + raw[4:]))
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset(data_dir=d)


def test_idx_label_count_must_match(tmp_path):
    d = write_fake_fashion(tmp_path / "d")
    write_idx(d / "train-labels-idx1-ubyte", np.zeros(19))
    with pytest.raises(DataError, match="20 images but .* 19 labels"):
        load_dataset(data_dir=d)


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def write_cifar(root: Path, per_batch: int = 4) -> Path:
    """Pickles shaped like the official ones (Python 2: bytes keys)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [(i + j) % 10 for j in range(per_batch)],
                 b"batch_label": name.encode()}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
             b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    return root


def test_cifar10_from_parent_or_batches_folder(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    for where in (tmp_path, batches):
        data.clear_cache()
        ds = load_dataset(f"cifar10:{where}")
        assert ds.train_x.shape == (20, 3, 32, 32) and ds.val_x.shape == (4, 3, 32, 32)
        assert ds.classes[0] == "airplane" and ds.num_classes == 10
        assert ds.train_y.tolist()[:4] == [0, 1, 2, 3]
        assert len(ds.mean) == 3
    # Channel planes: the first 1024 bytes of a row are the red plane.
    with open(batches / "data_batch_1", "rb") as f:
        row = pickle.load(f, encoding="bytes")[b"data"][0]
    assert torch.equal(ds.train_x[0, 0].flatten(), torch.from_numpy(row[:1024].copy()))


def test_cifar10_missing_or_corrupt(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'nowhere'}")
    root = write_cifar(tmp_path / "c")
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset(f"cifar10:{root}")
    (root / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset(f"cifar10:{root}")


def test_cifar10_refuses_code_in_pickles(tmp_path):
    root = write_cifar(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DataError, match="refusing"):
        load_dataset(f"cifar10:{root}")


# ---------------------------------------------------------------------------------------------
# Image folders


def save_image(path: Path, value: int, *, mode: str = "RGB", size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, value // 2)
    Image.new(mode, size, colour).save(path)


def test_imagefolder_train_val_splits(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for c, name in enumerate(["cat", "dog", "emu"]):
            for i in range(n):
                save_image(tmp_path / split / name / f"{i}.png", 40 * c + i)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.classes == ("cat", "dog", "emu")
    assert ds.train_x.shape == (9, 3, 8, 8) and ds.val_x.shape == (6, 3, 8, 8)
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.val_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.train_x[3, :, 0, 0].tolist() == [40, 215, 20]  # RGB order kept
    assert "train/val" in ds.source


def test_imagefolder_test_folder_counts_as_val(tmp_path):
    for split in ("train", "test"):
        for name in ("a", "b"):
            save_image(tmp_path / split / name / "0.png", 9, mode="L")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert len(ds.val_y) == 2 and ds.channels == 1


def test_imagefolder_single_level_stratified_and_deterministic(tmp_path):
    # Grey PNGs and JPEGs of two sizes: grey stays 1 channel, everything goes to the usual size.
    for c, name in enumerate(["a", "b"]):
        for i in range(10):
            ext = "png" if i % 2 else "jpg"
            size = (8, 8) if i < 7 else (12, 6)
            save_image(tmp_path / name / f"{i:02d}.{ext}", 100 * c + i, mode="L", size=size)
    ds = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2, seed=1)
    assert ds.channels == 1 and ds.image_size == (8, 8)
    assert torch.bincount(ds.val_y).tolist() == [2, 2]
    assert torch.bincount(ds.train_y).tolist() == [8, 8]
    data.clear_cache()
    again = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2, seed=1)
    assert torch.equal(again.val_x, ds.val_x) and torch.equal(again.train_y, ds.train_y)
    others = [load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2, seed=s).val_x
              for s in range(2, 6)]
    assert any(not torch.equal(o, ds.val_x) for o in others)
    square = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2, seed=1, image_size=16)
    assert square.image_size == (16, 16)
    wide = load_dataset(f"imagefolder:{tmp_path}", image_size=(4, 10))
    assert wide.image_size == (4, 10)


def test_imagefolder_mixed_grey_and_rgb_becomes_rgb(tmp_path):
    save_image(tmp_path / "a" / "0.png", 50, mode="L")
    save_image(tmp_path / "a" / "1.jpeg", 50, mode="RGB")
    save_image(tmp_path / "b" / "0.PNG", 90, mode="L")
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(tmp_path / "b" / "1.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.0)
    assert ds.channels == 3 and len(ds.train_y) == 4 and len(ds.val_y) == 0
    grey = ds.train_x[0, :, 0, 0].tolist()
    assert grey == [50, 50, 50]
    assert ds.train_x[3, :, 0, 0].tolist() == [255, 255, 255]  # transparent -> white


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    save_image(tmp_path / "one" / "only" / "0.png", 1)
    with pytest.raises(DataError, match="at least 2 class"):
        load_dataset(f"imagefolder:{tmp_path / 'one'}")
    save_image(tmp_path / "bad" / "a" / "0.png", 1)
    (tmp_path / "bad" / "b").mkdir()
    (tmp_path / "bad" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset(f"imagefolder:{tmp_path / 'bad'}")
    save_image(tmp_path / "empty" / "a" / "0.png", 1)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(DataError, match="'b'.*no PNG or JPEG"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    for split, name in (("train", "a"), ("train", "b"), ("val", "zebra")):
        save_image(tmp_path / "splits" / split / name / "0.png", 1)
    with pytest.raises(DataError, match="zebra"):
        load_dataset(f"imagefolder:{tmp_path / 'splits'}")


def test_imagefolder_truncated_png_names_the_file(tmp_path):
    save_image(tmp_path / "a" / "0.png", 1, size=(64, 64))
    save_image(tmp_path / "b" / "0.png", 1, size=(64, 64))
    raw = (tmp_path / "b" / "0.png").read_bytes()
    (tmp_path / "b" / "0.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"b[/\\]0.png"):
        load_dataset(f"imagefolder:{tmp_path}")


# ---------------------------------------------------------------------------------------------
# Synthetic and unknown specs


def test_synthetic_is_labelled_and_learnable():
    ds = load_dataset("synthetic:500", seed=3)
    assert "synthetic" in ds.source and "not real" in ds.source
    assert ds.train_x.shape[1:] == (3, 32, 32) and len(ds.train_y) + len(ds.val_y) == 500
    # A nearest-class-mean classifier already beats chance by far: the class signal is there.
    x_tr, x_va = ds.train_x.flatten(1).float(), ds.val_x.flatten(1).float()
    centroids = torch.stack([x_tr[ds.train_y == c].mean(0) for c in range(10)])
    accuracy = (torch.cdist(x_va, centroids).argmin(1) == ds.val_y).float().mean()
    assert accuracy > 0.6
    assert torch.equal(load_dataset("synthetic:500", seed=3).val_x, ds.val_x)
    assert len(load_dataset("synthetic").train_y) + len(load_dataset("synthetic").val_y) == 2000


@pytest.mark.parametrize("spec", ["mnist", "cifar", "imagefolder", "cifar1000:/tmp", ""])
def test_unknown_spec(spec):
    with pytest.raises(UnknownNameError) as info:
        load_dataset(spec)
    assert "fashion-mnist" in str(info.value) and "imagefolder:DIR" in str(info.value)


@pytest.mark.parametrize("kwargs", [
    {"spec": "synthetic:abc"}, {"spec": "synthetic:3"},
    {"val_fraction": 1.0}, {"val_fraction": -0.1},
    {"spec": "synthetic", "image_size": 32},
])
def test_malformed_arguments_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        load_dataset(**kwargs)


# ---------------------------------------------------------------------------------------------
# prepare_batch


def test_prepare_batch_grey_to_rgb_and_resize():
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    out = prepare_batch(x, channels=3, resolution=32)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out[:, 0], out[:, 2]) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    same = prepare_batch(x, channels=1, resolution=28)
    assert torch.allclose(same, x.float() / 255)
    small = prepare_batch(x, channels=1, resolution=(14, 7))
    assert small.shape == (4, 1, 14, 7)


def test_prepare_batch_rgb_to_grey_uses_luminance():
    red = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = 255
    out = prepare_batch(red, channels=1, resolution=4)
    assert out.shape == (2, 1, 4, 4)
    assert torch.allclose(out, torch.full_like(out, 0.299), atol=1e-5)


def test_prepare_batch_normalises():
    x = torch.full((2, 3, 4, 4), 51, dtype=torch.uint8)  # 0.2 after scaling
    out = prepare_batch(x, channels=3, resolution=4, mean_std=((0.1, 0.2, 0.3), (0.5, 0.5, 0.5)))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.2, 0.0, -0.2]), atol=1e-6)
    one = prepare_batch(x[:, :1], channels=3, resolution=4, mean_std=((0.2,), (1.0,)))
    assert torch.allclose(one, torch.zeros_like(one), atol=1e-6)
    ds = load_dataset("synthetic:200")
    batch = prepare_batch(ds.train_x, channels=3, resolution=32, mean_std=(ds.mean, ds.std))
    assert abs(float(batch.mean())) < 0.05 and abs(float(batch.std()) - 1) < 0.05


@pytest.mark.parametrize("bad", [
    dict(x=torch.zeros(2, 1, 4, 4), channels=1, resolution=4),
    dict(x=torch.zeros(1, 4, 4, dtype=torch.uint8), channels=1, resolution=4),
    dict(x=torch.zeros(2, 2, 4, 4, dtype=torch.uint8), channels=1, resolution=4),
    dict(x=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), channels=4, resolution=4),
    dict(x=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), channels=1, resolution=0),
    dict(x=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), channels=1, resolution=4,
         mean_std=((0.5,), (0.0,))),
    dict(x=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), channels=1, resolution=4,
         mean_std=((0.5, 0.5), (1.0, 1.0))),
])
def test_prepare_batch_rejects_bad_input(bad):
    x = bad.pop("x")
    with pytest.raises(UsageError):
        prepare_batch(x, **bad)


# ---------------------------------------------------------------------------------------------
# subset


def test_subset_deterministic_and_stratified():
    ds = load_dataset("synthetic:1000")
    a = subset(ds, 100, 30, seed=5)
    b = subset(ds, 100, 30, seed=5)
    c = subset(ds, 100, 30, seed=6)
    assert len(a.train_y) == 100 and len(a.val_y) == 30
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert torch.bincount(a.train_y, minlength=10).tolist() == [10] * 10
    assert a.mean == ds.mean and a.classes == ds.classes and "subset" in a.source
    assert subset(ds, None, None, seed=0) is ds
    assert len(subset(ds, 10**6, 0, seed=0).train_y) == len(ds.train_y)
    with pytest.raises(UsageError):
        subset(ds, -1, None, seed=0)


def test_dataset_checks_its_tensors():
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    y = torch.tensor([0, 1])
    ds = Dataset("t", x, y, x, y, 2, ("a", "b"), "test")
    assert ds.mean == (0.0,) and ds.std[0] > 0
    with pytest.raises(DataError):
        Dataset("t", x, torch.tensor([0, 2]), x, y, 2, ("a", "b"), "test")
    with pytest.raises(DataError):
        Dataset("t", x.float(), y, x, y, 2, ("a", "b"), "test")
    assert isinstance(DataError("x"), NasconvError)
