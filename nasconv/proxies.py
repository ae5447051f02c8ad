"""Zero-cost proxies: score an untrained network from one minibatch, no training.

``synflow`` (Tanaka et al., 2020), ``naswot`` (Mellor et al., 2021), ``grad_norm`` (Abdelfattah
et al., 2021), and ``params``, the baseline the zero-cost NAS literature says they must beat.
Higher is better for each.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasconv.errors import UnknownNameError, UsageError

ZERO_COST_PROXIES = ("synflow", "naswot", "grad_norm", "params")


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """log of sum |theta * dR/dtheta| for R = sum of the output of the |theta|-network on all-ones.

    Computed in float64 (the product of many layers overflows float32) on a copy with absolute
    weights, in eval mode so that batch norm is an affine map as the method assumes.
    """
    net = _copy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1,) + tuple(x.shape[1:]), dtype=torch.float64, device=x.device)
    net.zero_grad(set_to_none=True)
    net(ones).sum().backward()
    with torch.no_grad():
        total = sum(float((p * p.grad).abs().sum()) for p in net.parameters() if p.grad is not None)
    return math.log(total) if total > 0 else float("-inf")


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """log|K_H|, K_H the Hamming-similarity kernel of the ReLU on/off codes over the minibatch."""
    net = _copy(model).train()
    codes: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        codes.append((out.detach().flatten(1) > 0).double())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    if not codes:
        raise UsageError("naswot reads the on/off codes of nn.ReLU modules and this network has none (it calls "
                         "relu as a function); score it with --proxy grad_norm or train it (--proxy train)")
    c = torch.cat(codes, dim=1)
    k = c @ c.t() + (1 - c) @ (1 - c).t()
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if sign > 0 else float("-inf")


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over parameters of the L2 norm of the cross-entropy gradient on one minibatch."""
    net = _copy(model).train()
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    with torch.no_grad():
        return float(sum(p.grad.norm() for p in net.parameters() if p.grad is not None))


def params(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(sum(p.numel() for p in model.parameters()))


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


_PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "synflow": synflow, "naswot": naswot, "grad_norm": grad_norm, "params": params,
}


def zero_cost_score(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    try:
        fn = _PROXIES[name]
    except KeyError:
        raise UnknownNameError("zero-cost proxy", name, ZERO_COST_PROXIES) from None
    return fn(model, x, y)
