"""Ghost, DO-Conv, SCConv, involution, split attention, IGCV3: formulas, reference passes, rules."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nasconv.errors import HyperparameterError
from nasconv.flops import measure_cost
from nasconv.ops import Cost, create_op, op_cost
from nasconv.ops.complexity import out_size

OPS = ["ghost", "doconv", "scconv", "involution", "splat", "igcv3"]


def _n_params(layer: nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


def _randomise_bn(layer: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so that eval-mode BN is not the identity."""
    with torch.no_grad():
        for m in layer.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def _bn(t: torch.Tensor, m: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


# --- every operator: odd sizes with stride 2 -------------------------------------------------


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("size", [(9, 9), (7, 10), (3, 5), (1, 1)])
def test_stride_2_odd_sizes_shape_and_cost(name, size):
    h, w = size
    layer = create_op(name, 32, 48, 3, 2).eval()
    with torch.no_grad():
        y = layer(torch.randn(2, 32, h, w))
    assert y.shape == (2, 48, out_size(h, 3, 2), out_size(w, 3, 2))
    assert op_cost(name, 32, 48, 3, h, w, 2) == measure_cost(layer, (32, h, w), batch=2)


# --- ghost -------------------------------------------------------------------------------------


def test_ghost_params_formula():
    # m = 32 intrinsic: 3x3 conv 64*32*9 + BN; 32 ghosts: depthwise 3x3 32*9 + BN
    expected = 64 * 32 * 9 + 2 * 32 + 32 * 9 + 2 * 32
    assert op_cost("ghost", 64, 64, 3, 8, 8, 2).params == expected == 18848
    assert _n_params(create_op("ghost", 64, 64, 3, 2)) == expected


def test_ghost_ratio_3_computes_discarded_ghosts():
    # c_out 32, s 3: m = 11, 22 ghosts, 33 maps sliced to 32; the 33rd is still computed
    c = op_cost("ghost", 16, 32, 3, 8, 8, ratio=3, dw_kernel=5)
    assert c.macs == 64 * (16 * 11 * 9 + 22 * 25)
    assert c.params == 16 * 11 * 9 + 2 * 11 + 22 * 25 + 2 * 22
    layer = create_op("ghost", 16, 32, 3, ratio=3, dw_kernel=5)
    assert c == measure_cost(layer, (16, 8, 8), batch=2)


@pytest.mark.parametrize("stride", [1, 2])
def test_ghost_ratio_1_is_conv_bn_relu(stride):
    layer = create_op("ghost", 16, 24, 3, stride, ratio=1).eval()
    _randomise_bn(layer)
    assert layer.cheap is None
    conv, bn = layer.primary[0], layer.primary[1]
    x = torch.randn(2, 16, 9, 9)
    ref = F.relu(_bn(F.conv2d(x, conv.weight, None, stride, 1), bn))
    torch.testing.assert_close(layer(x), ref)
    # the plain conv's cost plus the BN's 2 * c_out parameters
    assert op_cost("ghost", 16, 24, 3, 9, 9, stride, ratio=1) == \
        op_cost("standard", 16, 24, 3, 9, 9, stride) + Cost(2 * 24, 0)


def test_ghost_intrinsic_then_ghost_maps():
    layer = create_op("ghost", 16, 24, 3, 2, ratio=2, dw_kernel=3).eval()
    _randomise_bn(layer)
    x = torch.randn(2, 16, 9, 9)
    intrinsic = F.relu(_bn(F.conv2d(x, layer.primary[0].weight, None, 2, 1), layer.primary[1]))
    ghosts = F.relu(_bn(F.conv2d(intrinsic, layer.cheap[0].weight, None, 1, 1, 1, 12), layer.cheap[1]))
    torch.testing.assert_close(layer(x), torch.cat((intrinsic, ghosts), 1))


@pytest.mark.parametrize("bad,key", [
    ({"ratio": 0}, "ratio"), ({"ratio": 1.5}, "ratio"), ({"ratio": 65}, "ratio"),
    ({"dw_kernel": 2}, "dw_kernel"), ({"dw_kernel": 0}, "dw_kernel"),
])
def test_ghost_bad_hyperparameters(bad, key):
    with pytest.raises(HyperparameterError, match=rf"^ghost: {key}: "):
        create_op("ghost", 64, 64, **bad)


# --- doconv ------------------------------------------------------------------------------------


def test_doconv_params_formula():
    # W 64 x 64 x D_mul + D 64 x 9 x D_mul; MACs of the plain conv whatever D_mul is
    assert op_cost("doconv", 64, 64, 3, 8, 8).params == 64 * 64 * 9 + 64 * 9 * 9 == 42048
    assert op_cost("doconv", 64, 64, 3, 8, 8, depth_multiplier=18).params == 64 * 64 * 18 + 64 * 9 * 18
    assert _n_params(create_op("doconv", 64, 64, depth_multiplier=18)) == 64 * 64 * 18 + 64 * 9 * 18
    assert op_cost("doconv", 64, 64, 3, 8, 8, depth_multiplier=18).macs == op_cost("standard", 64, 64, 3, 8, 8).macs


def _perturb(layer: nn.Module) -> None:
    with torch.no_grad():
        layer.depthwise.normal_(0, 0.1)


@pytest.mark.parametrize("stride,size,d_mul", [(1, (8, 8), None), (2, (9, 7), None), (2, (5, 5), 12)])
def test_doconv_eval_equals_fold_and_costs_a_plain_conv(stride, size, d_mul):
    h, w = size
    layer = create_op("doconv", 16, 24, 3, stride, depth_multiplier=d_mul)
    _perturb(layer)
    layer.eval()
    folded = layer.fold()
    assert type(folded) is nn.Conv2d and folded.bias is None
    x = torch.randn(2, 16, h, w)
    with torch.no_grad():
        assert (layer(x) - folded(x)).abs().max().item() < 1e-5
    measured = measure_cost(layer, (16, h, w), batch=2)
    assert measured.macs == op_cost("standard", 16, 24, 3, h, w, stride).macs
    assert measured == op_cost("doconv", 16, 24, 3, h, w, stride, depth_multiplier=d_mul)


def test_doconv_starts_as_plain_conv():
    layer = create_op("doconv", 8, 12, 3, depth_multiplier=11)
    x = torch.randn(2, 8, 6, 6)
    plain = layer.weight[:, :, :9].reshape(12, 8, 3, 3)
    torch.testing.assert_close(layer(x), F.conv2d(x, plain, None, 1, 1))


def test_doconv_training_composition_matches_eval_composition():
    layer = create_op("doconv", 8, 12, 5, depth_multiplier=30)
    _perturb(layer)
    x = torch.randn(2, 8, 7, 7)
    train_out = layer(x)
    layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), train_out, rtol=1e-5, atol=1e-5)


