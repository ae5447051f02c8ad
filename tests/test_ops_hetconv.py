"""HetConv (Singh et al., CVPR 2019): paper's cost formula, dense equivalent, P=1 reduction, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasconv.errors import HyperparameterError
from nasconv.flops import measure_cost
from nasconv.ops import Cost, create_op, op_cost


def _paper_params(c_in: int, c_out: int, k: int, p: int) -> int:
    # c_in * c_out * (k^2/P + 1 - 1/P), kept in integers
    return c_in * c_out * (k * k + p - 1) // p


def test_paper_formula_256():
    cost = op_cost("hetconv", 256, 256, 3, 14, 14, part=4)
    assert cost.params == 196_608 == _paper_params(256, 256, 3, 4)
    assert cost.macs == 196_608 * 14 * 14
    assert op_cost("hetconv", 256, 256, 3, 14, 14, 2, part=4).macs == 196_608 * 7 * 7


@pytest.mark.parametrize("c_in,c_out,k,p,stride", [
    (64, 128, 3, 8, 1), (128, 64, 5, 4, 2), (32, 32, 3, 32, 1), (48, 96, 1, 2, 2), (16, 16, 3, 1, 2),
])
def test_measured_cost_matches_formula(c_in, c_out, k, p, stride):
    layer = create_op("hetconv", c_in, c_out, k, stride, part=p)
    ho = (9 - 1) // stride + 1
    expected = _paper_params(c_in, c_out, k, p)
    assert measure_cost(layer, (c_in, 9, 9)) == Cost(expected, expected * ho * ho)


def _dense_weight(layer: nn.Module) -> torch.Tensor:
    """The plain conv weight HetConv equals: filter j is k x k on channels i = j (mod P), 1 x 1 elsewhere."""
    c_out, c_in, k, p = layer.out_channels, layer.in_channels, layer.kernel_size, layer.part
    cin_p, cout_p = c_in // p, c_out // p
    dense = torch.zeros(c_out, c_in, k, k)
    for j in range(c_out):
        r = j % p
        o = r * cout_p + j // p  # row of filter j in the grouped weights
        for i in range(c_in):
            q = i % p
            if q == r:
                dense[j, i] = layer.weight[o, i // p]
            else:
                qi = q if q < r else q - 1  # classes other than r, in increasing order
                dense[j, i, k // 2, k // 2] = layer.pointwise_weight[o, qi * cin_p + i // p, 0, 0]
    return dense


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c_in,c_out,k,p", [(16, 24, 3, 4), (12, 8, 3, 2), (8, 16, 5, 8), (8, 8, 1, 4)])
def test_equals_dense_conv_with_heterogeneous_filters(c_in, c_out, k, p, stride):
    layer = create_op("hetconv", c_in, c_out, k, stride, part=p)
    with torch.no_grad():
        dense = _dense_weight(layer)
    x = torch.randn(2, c_in, 11, 10)
    ref = F.conv2d(x, dense, None, stride, k // 2)
    torch.testing.assert_close(layer(x), ref, rtol=1e-4, atol=1e-5)
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(layer(cl), ref, rtol=1e-4, atol=1e-5)


def test_kxk_positions_shift_between_filters():
    layer = create_op("hetconv", 8, 8, 3, part=4)
    with torch.no_grad():
        dense = _dense_weight(layer)
    # An input channel of class q has a full k x k kernel exactly in filters j = q (mod P).
    has_kxk = (dense[:, :, 0, 0] != 0)
    for j in range(8):
        assert has_kxk[j].nonzero().flatten().tolist() == [j % 4, j % 4 + 4]


@pytest.mark.parametrize("stride", [1, 2])
def test_part_one_is_plain_conv(stride):
    layer = create_op("hetconv", 16, 24, 3, stride, part=1)
    assert layer.pointwise_weight is None
    ref = nn.Conv2d(16, 24, 3, stride, 1, bias=False)
    ref.weight.data.copy_(layer.weight.data)
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(layer(x), ref(x))


def test_state_dict_holds_only_weights():
    assert set(create_op("hetconv", 16, 16, part=4).state_dict()) == {"weight", "pointwise_weight"}


@pytest.mark.parametrize("bad,rule", [
    ({"part": 0}, "integer >= 1"),
    ({"part": -4}, "integer >= 1"),
    ({"part": 2.0}, "integer >= 1"),
    ({"part": 3}, "must divide"),
    ({"part": 128}, "must not exceed"),
])
def test_bad_part(bad, rule):
    with pytest.raises(HyperparameterError, match=rf"^hetconv: part: .*{rule}"):
        create_op("hetconv", 64, 64, **bad)
    with pytest.raises(HyperparameterError, match=r"^hetconv: part: "):
        op_cost("hetconv", 64, 64, 3, 8, 8, **bad)


def test_part_must_divide_out_channels():
    with pytest.raises(HyperparameterError, match=r"hetconv: part: P must divide .*out_channels=36"):
        create_op("hetconv", 64, 36, part=8)
