"""Reading image files, a chunk at a time: what the decoding worker processes run.

Imports numpy and Pillow only (``nasconv.data`` loads its torch-importing modules lazily), so a
worker process starts in a fraction of a second.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from nasconv.errors import DataError

GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def read_headers(paths: list[str]) -> list[tuple[str, int, int]]:
    """``(mode, height, width)`` of each file, reading headers only."""
    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append((im.mode, im.height, im.width))
        except Exception as exc:  # Pillow raises many types for bad files
            raise DataError(f"cannot read image {path}: {exc}") from None
    return out


def decode_into(array_path: str, rows: list[int], paths: list[str], size: tuple[int, int], grey: bool) -> int:
    """Decode ``paths`` into rows ``rows`` of the ``.npy`` file at ``array_path`` (mapped, not
    loaded: each worker writes its own rows); returns how many."""
    out = np.lib.format.open_memmap(array_path, mode="r+")
    try:
        for row, path in zip(rows, paths):
            out[row] = decode_image(path, size, grey)
        out.flush()
    finally:
        del out
    return len(rows)


def decode_image(path: str, size: tuple[int, int], grey: bool) -> np.ndarray:
    """One image as uint8 ``C x H x W`` at ``size`` = ``(height, width)``, bilinear-resized when
    it differs; grey (``L``) or RGB."""
    try:
        with Image.open(path) as im:
            h, w = size
            if im.format == "JPEG" and im.width >= 2 * w and im.height >= 2 * h:
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (never below the target): a large
                # photo shrunk to a proxy's size decodes several times faster.
                im.draft(im.mode, (w, h))
            im = to_mode(im, "L" if grey else "RGB")
            if (im.height, im.width) != (h, w):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    return arr[None] if grey else arr.transpose(2, 0, 1)


def to_mode(im: Image.Image, mode: str) -> Image.Image:
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