def test_doconv_training_updates_both_factors_and_cache_follows():
    layer = create_op("doconv", 8, 8, 3)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(4, 8, 6, 6)
    layer(x).square().mean().backward()
    assert layer.depthwise.grad.abs().sum() > 0 and layer.weight.grad.abs().sum() > 0
    opt.step()
    layer.eval()
    with torch.no_grad():
        before = layer(x)
        assert layer(x) is not before and torch.equal(layer(x), before)   # cached kernel reused
        layer.weight.mul_(2.0)                                            # in-place change: new version
        after = layer(x)
    torch.testing.assert_close(after, 2 * before)
    torch.testing.assert_close(after, layer.fold()(x))


def test_doconv_eval_with_grad_enabled_still_trains():
    layer = create_op("doconv", 8, 8, 3).eval()
    _perturb(layer)
    layer(torch.randn(2, 8, 5, 5)).sum().backward()
    assert layer.weight.grad is not None and layer.depthwise.grad is not None


@pytest.mark.parametrize("bad", [{"depth_multiplier": 8}, {"depth_multiplier": 0},
                                 {"depth_multiplier": 9.0}, {"depth_multiplier": True}])
def test_doconv_bad_depth_multiplier(bad):
    with pytest.raises(HyperparameterError, match=r"^doconv: depth_multiplier: "):
        create_op("doconv", 64, 64, 3, **bad)


def test_doconv_depth_multiplier_rule_follows_kernel_size():
    create_op("doconv", 8, 8, 1, depth_multiplier=1)
    with pytest.raises(HyperparameterError, match=r"^doconv: depth_multiplier: .*>= kernel_size\*\*2"):
        create_op("doconv", 8, 8, 5, depth_multiplier=18)


