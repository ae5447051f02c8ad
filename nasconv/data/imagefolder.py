"""Image folders: one sub-folder of PNG/JPEG files per class, with or without train/val splits.

Folder names read: ``DIR/train/<class>/`` with ``DIR/val/<class>/`` held out, else
``DIR/test/<class>/`` held out (architectures are then selected on the test split; ``holdout``
holds out a fraction of each class of ``train/`` instead and reads neither); without ``train/``,
``DIR/<class>/`` with a fraction held out per class. Names starting with ``.`` are skipped. Every
class of ``train/`` needs an image in the held-out folder, which may have no other class, and no
two class names may be equal after :func:`normalise_class_name`.

A folder is decoded once, in parallel (:mod:`nasconv.data.parallel`), straight into the data
cache (:mod:`nasconv.data.store`); later loads map that file. The cache entry is keyed by every
file's path, size and mtime, the stored size and, for a folder without splits, the held-out
fraction and seed: a changed folder is decoded again.

Stored size: an explicit ``image_size`` wins; else the most common size if its shorter side is at
most 64 px; else the most common size scaled (aspect kept, rounded) so that its shorter side is
64 px. 64 is twice the largest proxy training resolution the shipped spaces use (32), so the
proxy's antialiased resize still has detail to work with, while an ImageNet-sized folder stores
about 12 KB per image instead of about 150 KB. Images of other sizes are resized (bilinear) to
it. Channels: grey (1) when every image is grey, else RGB (3; transparency over white).
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasconv.data.dataset import Dataset
from nasconv.data.decode import GREY_MODES, decode_into, read_headers
from nasconv.data.parallel import Workers
from nasconv.data.splits import holdout_split
from nasconv.data.store import Built, ImageWriter, stored_dataset
from nasconv.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: the shorter side an image folder is stored at when its images are larger (module docstring)
STORED_SHORT_SIDE = 64


@dataclass(frozen=True)
class FolderScan:
    """The image files of a folder and a digest of their paths, sizes and mtimes."""

    root: Path
    #: ``{"train": {class: files}, "val": ...}``; only ``"all"`` when there are no splits
    splits: dict[str, dict[str, list[str]]]
    digest: str
    #: the folder whose images are held out (``val`` or ``test``), None when a fraction is
    held_out: str | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.splits["train" if "train" in self.splits else "all"])

    @property
    def has_val(self) -> bool:
        return "val" in self.splits


def _class_dirs(root: Path, split: str, digest: Any) -> dict[str, list[str]]:
    """Class name -> its image files, sorted, for each sub-folder of ``root``, feeding each
    file's name, size and mtime to ``digest`` (one ``stat`` per file: 60,000 take a tenth of a second)."""
    try:
        with os.scandir(root) as it:
            names = sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
        out = {}
        for name in names:
            with os.scandir(root / name) as it:
                files = sorted((e for e in it if not e.name.startswith(".")
                                and e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file()),
                               key=lambda e: e.name)
            for e in files:
                st = e.stat()
                digest.update(f"{split}/{name}/{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(
                    "utf-8", "surrogateescape"))
            out[name] = [e.path for e in files]
    except OSError as exc:
        raise DataError(f"cannot read image folder {exc.filename or root}: {exc.strerror or exc}") from None
    return out


def scan_imagefolder(root: Path, *, holdout: bool = False) -> FolderScan:
    """The files of image folder ``root``: ``train/`` with ``val/`` (else ``test/``) held out, or
    class folders directly under ``root`` (a fraction held out per class). With ``holdout`` a
    fraction of ``train/`` is held out and ``val/``/``test/`` are not read."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    root = root.resolve()
    digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape"))
    val_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    held_out = None
    if holdout and (root / "train").is_dir():
        digest.update(b"holdout of train/\n")
        splits = {"all": _class_dirs(root / "train", "all", digest)}
    elif (root / "train").is_dir() and val_dir is not None:
        held_out = val_dir.name
        splits = {"train": _class_dirs(root / "train", "train", digest),
                  "val": _class_dirs(val_dir, "val", digest)}
        unknown = sorted(set(splits["val"]) - set(splits["train"]))
        if unknown:
            raise DataError(f"{val_dir} has classes not in {root / 'train'}: {', '.join(unknown)}")
        empty = [c for c in splits["train"] if not splits["val"].get(c)]
        if empty:
            raise DataError(f"class {empty[0]!r} has no image in the held-out folder {val_dir}"
                            + (f" ({len(empty)} classes have none)" if len(empty) > 1 else "")
                            + "; add some, or hold out part of train/ with --holdout FRACTION")
    else:
        splits = {"all": _class_dirs(root, "all", digest)}
    main = splits.get("train", splits.get("all", {}))
    if len(main) < 2:
        raise DataError(f"image folder {root} needs at least 2 class sub-folders, found {len(main)}"
                        + (f" ({', '.join(main)})" if main else ""))
    for name, files in main.items():
        if not files:
            raise DataError(f"class folder {name!r} in {root} has no PNG or JPEG images")
    _check_distinct(main, root)
    return FolderScan(root, splits, digest.hexdigest(), held_out)


def normalise_class_name(name: str) -> str:
    """The form two class folder names must not share (``Cat`` and ``cat ``, ``ﬁsh`` and ``fish``):
    on a case-insensitive file system or in an export's label list they would be one class."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def _check_distinct(classes: dict[str, list[str]], root: Path) -> None:
    seen: dict[str, str] = {}
    for name in classes:
        other = seen.setdefault(normalise_class_name(name), name)
        if other != name:
            raise DataError(f"class folders {other!r} and {name!r} in {root} are the same name after "
                            "normalisation (case, Unicode form, surrounding spaces); rename one")


