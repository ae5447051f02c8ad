"""Measured cost: what PyTorch itself counts, the reference the analytic model must equal."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasconv.ops.complexity import Cost


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure_cost(module: nn.Module, input_shape: tuple[int, ...], *, batch: int = 1) -> Cost:
    """Parameters (sum of numel) and MACs per image (FlopCounterMode FLOPs / 2 / batch).

    ``input_shape`` is ``(C, H, W)``; the module is run in eval mode on random input on the
    module's device. A module built on the ``meta`` device is counted without any arithmetic:
    ``with torch.device("meta"): model = build_model(arch)``.
    """
    was_training = module.training
    module.eval()
    param = next(module.parameters(), None)
    x = torch.randn(batch, *input_shape, device=param.device if param is not None else "cpu")
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            module(x)
    finally:
        module.train(was_training)
    flops = counter.get_total_flops()
    if flops % (2 * batch):
        raise AssertionError(f"FLOP count {flops} is not a multiple of 2 x batch ({batch})")
    return Cost(count_params(module), flops // (2 * batch))