# --- scconv ------------------------------------------------------------------------------------


def test_scconv_params_and_macs_formula():
    # four 3x3 convs 32 -> 32 (9216 weights each) and four BNs of 32 channels
    assert op_cost("scconv", 64, 64, 3, 8, 8).params == 4 * 9216 + 4 * 64 == 37120
    assert _n_params(create_op("scconv", 64, 64)) == 37120
    # K1, K3, K4 at 8 x 8; K2 on the 2 x 2 pooled map
    assert op_cost("scconv", 64, 64, 3, 8, 8).macs == 9216 * (3 * 64 + 4)
    # stride 2 on 9 x 9, r 4: K1, K4 at 5 x 5, K3 at 9 x 9, K2 at 3 x 3 (ceil)
    assert op_cost("scconv", 64, 64, 3, 9, 9, 2).macs == 9216 * (2 * 25 + 81 + 9)


def _scconv_reference(layer, x):
    half, s, r = layer.in_channels // 2, layer.stride, layer.pooling_r
    x1, x2 = x[:, :half], x[:, half:]

    def cbn(seq, t, stride=1):
        return _bn(F.conv2d(t, seq[0].weight, None, stride, seq[0].padding), seq[1])

    pooled = F.avg_pool2d(x1, r, r, ceil_mode=True)
    up = F.interpolate(cbn(layer.k2, pooled), size=x1.shape[-2:], mode="nearest")
    y1 = cbn(layer.k4, cbn(layer.k3, x1) * torch.sigmoid(x1 + up), s)
    return torch.cat((y1, cbn(layer.k1, x2, s)), 1)


@pytest.mark.parametrize("stride,size,r", [(1, (8, 8), 4), (2, (9, 11), 4), (2, (3, 3), 4), (1, (6, 5), 1)])
def test_scconv_matches_reference(stride, size, r):
    layer = create_op("scconv", 16, 24, 3, stride, pooling_r=r).eval()
    _randomise_bn(layer)
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _scconv_reference(layer, x))


@pytest.mark.parametrize("shape,bad,key", [
    ((63, 64), {}, "in_channels"), ((64, 63), {}, "out_channels"),
    ((64, 64), {"pooling_r": 0}, "pooling_r"), ((64, 64), {"pooling_r": 1.5}, "pooling_r"),
])
def test_scconv_bad_hyperparameters(shape, bad, key):
    with pytest.raises(HyperparameterError, match=rf"^scconv: {key}: "):
        create_op("scconv", *shape, **bad)


# --- involution --------------------------------------------------------------------------------


def test_involution_params_and_macs_formula():
    # G = 4, generator 64 -> 16 (+BN) -> 36 (+bias); 64 -> 128 adds a 1x1 projection
    gen = 64 * 16 + 2 * 16 + 16 * 36 + 36
    assert op_cost("involution", 64, 64, 3, 8, 8).params == gen == 1668
    assert op_cost("involution", 64, 128, 3, 8, 8).params == gen + 64 * 128
    assert _n_params(create_op("involution", 64, 128)) == gen + 64 * 128
    # generator + the counted multiply-sum (64 channels x 9 taps per pixel)
    assert op_cost("involution", 64, 64, 3, 8, 8).macs == 64 * (64 * 16 + 16 * 36 + 64 * 9)