def stored_size(sizes: Counter[tuple[int, int]], explicit: tuple[int, int] | None) -> tuple[int, int]:
    """``(height, width)`` images are stored at: see the module docstring. ``sizes`` counts the
    images' sizes in file order (a tie goes to the size seen first)."""
    if explicit is not None:
        return explicit
    h, w = sizes.most_common(1)[0][0]
    short = min(h, w)
    if short <= STORED_SHORT_SIDE:
        return h, w
    scale = STORED_SHORT_SIDE / short
    return max(1, round(h * scale)), max(1, round(w * scale))


def load_imagefolder(
    scan: FolderScan,
    size: tuple[int, int] | None,
    val_fraction: float,
    seed: int,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> Dataset:
    """The folder's images from the data cache, decoded into it first when not there."""
    name = name or f"imagefolder:{scan.root.name}"
    key = {"root": str(scan.root), "files": scan.digest, "size": size, "name": name,
           "split": None if scan.has_val else [val_fraction, seed]}
    return stored_dataset("imagefolder", key, lambda writer: _decode(scan, size, val_fraction, seed, name, writer),
                          cache_dir=cache_dir)


def _decode(scan: FolderScan, size: tuple[int, int] | None, val_fraction: float, seed: int, name: str,
            writer: ImageWriter) -> Built:
    classes = scan.classes
    paths: list[str] = []
    labels: list[int] = []
    is_val: list[bool] = []
    for split, by_class in scan.splits.items():
        for i, cls in enumerate(classes):
            for p in by_class.get(cls, []):
                paths.append(p)
                labels.append(i)
                is_val.append(split == "val")
    y = np.asarray(labels, dtype=np.int64)
    with Workers(len(paths)) as workers:
        chunks = workers.chunks(len(paths))
        sizes = [len(c) for c in chunks]
        # First pass reads headers only, to choose the channels and size before decoding anything.
        headers = workers.map(read_headers, [(paths[c.start:c.stop],) for c in chunks], sizes,
                              desc=f"reading {len(paths)} image headers")
        grey = all(mode in GREY_MODES for part in headers for mode, _, _ in part)
        target = stored_size(Counter((h, w) for part in headers for _, h, w in part), size)

        # Rows: train images first, then val, so that each split is one slice of the file.
        if scan.has_val:
            val_mask = np.asarray(is_val, dtype=bool)
            train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
            how = f"train/val folders, {scan.held_out}/ held out"
        else:
            tr, va = holdout_split(torch.from_numpy(y), len(classes), val_fraction, seed)
            train_idx, val_idx = tr.numpy(), va.numpy()
            how = f"held out {val_fraction:g} of each class, seed {seed}"
        rows = np.empty(len(paths), dtype=np.int64)
        rows[train_idx] = np.arange(len(train_idx))
        rows[val_idx] = len(train_idx) + np.arange(len(val_idx))

        writer.images(len(train_idx), len(val_idx), (1 if grey else 3, *target))
        tasks = [(str(writer.path), rows[c.start:c.stop].tolist(), paths[c.start:c.stop], target, grey)
                 for c in chunks]
        workers.map(decode_into, tasks, sizes, desc=f"decoding {name} at {target[0]}x{target[1]}")
    return Built(name=name, source=f"{scan.root} ({how})", classes=classes,
                 train_y=y[train_idx], val_y=y[val_idx])
