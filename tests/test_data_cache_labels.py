"""A decoded-data cache entry whose labels file is damaged without changing its size (other bytes,
the same length) is one line naming the cache entry to delete (nasconv.data.store), as a damaged
pixel file is; before, the dataset's own check said "train labels must lie in [0, 3)" and named
nothing to delete. Doing what the line says works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nasconv import data
from nasconv.data import load_dataset
from nasconv.errors import DataError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    data.clear_cache()
    monkeypatch.delenv("NASCONV_DATA", raising=False)
    monkeypatch.setenv("NASCONV_CACHE_DIR", str(tmp_path / "cache"))
    yield
    data.clear_cache()


def _folder(root: Path) -> Path:
    for split in ("train", "val"):
        for c, name in enumerate(("cat", "dog", "emu")):
            for i in range(3):
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (40 * c + i, 0, 0)).save(path)
    return root


def _damage_labels(labels: Path, how: str) -> None:
    y = np.load(labels)
    if how == "header":  # same length, the header's bytes garbled
        raw = bytearray(labels.read_bytes())
        raw[:6] = b"garbag"
        labels.write_bytes(bytes(raw))
        return
    y[{"too-large": 0, "negative": -1, "huge": 2}[how]] = {"too-large": 3, "negative": -5, "huge": 2**62}[how]
    before = labels.stat().st_size
    np.save(labels, y)
    assert labels.stat().st_size == before  # the size check alone cannot see it


@pytest.mark.parametrize("how", ["too-large", "negative", "huge", "header"])
def test_same_size_damaged_labels_name_the_entry_to_delete(tmp_path, how):
    folder = _folder(tmp_path / "f")
    first = load_dataset(f"imagefolder:{folder}")
    labels = next((tmp_path / "cache" / "decoded").glob("*.labels.npy"))
    _damage_labels(labels, how)
    data.clear_cache()
    with pytest.raises(DataError) as info:
        load_dataset(f"imagefolder:{folder}")
    msg = str(info.value)
    stem = labels.name[: -len(".labels.npy")]
    assert "\n" not in msg and str(labels) in msg and f"delete {labels.parent / stem}.*" in msg, msg
    assert "must lie in" not in msg
    for p in labels.parent.glob(f"{stem}.*"):  # doing what it says works
        p.unlink()
    data.clear_cache()
    again = load_dataset(f"imagefolder:{folder}")
    assert again.train_y.tolist() == first.train_y.tolist()
