"""Turning a uint8 batch into the float input a model expects: scaling, normalising, channels, size."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from nasconv.errors import UsageError

# ITU-R BT.601, the weights Pillow uses for "L", so grey made here matches grey made there.
_LUMA = (0.299, 0.587, 0.114)


def prepare_batch(
    x_uint8: torch.Tensor,
    *,
    channels: int,
    resolution: int | tuple[int, int],
    mean_std: tuple[Sequence[float], Sequence[float]] | None = None,
) -> torch.Tensor:
    """Turn a uint8 ``N x C x H x W`` batch into the float32 input a model expects.

    Scales to ``[0, 1]``; normalises by ``mean_std = (mean, std)`` per input channel (or one
    value for all) when given; converts grey to ``channels=3`` by repetition, RGB to
    ``channels=1`` by luminance; resizes to ``resolution`` (bilinear, antialiased when
    shrinking) when the size differs. Stays on the batch's device.
    """
    if x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4:
        raise UsageError(f"prepare_batch wants a uint8 N x C x H x W batch, "
                         f"got {x_uint8.dtype} of shape {tuple(x_uint8.shape)}")
    c_in = int(x_uint8.shape[1])
    if c_in not in (1, 3) or channels not in (1, 3):
        raise UsageError(f"prepare_batch converts between 1 and 3 channels, got {c_in} -> {channels}")
    out_hw = parse_size(resolution)
    if out_hw is None:
        raise UsageError("prepare_batch needs a resolution")
    x = x_uint8.float().div_(255.0)
    if mean_std is not None:
        x = _normalise(x, mean_std)
    if c_in == 3 and channels == 1:
        # Shrink channels before resizing: three times less to interpolate.
        luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * luma).sum(dim=1, keepdim=True)
    if tuple(x.shape[2:]) != out_hw:
        shrinking = out_hw[0] < x.shape[2] or out_hw[1] < x.shape[3]
        x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=shrinking)
    if c_in == 1 and channels == 3:
        # Repeat last so the resize above ran on one channel, not three.
        x = x.expand(-1, 3, -1, -1).contiguous()
    return x


def _normalise(x: torch.Tensor, mean_std: tuple[Sequence[float], Sequence[float]]) -> torch.Tensor:
    try:
        mean, std = (torch.as_tensor([float(v) for v in s], dtype=x.dtype, device=x.device)
                     for s in mean_std)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"mean_std must be (mean, std), two sequences of numbers: {exc}") from None
    c = x.shape[1]
    if mean.numel() not in (1, c) or std.numel() not in (1, c):
        raise UsageError(f"mean_std must have 1 or {c} values each, "
                         f"got {mean.numel()} and {std.numel()}")
    if bool((std <= 0).any()):
        raise UsageError(f"std must be positive, got {std.tolist()}")
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def parse_size(size: int | tuple[int, int] | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise UsageError(f"image size must be a positive int or (height, width), got {size!r}")
    return int(hw[0]), int(hw[1])
