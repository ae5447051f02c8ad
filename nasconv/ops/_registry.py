"""Operator registry: name -> constructor, analytic cost and hyperparameter domain.

Each operator family lives in its own module and registers an :class:`OpSpec` at import
time; :mod:`nasconv.ops` imports them all. Adding an operator = adding one file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from nasconv.errors import HyperparameterError, UnknownNameError
from nasconv.ops.complexity import Cost


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter of an operator: its default and what it means."""

    default: Any
    doc: str
    type: type = int


@dataclass(frozen=True)
class OpSpec:
    """What the registry knows about one operator.

    ``cls(in_channels, out_channels, kernel_size=3, stride=1, **hyper)`` builds it;
    ``cost(in_channels, out_channels, kernel_size, height, width, stride, **hyper)`` returns
    its exact :class:`Cost` for one ``height x width`` input image without building it.
    ``cls.validate(in_channels, out_channels, kernel_size, stride, **hyper)`` raises
    :class:`HyperparameterError` for hyperparameters that break the operator's rules.
    """

    name: str
    cls: type[nn.Module]
    cost: Callable[..., Cost]
    hyper: dict[str, Hyper] = field(default_factory=dict)
    summary: str = ""
    paper: str = ""
    #: hyperparameter settings that tests and benchmarks run (the first is the default row)
    examples: tuple[dict[str, Any], ...] = ({},)


_REGISTRY: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"operator {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def list_ops() -> list[str]:
    """Names of every registered operator, in registration order."""
    return list(_REGISTRY)


def get_op(name: str) -> OpSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("operator", name, list_ops()) from None


def _check_hyper(spec: OpSpec, hyper: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(hyper) - set(spec.hyper))
    if unknown:
        accepted = ", ".join(spec.hyper) or "none"
        exc = HyperparameterError(f"{spec.name}: unknown hyperparameter {unknown[0]!r}; accepted: {accepted}")
        exc.key = unknown[0]
        raise exc
    return {k: hyper.get(k, h.default) for k, h in spec.hyper.items()}


def validate_op(
    name: str, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, **hyper: Any
) -> dict[str, Any]:
    """Check hyperparameters for a shape; return them completed with defaults."""
    spec = get_op(name)
    full = _check_hyper(spec, hyper)
    spec.cls.validate(in_channels, out_channels, kernel_size, stride, **full)
    return full


def create_op(
    name: str, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, **hyper: Any
) -> nn.Module:
    """Build operator ``name`` as a drop-in for ``nn.Conv2d(..., padding=k//2, bias=False)``."""
    spec = get_op(name)
    full = _check_hyper(spec, hyper)
    return spec.cls(in_channels, out_channels, kernel_size, stride, **full)


def op_cost(
    name: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    height: int,
    width: int,
    stride: int = 1,
    **hyper: Any,
) -> Cost:
    """Exact params and MACs of one operator applied to one ``height x width`` image."""
    # The value's type is part of the key: 2.0 == 2 (and True == 1) for the cache, not for the
    # operators' rules, which refuse a float where an integer is required.
    return _op_cost_cached(name, in_channels, out_channels, kernel_size, height, width, stride,
                           tuple(sorted((k, type(v).__name__, v) for k, v in hyper.items())))


def clear_op_cost_cache() -> None:
    """Forget every cached :func:`op_cost` (to time the cost model cold)."""
    _op_cost_cached.cache_clear()


@functools.lru_cache(maxsize=65536)
def _op_cost_cached(name, in_channels, out_channels, kernel_size, height, width, stride, hyper):
    spec = get_op(name)
    full = validate_op(name, in_channels, out_channels, kernel_size, stride, **{k: v for k, _, v in hyper})
    return spec.cost(in_channels, out_channels, kernel_size, height, width, stride, **full)


# --- small helpers shared by the operator files -------------------------------------------


def check_conv_args(op: str, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
    for key, value in (("in_channels", in_channels), ("out_channels", out_channels),
                       ("kernel_size", kernel_size), ("stride", stride)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise HyperparameterError(f"{op}: {key} must be a positive integer, got {value!r}")
    if kernel_size % 2 == 0:
        raise HyperparameterError(f"{op}: kernel_size must be odd (padding k//2 keeps the size), got {kernel_size}")


def require(op: str, ok: bool, key: str, rule: str, **values: Any) -> None:
    """Raise the operator's ``HyperparameterError`` naming the hyperparameter and the rule."""
    if not ok:
        got = ", ".join(f"{k}={v!r}" for k, v in values.items())
        exc = HyperparameterError(f"{op}: {key}: {rule}, but got {got}")
        exc.key = key  # lets a space file error name the key path (stages[2].choices[4].blocks)
        raise exc
