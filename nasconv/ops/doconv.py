"""DO-Conv: a conv over-parameterised by a depthwise kernel, folded into one conv at inference.

Cao et al., "DO-Conv: Depthwise Over-parameterized Convolutional Layer", 2020.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, conv_cost, out_size


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def resolve_depth_multiplier(kernel_size: int, depth_multiplier: int | None) -> int:
    """``D_mul``; ``None`` means ``k * k`` (the smallest value that loses no expressiveness)."""
    return kernel_size * kernel_size if depth_multiplier is None else depth_multiplier


class DOConv2d(nn.Module):
    """Depthwise over-parameterised conv (Cao et al., 2020) as a drop-in for a ``k x k`` conv.

    Trainable ``W`` (``weight``: c_out x c_in x D_mul) and ``D`` (c_in x k*k x D_mul) compose
    into the conv kernel ``W'[o, c, m] = sum_d D[c, m, d] W[o, c, d]``. ``D = I + depthwise``
    with ``depthwise`` zero-initialised (a fixed identity buffer, as in the paper's code), so
    training starts exactly like a plain conv and weight decay pulls D towards the identity.

    Training recomputes ``W'`` every forward (gradients reach both D and W). Eval mode caches
    ``W'`` and recomputes it only when a parameter changed (tensor versions and storage are
    checked; ``train()``/``eval()`` also drop the cache, which covers writes through
    ``.data``). The eval-mode composition uses element-wise ops: it is a one-off weight
    transform, like folding BN, so eval MACs per image are those of the plain conv.
    :meth:`fold` returns that plain ``nn.Conv2d`` for export.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 depth_multiplier: int | None = None) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, depth_multiplier=depth_multiplier)
        super().__init__()
        d_mul = resolve_depth_multiplier(kernel_size, depth_multiplier)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.depth_multiplier = kernel_size, stride, d_mul
        kk = kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, d_mul))
        self.depthwise = nn.Parameter(torch.zeros(in_channels, kk, d_mul))
        # (k*k, D_mul) identity, shared by every input channel; derived, so not in state dicts
        self.register_buffer("identity", torch.eye(kk, d_mul), persistent=False)
        # nn.Conv2d's default bound (kaiming_uniform_, a=sqrt(5)) for fan-in c_in*k*k: with D = I
        # the composed kernel is distributed exactly like a fresh conv's, whatever D_mul is.
        bound = 1.0 / math.sqrt(in_channels * kk)
        nn.init.uniform_(self.weight, -bound, bound)
        self._cache: torch.Tensor | None = None
        self._cache_key: tuple | None = None

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
                 depth_multiplier: int | None = None) -> None:
        check_conv_args("doconv", in_channels, out_channels, kernel_size, stride)
        require("doconv", depth_multiplier is None or _is_count(depth_multiplier), "depth_multiplier",
                "D_mul must be an integer or None (k*k)", depth_multiplier=depth_multiplier)
        d_mul = resolve_depth_multiplier(kernel_size, depth_multiplier)
        require("doconv", d_mul >= kernel_size * kernel_size, "depth_multiplier",
                "D_mul must be >= kernel_size**2 (else D o W cannot represent every k x k kernel)",
                depth_multiplier=depth_multiplier, kernel_size=kernel_size)

    # --- composition ------------------------------------------------------------------------

    def _d(self) -> torch.Tensor:
        return self.depthwise + self.identity

    def _shape(self, composed: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return composed.reshape(self.out_channels, self.in_channels, k, k)

    def _compose_matmul(self) -> torch.Tensor:
        # one batched matmul over input channels: (c, o, d) @ (c, d, m)
        return self._shape(torch.einsum("cmd,ocd->ocm", self._d(), self.weight))

    def _compose_elementwise(self) -> torch.Tensor:
        # the same sum, accumulated over D_mul so that peak memory stays at one kernel
        d, w = self._d(), self.weight
        composed = w[:, :, 0, None] * d[None, :, :, 0]
        for i in range(1, self.depth_multiplier):
            composed = composed + w[:, :, i, None] * d[None, :, :, i]
        return self._shape(composed)

    def _key(self) -> tuple:
        return tuple((p._version, p.data_ptr(), p.dtype, p.device)
                     for p in (self.weight, self.depthwise, self.identity))

    def composed_weight(self) -> torch.Tensor:
        """The ``c_out x c_in x k x k`` kernel ``D o W`` (cached, no autograd graph)."""
        key = self._key()
        if self._cache is None or self._cache_key != key:
            with torch.no_grad():
                self._cache = self._compose_elementwise()
            self._cache_key = key
        return self._cache

    def train(self, mode: bool = True) -> "DOConv2d":
        self._cache, self._cache_key = None, None
        return super().train(mode)

    def fold(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` (bias-free, same stride and padding) with the composed kernel."""
        weight = self.composed_weight()
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                         padding=self.kernel_size // 2, bias=False, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(weight)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            weight = self._compose_matmul()
        elif torch.is_grad_enabled() and (self.weight.requires_grad or self.depthwise.requires_grad):
            # eval mode but someone wants gradients (e.g. frozen BN fine-tuning): no cache
            weight = self._compose_elementwise()
        else:
            weight = self.composed_weight()
        return F.conv2d(x, weight, None, self.stride, self.kernel_size // 2)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, depth_multiplier={self.depth_multiplier}")


def _doconv_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int,
                 depth_multiplier: int | None = None) -> Cost:
    d_mul = resolve_depth_multiplier(k, depth_multiplier)
    conv = conv_cost(c_in, c_out, k, out_size(h, k, stride), out_size(w, k, stride))
    # parameters: W and D (the over-parameterisation is real); MACs: the folded plain conv
    return Cost(c_out * c_in * d_mul + c_in * k * k * d_mul, conv.macs)


register_op(OpSpec(
    "doconv", DOConv2d, _doconv_cost,
    {"depth_multiplier": Hyper(None, "D_mul: depth of the depthwise over-parameterisation, >= k*k; "
                                     "None means k*k")},
    "depthwise over-parameterised conv (folds to a plain conv for inference)",
    "Cao et al., DO-Conv: Depthwise Over-parameterized Convolutional Layer, 2020",
    examples=({}, {"depth_multiplier": 18}),
))
