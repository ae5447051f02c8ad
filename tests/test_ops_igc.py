"""IGCV1 (Zhang et al., ICCV 2017): L/M derivation, cost formula, partition reference, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasconv.errors import HyperparameterError
from nasconv.flops import measure_cost
from nasconv.ops import Cost, create_op, get_op, op_cost


def test_registry_defaults():
    hyper = get_op("igc").hyper
    assert hyper["L"].default is None and hyper["M"].default == 2


@pytest.mark.parametrize("hyper,L,M", [
    ({}, 32, 2),
    ({"M": 4}, 16, 4),
    ({"L": 8, "M": None}, 8, 8),
    ({"L": 16, "M": 4}, 16, 4),
    ({"M": 1}, 64, 1),
    ({"L": 1, "M": None}, 1, 64),
])
def test_partitions_derived(hyper, L, M):
    layer = create_op("igc", 64, 64, **hyper)
    assert (layer.L, layer.M) == (L, M)


def test_constructor_defaults_without_registry():
    from nasconv.ops.igc import InterleavedGroupConv2d

    assert (InterleavedGroupConv2d(64, 64).L, InterleavedGroupConv2d(64, 64).M) == (32, 2)
    assert InterleavedGroupConv2d(64, 64, L=8).M == 8


def test_cost_formula():
    # primary: c_in * M * k^2 ; secondary: c_out * L
    assert op_cost("igc", 256, 256, 3, 14, 14).params == 256 * 2 * 9 + 256 * 128 == 37_376
    assert op_cost("igc", 256, 256, 3, 14, 14).macs == 37_376 * 14 * 14
    assert op_cost("igc", 64, 64, 3, 8, 8, M=4) == Cost(3_328, 3_328 * 64)
    layer = create_op("igc", 64, 128, 5, 2, L=8, M=None)
    assert measure_cost(layer, (64, 9, 9)) == Cost(64 * 8 * 25 + 128 * 8, (64 * 8 * 25 + 128 * 8) * 25)


def _partition_reference(x: torch.Tensor, layer) -> torch.Tensor:
    """IGCV1 written out partition by partition."""
    L, M, k, s = layer.L, layer.M, layer.kernel_size, layer.stride
    c_out = layer.out_channels
    primary = torch.cat([
        F.conv2d(x[:, p * M:(p + 1) * M], layer.primary_weight[p * M:(p + 1) * M], None, s, k // 2)
        for p in range(L)
    ], dim=1)
    out = torch.empty(x.shape[0], c_out, *primary.shape[-2:])
    per = c_out // M
    for m in range(M):
        members = [p * M + m for p in range(L)]  # channel m of every primary partition
        y = F.conv2d(primary[:, members], layer.secondary_weight[m * per:(m + 1) * per])
        out[:, [t * M + m for t in range(per)]] = y  # permutation back
    return out


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c_in,c_out,hyper", [
    (16, 16, {}), (16, 32, {"M": 4}), (24, 16, {"L": 3, "M": None}), (8, 8, {"M": 1}), (8, 16, {"L": 1, "M": None}),
])
def test_matches_partition_reference(c_in, c_out, hyper, stride):
    layer = create_op("igc", c_in, c_out, 3, stride, **hyper)
    x = torch.randn(2, c_in, 9, 8)
    with torch.no_grad():
        ref = _partition_reference(x, layer)
        torch.testing.assert_close(layer(x), ref, rtol=1e-4, atol=1e-5)
        cl = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(layer(cl), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hyper,key,rule", [
    ({"M": 3}, "M", "M must divide in_channels"),
    ({"L": 3, "M": None}, "L", "L must divide in_channels"),
    ({"L": 8, "M": 4}, "L", r"L\*M must equal in_channels"),
    ({"L": 8}, "L", r"L\*M must equal in_channels \(pass M=None"),
    ({"M": 0}, "M", "integer >= 1"),
    ({"M": 2.0}, "M", "integer >= 1"),
    ({"L": 0, "M": None}, "L", "integer >= 1"),
    ({"L": True, "M": None}, "L", "integer >= 1"),
    ({"M": 128}, "M", "M must divide in_channels"),
])
def test_bad_partitions(hyper, key, rule):
    with pytest.raises(HyperparameterError, match=rf"^igc: {key}: .*{rule}"):
        create_op("igc", 64, 64, **hyper)
    with pytest.raises(HyperparameterError, match=rf"^igc: {key}: "):
        op_cost("igc", 64, 64, 3, 8, 8, **hyper)


def test_out_channels_must_split_into_m_partitions():
    with pytest.raises(HyperparameterError, match=r"^igc: M: M must divide out_channels.*out_channels=30"):
        create_op("igc", 64, 30, M=4)
