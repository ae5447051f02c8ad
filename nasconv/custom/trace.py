"""Run a user's model once and list its convolutions: which a registered operator can replace
(``k x k``, k odd and > 1, groups 1, dilation 1, padding ``k // 2``, zeros padding) and why each
other one stays fixed; with the call shapes, the measured cost and a structural fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin
from torch.utils.flop_counter import FlopCounterMode

from nasconv.custom.errors import ModelError, first_line
from nasconv.flops import count_params
from nasconv.ops.complexity import Cost


@dataclass(frozen=True)
class ConvInfo:
    """One ``nn.Conv2d`` module of the model (one module, however many names or calls it has)."""

    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    bias: bool
    #: input ``(height, width)`` of each call, in call order (two or more: a reused module)
    calls: tuple[tuple[int, int], ...]
    #: why no operator may replace it; ``""``: replaceable
    reason: str = ""
    #: other names the same module object has in the model
    aliases: tuple[str, ...] = ()

    @property
    def replaceable(self) -> bool:
        return not self.reason


@dataclass(frozen=True)
class Trace:
    convs: tuple[ConvInfo, ...]
    #: shape of the output for one image (``(num_classes,)`` for logits)
    output_shape: tuple[int, ...]
    #: what FlopCounterMode and the parameters count for the whole model, per image
    measured: Cost
    fingerprint: str


def structure(model: nn.Module) -> list[tuple[str, str, list[list[int]]]]:
    """Module names, classes and parameter/buffer shapes: what the fingerprint hashes."""
    rows = []
    for name, m in model.named_modules(remove_duplicate=False):
        shapes = [[k, "lazy"] if isinstance(t, UninitializedTensorMixin) else [k, *t.shape]
                  for k, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
                  if t is not None]
        rows.append((name, type(m).__name__, shapes))
    return rows


def fingerprint(model: nn.Module) -> str:
    text = json.dumps(structure(model), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _reason(m: nn.Conv2d) -> str:
    if type(m).forward is not nn.Conv2d.forward:
        return f"{type(m).__name__} has its own forward (only plain nn.Conv2d is replaced)"
    kh, kw = m.kernel_size
    if m.groups != 1:
        if m.groups == m.in_channels:
            return "depthwise (groups = channels): not a dense k x k convolution"
        return f"grouped (groups={m.groups}): not a dense k x k convolution"
    if kh != kw:
        return f"non-square kernel {kh}x{kw}"
    if kh == 1:
        return "pointwise 1x1: the registered operators change the k x k spatial convolution"
    if kh % 2 == 0:
        return f"even kernel {kh}x{kw} has no 'same' padding"
    if tuple(m.dilation) != (1, 1):
        return f"dilation {tuple(m.dilation)}"
    if m.padding_mode != "zeros":
        return f"padding mode {m.padding_mode!r}"
    pad = m.padding
    if isinstance(pad, str):
        if not (pad == "same" and tuple(m.stride) == (1, 1)):
            return f"padding {pad!r} with stride {tuple(m.stride)}"
    elif tuple(pad) != (kh // 2, kw // 2):
        return f"padding {tuple(pad)}, not k//2 ('same')"
    if m.stride[0] != m.stride[1]:
        return f"non-square stride {tuple(m.stride)}"
    return ""


def trace_model(model: nn.Module, input_shape: tuple[int, int, int], *, include_first: bool = False,
                shared: str = "slot") -> Trace:
    """Run ``model`` (eval mode, no grad) on one random ``input_shape`` image and list its convs.

    The first convolution called on the image itself stays fixed unless ``include_first`` (the
    HetConv and SPConv papers keep it plain: 3 input channels leave most operators nothing to
    split). A module called more than once is one slot with ``shared="slot"``; with
    ``shared="refuse"`` it is refused in one line.
    """
    names: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, nn.Conv2d):
            names.setdefault(id(m), []).append(name)
    calls: dict[int, list[tuple[int, int]]] = {}
    order: list[nn.Conv2d] = []

    def hook(m: nn.Module, args: tuple, _out: object) -> None:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            return
        if id(m) not in calls:
            order.append(m)  # type: ignore[arg-type]
        calls.setdefault(id(m), []).append((int(x.shape[2]), int(x.shape[3])))

    modules = {id(m): m for m in model.modules() if isinstance(m, nn.Conv2d)}
    fp = fingerprint(model)  # before the run, as a fresh instance is (lazy modules not yet shaped)
    handles = [m.register_forward_hook(hook) for m in modules.values()]
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    x = torch.randn(1, *input_shape, device=param.device if param is not None else "cpu")
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            out = model(x)
    except MemoryError:
        raise ModelError(f"the model ran out of memory on a {_shape(input_shape)} input") from None
    except Exception as exc:  # the user's forward: any failure is theirs, said in one line
        if "out of memory" in str(exc).lower():
            raise ModelError(f"the model ran out of memory on a {_shape(input_shape)} input") from None
        raise ModelError(f"the model rejects a {_shape(input_shape)} input: {first_line(exc)}") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1 or not out.is_floating_point():
        what = (f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor)
                else f"a {type(out).__name__}")
        raise ModelError(f"the model must output class logits (a float tensor of shape (batch, N)), got {what}")
    if out.shape[1] < 2:
        raise ModelError(f"the model must output N >= 2 class logits, got {out.shape[1]}")
    flops = counter.get_total_flops()
    convs = []
    first = order[0] if order else None
    for m in order + [m for i, m in modules.items() if i not in calls]:
        mc = calls.get(id(m), [])
        reason = _reason(m)
        if not mc:
            reason = "never called in the forward pass"
        elif not reason and m is first and m.in_channels == input_shape[0] and not include_first:
            reason = "the first convolution reads the image (kept plain, as in the HetConv and SPConv papers)"
        all_names = names[id(m)]
        if not reason and len(mc) > 1 and shared == "refuse":
            raise ModelError(f"convolution {all_names[0]} is called {len(mc)} times in one forward pass "
                             "(a reused module or a loop); refused with shared='refuse'")
        convs.append(ConvInfo(all_names[0], m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0],
                              m.bias is not None, tuple(mc), reason, tuple(all_names[1:])))
    return Trace(tuple(convs), tuple(out.shape[1:]), Cost(count_params(model), flops // 2), fp)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
