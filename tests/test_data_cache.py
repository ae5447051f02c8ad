"""The decoded-data cache (nasconv.data.store) and parallel decoding of image folders."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasconv import data
from nasconv.data import dataset as dataset_module
from nasconv.data import fashion_mnist, imagefolder, load_dataset, parallel, store
from nasconv.data.imagefolder import stored_size
from nasconv.errors import DataError, UsageError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Each test gets its own cache folder and an empty process cache."""
    data.clear_cache()
    monkeypatch.delenv("NASCONV_DATA", raising=False)
    monkeypatch.delenv(parallel.WORKERS_ENV, raising=False)
    monkeypatch.setenv("NASCONV_CACHE_DIR", str(tmp_path / "cache"))
    yield
    data.clear_cache()


def make_folder(root: Path, *, classes=("cat", "dog", "emu"), n=4, size=(8, 8), splits=True,
                ext="png") -> Path:
    """Images whose pixels say which file they are: class c, image i has value 40 * c + i."""
    for split in ("train", "val") if splits else ("",):
        for c, name in enumerate(classes):
            for i in range(n):
                path = root / split / name / f"{i:03d}.{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                v = (40 * c + i + (100 if split == "val" else 0)) % 256
                Image.new("RGB", (size[1], size[0]), (v, 255 - v, v // 2)).save(path)
    return root


def entry_files(cache: Path) -> list[str]:
    d = cache / "decoded"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def data_hash(ds) -> str:
    return hashlib.sha256(ds.train_x.numpy().tobytes() + ds.val_x.numpy().tobytes()
                          + ds.train_y.numpy().tobytes() + ds.val_y.numpy().tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Where the cache is


def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("NASCONV_CACHE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert store.cache_root() == tmp_path / "env"
    monkeypatch.delenv("NASCONV_CACHE_DIR")
    assert store.cache_root() == tmp_path / "xdg" / "nasconv"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store.cache_root() == tmp_path / "home" / ".cache" / "nasconv"


# ---------------------------------------------------------------------------------------------
# Decoded once, then memory-mapped


def test_second_load_maps_the_file_and_reads_no_pixels(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "f")
    first = load_dataset(f"imagefolder:{folder}")
    files = entry_files(tmp_path / "cache")
    assert len([f for f in files if f.endswith(".images.npy")]) == 1
    assert len([f for f in files if f.endswith(".json")]) == 1
    assert not [f for f in files if ".tmp-" in f]
    # The statistics stored are exactly those the Dataset would compute from the pixels.
    again = data.Dataset("t", first.train_x.clone(), first.train_y, first.val_x.clone(), first.val_y,
                         first.num_classes, first.classes, "t")
    assert again.mean == first.mean and again.std == first.std

    data.clear_cache()

    def no(*args, **kwargs):
        raise AssertionError("a cached load decoded or read pixels")

    monkeypatch.setattr(store._Entry, "build", no)
    monkeypatch.setattr(dataset_module, "_channel_stats", no)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "non-writable array" warning included
        second = load_dataset(f"imagefolder:{folder}")
    assert second is not first and data_hash(second) == data_hash(first)
    assert second.classes == ("cat", "dog", "emu") and second.mean == first.mean
    assert second.train_x[4, :, 0, 0].tolist() == [40, 215, 20]  # dog 000.png
    # train_x and val_x are views into a mapping of the cache file, not copies in memory.
    images = next((tmp_path / "cache" / "decoded").glob("*.images.npy"))
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(images)):
            lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
            ranges.append((lo, hi))
    assert ranges, "the cache file is not memory-mapped"
    for x in (second.train_x, second.val_x):
        assert any(lo <= x.data_ptr() < hi for lo, hi in ranges)


def test_changed_folder_and_split_settings_are_new_entries(tmp_path):
    folder = make_folder(tmp_path / "f", splits=False, n=6)
    a = load_dataset(f"imagefolder:{folder}", val_fraction=0.5, seed=1)
    load_dataset(f"imagefolder:{folder}", val_fraction=0.5, seed=1)
    assert len(list((tmp_path / "cache" / "decoded").glob("*.json"))) == 1
    b = load_dataset(f"imagefolder:{folder}", val_fraction=0.5, seed=2)
    assert len(list((tmp_path / "cache" / "decoded").glob("*.json"))) == 2
    assert data_hash(a) != data_hash(b)
    # Train rows first, then val, each split in label order, as the held-out split picks them.
    assert torch.equal(a.train_y, torch.sort(a.train_y).values) and len(a.val_y) == 9

    target = folder / "dog" / "000.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(target)
    os.utime(target, ns=(10**9, 10**9))  # a different mtime even on a coarse-clock file system
    data.clear_cache()
    c = load_dataset(f"imagefolder:{folder}", val_fraction=0.5, seed=1)
    assert len(list((tmp_path / "cache" / "decoded").glob("*.json"))) == 3
    rows = torch.cat([c.train_x, c.val_x])[:, :, 0, 0].tolist()
    assert [1, 2, 3] in rows and [1, 2, 3] not in torch.cat([a.train_x, a.val_x])[:, :, 0, 0].tolist()


def test_fashion_mnist_goes_through_the_cache(tmp_path, monkeypatch):
    d = tmp_path / "fm"
    d.mkdir()
    import gzip
    for stem, n in (("train", 12), ("t10k", 5)):
        x = np.arange(n * 784, dtype=np.uint64).reshape(n, 28, 28) % 251
        (d / f"{stem}-images-idx3-ubyte.gz").write_bytes(gzip.compress(
            bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in x.shape) + x.astype(np.uint8).tobytes()))
        y = np.arange(n) % 10
        (d / f"{stem}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(
            bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + y.astype(np.uint8).tobytes()))
    first = load_dataset("fashion-mnist", data_dir=d)
    assert first.train_x.shape == (12, 1, 28, 28) and first.val_x.shape == (5, 1, 28, 28)
    assert int(first.train_x[0, 0, 0, 5]) == 5 and first.source == str(d)
    data.clear_cache()
    monkeypatch.setattr(fashion_mnist, "read_idx", lambda *a: pytest.fail("idx files read again"))
    second = load_dataset("fashion-mnist", data_dir=d)
    assert data_hash(second) == data_hash(first) and second.mean == first.mean


# ---------------------------------------------------------------------------------------------
# Damage and failures


@pytest.mark.parametrize("which", ["images", "labels", "json"])
def test_damaged_entry_is_one_line_naming_the_file(tmp_path, which):
    folder = make_folder(tmp_path / "f")
    load_dataset(f"imagefolder:{folder}")
    decoded = tmp_path / "cache" / "decoded"
    target = next(decoded.glob(f"*.{which}.npy" if which != "json" else "*.json"))
    raw = target.read_bytes()
    target.write_bytes(raw[: len(raw) - 100] if which != "json" else raw[:20])
    data.clear_cache()
    with pytest.raises(DataError) as info:
        load_dataset(f"imagefolder:{folder}")
    msg = str(info.value)
    assert "\n" not in msg and str(target) in msg and "delete" in msg
    # Doing what it says works.
    for p in decoded.glob(target.name.split(".")[0] + ".*"):
        p.unlink()
    data.clear_cache()
    assert load_dataset(f"imagefolder:{folder}").train_x.shape == (12, 3, 8, 8)


def test_failed_decode_leaves_nothing_half_written(tmp_path):
    folder = make_folder(tmp_path / "f")
    (folder / "val" / "dog" / "001.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"val[/\\]dog[/\\]001.png"):
        load_dataset(f"imagefolder:{folder}")
    assert [f for f in entry_files(tmp_path / "cache") if not f.endswith(".lock")] == []


def test_unwritable_cache_dir_is_one_line(tmp_path):
    folder = make_folder(tmp_path / "f")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as info:
        load_dataset(f"imagefolder:{folder}", cache_dir=blocker / "cache")
    msg = str(info.value)
    assert "\n" not in msg and "cannot write to the nasconv data cache" in msg and str(blocker) in msg
    assert "NASCONV_CACHE_DIR" in msg


def test_read_only_cache_dir_is_one_line(tmp_path):
    folder = make_folder(tmp_path / "f")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        try:
            (ro / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("this user can write into a 0o500 folder (root ignores permission bits); "
                        "test_unwritable_cache_dir_is_one_line covers the error")
        with pytest.raises(DataError) as info:
            load_dataset(f"imagefolder:{folder}", cache_dir=ro)
        assert "\n" not in str(info.value) and "cannot write to the nasconv data cache" in str(info.value)
    finally:
        ro.chmod(0o700)


def test_a_read_only_cache_still_serves_what_it_holds(tmp_path):
    folder = make_folder(tmp_path / "f")
    first = load_dataset(f"imagefolder:{folder}", cache_dir=tmp_path / "c")
    data.clear_cache()
    (tmp_path / "c" / "decoded").chmod(0o500)
    try:
        assert data_hash(load_dataset(f"imagefolder:{folder}", cache_dir=tmp_path / "c")) == data_hash(first)
    finally:
        (tmp_path / "c" / "decoded").chmod(0o700)


# ---------------------------------------------------------------------------------------------
# Concurrent processes, parallel decoding


CHILD = textwrap.dedent("""
    import hashlib, sys, time
    from pathlib import Path
    from nasconv.data import load_dataset, store
    builds = []
    real_build = store._Entry.build
    def slow_build(self, builder):
        builds.append(1)
        time.sleep(1.5)  # long enough that the other process arrives while this one decodes
        real_build(self, builder)
    store._Entry.build = slow_build
    folder, me, other = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    me.touch()
    t0 = time.monotonic()
    while not other.exists() and time.monotonic() - t0 < 60:  # start together
        time.sleep(0.01)
    ds = load_dataset("imagefolder:" + folder)
    x = ds.train_x.numpy().tobytes() + ds.val_x.numpy().tobytes()
    print(len(builds), hashlib.sha256(x).hexdigest(), flush=True)
""")


def test_two_processes_decode_once_and_share_the_result(tmp_path):
    folder = make_folder(tmp_path / "f", n=10)
    env = {**os.environ, "NASCONV_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(tmp_path / f"ready{i}"),
                               str(tmp_path / f"ready{1 - i}")], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    builds = [int(out.split()[0]) for out, _ in outs]
    hashes = {out.split()[1] for out, _ in outs}
    assert sorted(builds) == [0, 1], outs
    assert len(hashes) == 1
    assert any("waiting for another process" in err for _, err in outs)
    assert len(list((tmp_path / "cache" / "decoded").glob("*.images.npy"))) == 1
    # ... and it is the same data this process decodes for itself.
    mine = load_dataset(f"imagefolder:{folder}", cache_dir=tmp_path / "mine")
    assert hashlib.sha256(mine.train_x.numpy().tobytes() + mine.val_x.numpy().tobytes()).hexdigest() in hashes


def test_worker_processes_decode_what_one_process_does(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "f", classes=("a", "b"), n=30, splits=False)
    monkeypatch.setenv(parallel.WORKERS_ENV, "1")
    serial = load_dataset(f"imagefolder:{folder}", cache_dir=tmp_path / "serial")
    data.clear_cache()
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ITEMS", 0)
    monkeypatch.setenv(parallel.WORKERS_ENV, "2")
    pooled = []
    real_init = parallel.ProcessPoolExecutor.__init__

    def counting_init(self, *args, **kwargs):
        pooled.append(kwargs.get("mp_context").get_start_method())
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(parallel.ProcessPoolExecutor, "__init__", counting_init)
    par = load_dataset(f"imagefolder:{folder}", cache_dir=tmp_path / "pool")
    assert pooled == ["spawn"]  # one pool for both passes, never fork
    assert data_hash(par) == data_hash(serial) and par.mean == serial.mean
    # A broken file in a worker is the same one-line error as in this process.
    (folder / "b" / "007.png").write_bytes(b"\x89PNG not really")
    data.clear_cache()
    with pytest.raises(DataError) as info:
        load_dataset(f"imagefolder:{folder}", cache_dir=tmp_path / "pool")
    assert "\n" not in str(info.value) and "007.png" in str(info.value)


def test_workers_do_not_rerun_an_unguarded_main_script(tmp_path):
    folder = make_folder(tmp_path / "f", classes=("a", "b"), n=6)
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        print("script ran", flush=True)  # no `if __name__ == "__main__"` guard, on purpose
        from nasconv.data import load_dataset, parallel
        parallel.PARALLEL_MIN_ITEMS = 0
        real_init = parallel.ProcessPoolExecutor.__init__
        def init(self, *args, **kwargs):
            print("pool started", flush=True)
            real_init(self, *args, **kwargs)
        parallel.ProcessPoolExecutor.__init__ = init
        print(load_dataset("imagefolder:{folder}").train_x.shape, flush=True)
    """))
    env = {**os.environ, "NASCONV_CACHE_DIR": str(tmp_path / "cache"), parallel.WORKERS_ENV: "2"}
    # Were the workers to run the script again, each would start a pool of its own: a hang.
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("script ran") == 1, out.stdout
    assert "pool started" in out.stdout and "torch.Size([12, 3, 8, 8])" in out.stdout


def test_worker_count_setting(monkeypatch):
    monkeypatch.setenv(parallel.WORKERS_ENV, "3")
    assert parallel.worker_count() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(parallel.WORKERS_ENV, bad)
        with pytest.raises(UsageError, match=parallel.WORKERS_ENV):
            parallel.worker_count()
    chunks = parallel.chunked(1001, 2)
    assert sum(len(c) for c in chunks) == 1001 and len(chunks) >= 16 and chunks[-1].stop == 1001


def test_main_module_is_restored_after_starting_workers():
    main = sys.modules["__main__"]
    before = (vars(main).get("__file__"), "__file__" in vars(main), getattr(main, "__spec__", None))
    with parallel._main_hidden():
        assert "__file__" not in vars(main) and main.__spec__ is None
    assert (vars(main).get("__file__"), "__file__" in vars(main), getattr(main, "__spec__", None)) == before


# ---------------------------------------------------------------------------------------------
# The stored size


def test_stored_size_rule():
    assert stored_size(Counter({(8, 8): 3}), None) == (8, 8)
    assert stored_size(Counter({(64, 300): 1}), None) == (64, 300)  # shorter side already <= 64
    assert stored_size(Counter({(375, 500): 5, (500, 375): 2}), None) == (64, 85)
    assert stored_size(Counter({(100, 200): 1}), None) == (64, 128)
    assert stored_size(Counter({(375, 500): 5}), (32, 32)) == (32, 32)  # explicit wins
    # A tie goes to the size seen first.
    assert stored_size(Counter([(10, 10), (12, 12), (12, 12), (10, 10)]), None) == (10, 10)


def test_large_images_are_stored_at_64_px_short_side(tmp_path):
    # A smooth image, so that the shrunken pixels can be compared with Pillow's own resize.
    yy, xx = np.mgrid[0:384, 0:512]
    pic = np.stack([(xx / 2) % 256, (yy / 2) % 256, (xx + yy) / 4 % 256], axis=-1).astype(np.uint8)
    for c in ("a", "b"):
        for i in range(2):
            (tmp_path / "f" / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pic).save(tmp_path / "f" / c / f"{i}.jpg", quality=95)
    Image.fromarray(pic[:200, :300]).save(tmp_path / "f" / "b" / "odd.png")  # another size: resized
    ds = load_dataset(f"imagefolder:{tmp_path / 'f'}", val_fraction=0.0)
    assert ds.image_size == (64, 85) and len(ds.train_y) == 5
    expected = np.asarray(Image.open(tmp_path / "f" / "a" / "0.jpg").convert("RGB")
                          .resize((85, 64), Image.Resampling.BILINEAR)).transpose(2, 0, 1).astype(int)
    # JPEGs this large are decoded at a reduced scale first (draft mode): close, not identical.
    assert np.abs(ds.train_x[0].numpy().astype(int) - expected).mean() < 3
    assert imagefolder.STORED_SHORT_SIDE == 64