def _involution_reference(layer, x):
    """Per pixel p and channel c of group g: out[c, p] = sum_k x[c, p + offset_k] * kernel[g, k, p]."""
    n, c, h, w = x.shape
    K, G, s = layer.kernel, layer.groups, layer.stride
    pooled = F.avg_pool2d(x, s, s, ceil_mode=True) if s > 1 else x
    hidden = F.relu(_bn(F.conv2d(pooled, layer.reduce[0].weight), layer.reduce[1]))
    kernels = F.conv2d(hidden, layer.span.weight, layer.span.bias)        # (n, G*K*K, ho, wo)
    ho, wo = kernels.shape[-2:]
    padded = F.pad(x, (K // 2,) * 4)
    out = torch.zeros(n, c, ho, wo)
    for i in range(K):
        for j in range(K):
            window = padded[:, :, i: i + s * (ho - 1) + 1: s, j: j + s * (wo - 1) + 1: s]
            tap = kernels[:, i * K + j:: K * K][:, :G]                     # channel g*K*K + tap
            out += window * tap.repeat_interleave(c // G, dim=1)
    return out


@pytest.mark.parametrize("stride,size,kernel", [(1, (6, 6), None), (2, (9, 7), None), (2, (5, 5), 5),
                                                (1, (4, 4), 1)])
def test_involution_matches_reference(stride, size, kernel):
    layer = create_op("involution", 16, 16, 3, stride, kernel=kernel, group_channels=4).eval()
    _randomise_bn(layer)
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _involution_reference(layer, x), rtol=1e-4, atol=1e-5)


def test_involution_large_kernel_and_projection_cost():
    layer = create_op("involution", 32, 48, 3, 2, kernel=7, group_channels=8, reduction=2)
    assert op_cost("involution", 32, 48, 3, 9, 9, 2, kernel=7, group_channels=8, reduction=2) == \
        measure_cost(layer, (32, 9, 9), batch=2)


@pytest.mark.parametrize("bad,key", [
    ({"group_channels": 5}, "group_channels"), ({"group_channels": 0}, "group_channels"),
    ({"kernel": 4}, "kernel"), ({"kernel": 0}, "kernel"),
    ({"reduction": 0}, "reduction"), ({"reduction": 128}, "reduction"),
])
def test_involution_bad_hyperparameters(bad, key):
    with pytest.raises(HyperparameterError, match=rf"^involution: {key}: "):
        create_op("involution", 64, 64, **bad)


# --- splat -------------------------------------------------------------------------------------


def test_splat_params_formula():
    # inter = max(64*2//4, 32) = 32; grouped conv 128 x 32 x 9 (+BN); fc1 64 -> 32 (+BN); fc2 32 -> 128 (+bias)
    expected = 128 * 32 * 9 + 2 * 128 + 64 * 32 + 2 * 32 + 32 * 128 + 128
    assert op_cost("splat", 64, 64, 3, 8, 8).params == expected == 43456
    assert _n_params(create_op("splat", 64, 64)) == expected
    assert op_cost("splat", 64, 64, 3, 8, 8).macs == 128 * 32 * 9 * 64 + 64 * 32 + 32 * 128


def test_splat_inter_channels_round_to_cardinality():
    layer = create_op("splat", 96, 96, 3, radix=2, cardinality=3, reduction=8)
    assert layer.inter_channels == 33                  # max(96*2//8 = 24, 32) -> 33
    assert op_cost("splat", 96, 96, 3, 5, 5, radix=2, cardinality=3, reduction=8) == \
        measure_cost(layer, (96, 5, 5), batch=2)


def _block_diagonal(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Dense matrix of a grouped 1x1 conv's weight (out, in/groups, 1, 1)."""
    rows, cols = weight.shape[0] // groups, weight.shape[1]
    dense = torch.zeros(weight.shape[0], cols * groups)
    for g in range(groups):
        dense[g * rows:(g + 1) * rows, g * cols:(g + 1) * cols] = weight[g * rows:(g + 1) * rows, :, 0, 0]
    return dense


def _splat_reference(layer, x):
    R, C, co = layer.radix, layer.cardinality, layer.out_channels
    y = F.relu(_bn(layer.conv(x), layer.bn))
    splits = [y[:, r * co:(r + 1) * co] for r in range(R)]           # split r reads input slice r
    gap = sum(splits).mean((2, 3))                                    # (n, co)
    z = gap @ _block_diagonal(layer.fc1.weight, C).T
    z = F.relu(_bn(z[:, :, None, None], layer.bn_fc1))[:, :, 0, 0]
    logits = z @ _block_diagonal(layer.fc2.weight, C).T + layer.fc2.bias
    # fc2 channel (cardinal group j, radix r, i) weighs channel j * co/C + i of split r
    logits = logits.view(-1, C, R, co // C)
    att = torch.softmax(logits, 2) if R > 1 else torch.sigmoid(logits)
    return sum(att[:, :, r].reshape(-1, co, 1, 1) * splits[r] for r in range(R))


@pytest.mark.parametrize("radix,cardinality,stride", [(2, 1, 1), (2, 2, 2), (4, 2, 1), (1, 2, 2)])
def test_splat_matches_reference(radix, cardinality, stride):
    layer = create_op("splat", 32, 16, 3, stride, radix=radix, cardinality=cardinality).eval()
    _randomise_bn(layer)
    x = torch.randn(2, 32, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _splat_reference(layer, x), rtol=1e-4, atol=1e-5)


def test_splat_single_image_training_batch():
    layer = create_op("splat", 16, 16, 3).train()
    before = layer.bn_fc1.running_mean.clone()
    layer(torch.randn(1, 16, 5, 5)).sum().backward()
    assert torch.equal(layer.bn_fc1.running_mean, before)
    assert layer.fc1.weight.grad is not None


@pytest.mark.parametrize("shape,bad,key", [
    ((64, 64), {"radix": 3}, "radix"), ((64, 64), {"radix": 0}, "radix"),
    ((64, 64), {"radix": 2, "cardinality": 64}, "radix"), ((64, 48), {"cardinality": 32, "radix": 1}, "cardinality"),
    ((64, 64), {"cardinality": 0}, "cardinality"), ((64, 64), {"reduction": 0}, "reduction"),
])
def test_splat_bad_hyperparameters(shape, bad, key):
    with pytest.raises(HyperparameterError, match=rf"^splat: {key}: "):
        create_op("splat", *shape, **bad)


# --- igcv3 -------------------------------------------------------------------------------------


def test_igcv3_params_and_macs_formula():
    # mid 128: expand 64 -> 128 (groups 2) + BN, depthwise 3x3 + BN, reduce 128 -> 64 (groups 2) + BN
    expected = 128 * 32 + 256 + 128 * 9 + 256 + 64 * 64 + 128
    assert op_cost("igcv3", 64, 64, 3, 8, 8).params == expected == 9984
    assert _n_params(create_op("igcv3", 64, 64)) == expected
    # stride 2 on 9 x 9: expand at 9 x 9, the rest at 5 x 5
    assert op_cost("igcv3", 64, 64, 3, 9, 9, 2).macs == 128 * 32 * 81 + (128 * 9 + 64 * 64) * 25


def test_igcv3_every_output_sees_every_input():
    # without the interleaving, with g1 = g2 = 2 each output half would see one input half only
    layer = create_op("igcv3", 8, 8, 1, g1=2, g2=2, expansion=2).eval()
    with torch.no_grad():   # positive weights and input: every ReLU passes, zeros are structural
        for conv in (layer.expand, layer.depthwise, layer.reduce):
            conv.weight.abs_().add_(0.1)
    x = torch.rand(1, 8, 1, 1) + 0.1
    jac = torch.autograd.functional.jacobian(lambda t: layer(t).flatten(), x).reshape(8, 8)
    assert (jac != 0).all()


def test_igcv3_matches_reference_permutations():
    layer = create_op("igcv3", 8, 12, 3, 2, g1=2, g2=3, expansion=3).eval()
    _randomise_bn(layer)
    x = torch.randn(2, 8, 7, 7)
    y = F.relu(_bn(layer.expand(x), layer.bn_expand))
    # P1: channel i of expand group g (12 per group) -> position i * 2 + g
    p1 = [0] * 24
    for g in range(2):
        for i in range(12):
            p1[i * 2 + g] = g * 12 + i
    y = F.relu(_bn(layer.depthwise(y[:, p1]), layer.bn_depthwise))
    y = _bn(layer.reduce(y), layer.bn_reduce)
    p2 = [0] * 12
    for g in range(3):
        for i in range(4):
            p2[i * 3 + g] = g * 4 + i
    with torch.no_grad():
        torch.testing.assert_close(layer(x), y[:, p2])


@pytest.mark.parametrize("shape,bad,key", [
    ((64, 64), {"g1": 3}, "g1"), ((64, 64), {"g1": 0}, "g1"),
    ((64, 64), {"g2": 3}, "g2"), ((64, 36), {"g2": 8}, "g2"), ((6, 64), {"g2": 4, "expansion": 1}, "g2"),
    ((64, 64), {"expansion": 0}, "expansion"), ((64, 64), {"expansion": 1.5}, "expansion"),
])
def test_igcv3_bad_hyperparameters(shape, bad, key):
    with pytest.raises(HyperparameterError, match=rf"^igcv3: {key}: "):
        create_op("igcv3", *shape, **bad)
