"""Input-dependent kernels: CondConv and Dynamic Convolution.

Both mix K expert kernels per sample with weights routed from the globally pooled input:
Yang et al., "CondConv: Conditionally Parameterized Convolutions for Efficient Inference",
NeurIPS 2019 (sigmoid routing) and Chen et al., "Dynamic Convolution: Attention over
Convolution Kernels", CVPR 2020 (softmax attention with a temperature).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, conv_cost, linear_cost, out_size


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_experts(op: str, experts: int) -> None:
    require(op, _is_int(experts) and experts >= 1, "experts", "K must be an integer >= 1", experts=experts)


def _check_temperature(op: str, temperature: float) -> None:
    require(op, _is_real(temperature) and math.isfinite(temperature) and temperature > 0, "temperature",
            "must be a finite number > 0", temperature=temperature)


def attention_hidden(in_channels: int, reduction: int) -> int:
    """Width of dynconv's attention MLP: ``max(c_in // reduction, 4)``."""
    return max(in_channels // reduction, 4)


class _ExpertConv2d(nn.Module):
    """K expert kernels mixed per sample, the whole batch run as one grouped convolution.

    Subclasses define :meth:`routing`, the ``(N, K)`` mixing weights for a batch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, experts: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.experts = kernel_size, stride, experts
        self.weight = nn.Parameter(torch.empty(experts, out_channels, in_channels, kernel_size, kernel_size))
        # each expert starts like an nn.Conv2d weight (fan-in c_in * k * k)
        for expert in self.weight.data:
            nn.init.kaiming_uniform_(expert, a=math.sqrt(5))

    def routing(self, pooled: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _mix_inputs(self, n: int, h: int, w: int) -> bool:
        """Whether a training step takes the mixed-inputs form (see :meth:`forward`): when one
        sample's kernel (c_out x k x k per input channel) outweighs its K scaled copies of the
        input (K x h x w per input channel) by more than 3x, i.e. many channels on small maps."""
        return self.training and n > 1 and torch.is_grad_enabled() and \
            self.out_channels * self.kernel_size ** 2 > 3 * self.experts * h * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        mix = self.routing(x.mean((2, 3)))
        if self._mix_inputs(n, h, w):
            # Training only, same function: conv(x, sum_k a_k W_k) = sum_k conv(a_k x, W_k), one
            # plain convolution over K x c_in channels. It does K times the convolution's MACs but
            # never builds N per-sample kernels, whose grouped convolution (and its backward) is
            # what makes a CPU training step slow on small maps (6-19x at 128-256 channels on 4x4
            # and 2x2 maps, batch 64). Inference, and so the cost this operator declares, always
            # takes the per-sample-kernel form below.
            xs = (x.unsqueeze(1) * mix[:, :, None, None, None]).reshape(n, self.experts * c, h, w)
            weight = self.weight.transpose(0, 1).reshape(
                self.out_channels, self.experts * self.in_channels, self.kernel_size, self.kernel_size)
            return F.conv2d(xs, weight, None, self.stride, self.kernel_size // 2)
        # one (N, K) @ (K, c_out*c_in*k*k) matmul gives every sample's kernel
        kernels = (mix @ self.weight.reshape(self.experts, -1)).reshape(
            n * self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        # samples become groups, so the batch costs one convolution call and no Python loop
        y = F.conv2d(x.reshape(1, n * c, h, w), kernels, None, self.stride, self.kernel_size // 2, 1, n)
        return y.reshape(n, self.out_channels, y.shape[-2], y.shape[-1])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, experts={self.experts}")


class CondConv2d(_ExpertConv2d):
    """CondConv (Yang et al., NeurIPS 2019): sigmoid-routed sum of K expert kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 experts: int = 4) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, experts=experts)
        super().__init__(in_channels, out_channels, kernel_size, stride, experts)
        self.route = nn.Linear(in_channels, experts)

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, *, experts: int = 4) -> None:
        check_conv_args("condconv", in_channels, out_channels, kernel_size, stride)
        _check_experts("condconv", experts)

    def routing(self, pooled: torch.Tensor) -> torch.Tensor:
        # sigmoid, not softmax: experts are not competing, several can be fully on
        return torch.sigmoid(self.route(pooled))


