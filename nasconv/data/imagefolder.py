"""Image folders: one sub-folder of PNG/JPEG files per class, with or without train/val splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nasconv.data.dataset import Dataset
from nasconv.data.splits import holdout_split
from nasconv.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def _class_dirs(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, sorted, for each sub-folder of ``root``."""
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[d.name] = sorted(p for p in d.iterdir()
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                             and not p.name.startswith("."))
    return out


def scan_imagefolder(root: Path) -> dict[str, dict[str, list[Path]]]:
    """``{"train": {class: files}, "val": ...}``; only ``"all"`` when there are no splits."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    val_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        splits = {"train": _class_dirs(root / "train"), "val": _class_dirs(val_dir)}
        unknown = sorted(set(splits["val"]) - set(splits["train"]))
        if unknown:
            raise DataError(f"{val_dir} has classes not in {root / 'train'}: {', '.join(unknown)}")
    else:
        splits = {"all": _class_dirs(root)}
    main = splits.get("train", splits.get("all", {}))
    if len(main) < 2:
        raise DataError(f"image folder {root} needs at least 2 class sub-folders, found {len(main)}"
                        + (f" ({', '.join(main)})" if main else ""))
    for name, files in main.items():
        if not files:
            raise DataError(f"class folder {name!r} in {root} has no PNG or JPEG images")
    return splits


def load_imagefolder(
    root: Path,
    splits: dict[str, dict[str, list[Path]]],
    size: tuple[int, int] | None,
    val_fraction: float,
    seed: int,
) -> Dataset:
    classes = tuple(splits["train" if "train" in splits else "all"])
    items = [(p, i, split) for split, by_class in splits.items()
             for i, name in enumerate(classes) for p in by_class.get(name, [])]

    # First pass reads headers only, to choose the channels and size before decoding anything.
    modes, sizes = [], Counter()
    for path, _, _ in items:
        try:
            with Image.open(path) as im:
                modes.append(im.mode)
                sizes[(im.height, im.width)] += 1
        except Exception as exc:  # Pillow raises many types for bad files
            raise DataError(f"cannot read image {path}: {exc}") from None
    grey = all(m in _GREY_MODES for m in modes)
    mode = "L" if grey else "RGB"
    # Ties go to the size seen first in sorted file order, so the choice is deterministic.
    target = size or sizes.most_common(1)[0][0]

    xs = {split: [] for split in splits}
    ys = {split: [] for split in splits}
    for path, label, split in items:
        try:
            with Image.open(path) as im:
                im = _to_mode(im, mode)
                if (im.height, im.width) != target:
                    im = im.resize((target[1], target[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except Exception as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        xs[split].append(arr[None] if grey else arr.transpose(2, 0, 1))
        ys[split].append(label)

    def stack(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        c = 1 if grey else 3
        if not xs[split]:
            return torch.empty((0, c, *target), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
        return torch.from_numpy(np.stack(xs[split])), torch.tensor(ys[split], dtype=torch.int64)

    if "all" in splits:
        x, y = stack("all")
        tr, va = holdout_split(y, len(classes), val_fraction, seed)
        train_x, train_y, val_x, val_y = x[tr], y[tr], x[va], y[va]
        how = f"held out {val_fraction:g} per class, seed {seed}"
    else:
        (train_x, train_y), (val_x, val_y) = stack("train"), stack("val")
        how = "train/val folders"
    return Dataset(
        name=f"imagefolder:{root.name}",
        train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
        num_classes=len(classes), classes=classes,
        source=f"{root.resolve()} ({how})",
    )


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    if im.mode == mode:
        return im
    if mode == "L" and im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float grey would saturate in convert("L"): rescale to 0..255 first.
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if mode == "RGB" and (im.mode in ("RGBA", "LA", "PA")
                          or (im.mode == "P" and "transparency" in im.info)):
        # Composite onto white: transparent pixels would otherwise show whatever colour they hold.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert(mode)
    return im.convert(mode)