class DynamicConv2d(_ExpertConv2d):
    """Dynamic Convolution (Chen et al., CVPR 2020): softmax attention over K kernels.

    ``temperature`` is a plain attribute; the paper anneals it from 30 to 1 over the first
    epochs so that all kernels train early on (see :func:`set_temperature`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 experts: int = 4, temperature: float = 30.0, reduction: int = 4) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride,
                      experts=experts, temperature=temperature, reduction=reduction)
        super().__init__(in_channels, out_channels, kernel_size, stride, experts)
        self.temperature = float(temperature)
        self.reduction = reduction
        hidden = attention_hidden(in_channels, reduction)
        self.attention = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
                                       nn.Linear(hidden, experts))

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, *, experts: int = 4,
                 temperature: float = 30.0, reduction: int = 4) -> None:
        check_conv_args("dynconv", in_channels, out_channels, kernel_size, stride)
        _check_experts("dynconv", experts)
        _check_temperature("dynconv", temperature)
        require("dynconv", _is_int(reduction) and reduction >= 1, "reduction",
                "must be an integer >= 1", reduction=reduction)

    def routing(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.attention(pooled) / self.temperature, dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}, reduction={self.reduction}"


def set_temperature(model: nn.Module, temperature: float) -> int:
    """Set the attention temperature of every dynconv module in ``model``.

    Returns how many modules it set (0 means the model has no dynconv layer).
    """
    _check_temperature("dynconv", temperature)
    count = 0
    for module in model.modules():
        if isinstance(module, DynamicConv2d):
            module.temperature = float(temperature)
            count += 1
    return count


def _experts_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, experts: int) -> Cost:
    kernel = c_out * c_in * k * k
    conv = conv_cost(c_in, c_out, k, out_size(h, k, stride), out_size(w, k, stride))
    # the K experts are the parameters (the mixed kernel is not one); mixing them is one
    # (1, K) @ (K, kernel) product per image, on top of the convolution itself
    return Cost(experts * kernel, experts * kernel + conv.macs)


def _condconv_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, experts: int) -> Cost:
    return linear_cost(c_in, experts) + _experts_cost(c_in, c_out, k, h, w, stride, experts)


def _dynconv_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, experts: int,
                  temperature: float, reduction: int) -> Cost:
    hidden = attention_hidden(c_in, reduction)
    return (linear_cost(c_in, hidden) + linear_cost(hidden, experts)
            + _experts_cost(c_in, c_out, k, h, w, stride, experts))


register_op(OpSpec(
    "condconv", CondConv2d, _condconv_cost,
    {"experts": Hyper(4, "K: expert kernels mixed per sample by sigmoid routing")},
    "per-sample kernel: sigmoid-routed sum of K experts",
    "Yang et al., CondConv: Conditionally Parameterized Convolutions for Efficient Inference, NeurIPS 2019",
    examples=({"experts": 4}, {"experts": 1}, {"experts": 8}),
))
register_op(OpSpec(
    "dynconv", DynamicConv2d, _dynconv_cost,
    {
        "experts": Hyper(4, "K: kernels aggregated per sample by softmax attention"),
        "temperature": Hyper(30.0, "softmax temperature at build time; training anneals it (30 -> 1)", float),
        "reduction": Hyper(4, "attention MLP width is max(c_in // reduction, 4)"),
    },
    "per-sample kernel: softmax attention over K kernels",
    "Chen et al., Dynamic Convolution: Attention over Convolution Kernels, CVPR 2020",
    examples=({"experts": 4, "temperature": 30.0, "reduction": 4},
              {"experts": 4, "temperature": 1.0, "reduction": 4},
              {"experts": 8, "temperature": 30.0, "reduction": 16}),
))
