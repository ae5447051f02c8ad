"""TBC and TGC (Wang & Yu, AAAI 2021): formulas, degenerate cases, per-block reference, one conv call."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nasconv.errors import HyperparameterError
from nasconv.flops import measure_cost
from nasconv.ops import Cost, create_op, op_cost


def test_tbc_param_formula():
    assert op_cost("tbc", 256, 256, 3, 14, 14, blocks=4).params == 36_864
    # MACs: the shared filter runs over each of the B blocks.
    assert op_cost("tbc", 256, 256, 3, 14, 14, blocks=4).macs == 36_864 * 4 * 14 * 14
    assert op_cost("tbc", 256, 256, 3, 14, 14, 2, blocks=4).macs == 36_864 * 4 * 7 * 7


def test_tgc_param_formula():
    # (256/4) x (256/(4*2)) x 3 x 3
    cost = op_cost("tgc", 256, 256, 3, 14, 14, blocks=4, groups=2)
    assert cost.params == 18_432
    assert cost.macs == 18_432 * 4 * 14 * 14
    layer = create_op("tgc", 256, 128, 3, 2, blocks=4, groups=2)
    assert measure_cost(layer, (256, 14, 14)) == Cost(18_432 // 2, 18_432 // 2 * 4 * 7 * 7)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name,hyper", [("tbc", {"blocks": 1}), ("tgc", {"blocks": 1, "groups": 1})])
def test_one_block_is_plain_conv(name, hyper, stride):
    layer = create_op(name, 16, 24, 3, stride, **hyper)
    ref = nn.Conv2d(16, 24, 3, stride, 1, bias=False)
    ref.weight.data.copy_(layer.weight.data)
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(layer(x), ref(x))


def _per_block_reference(x: torch.Tensor, weight: torch.Tensor, blocks: int, groups: int, stride: int,
                         k: int) -> torch.Tensor:
    cb = x.shape[1] // blocks
    outs = [F.conv2d(x[:, b * cb:(b + 1) * cb], weight, None, stride, k // 2, 1, groups) for b in range(blocks)]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name,hyper", [
    ("tbc", {"blocks": 2}), ("tbc", {"blocks": 4}),
    ("tgc", {"blocks": 2, "groups": 2}), ("tgc", {"blocks": 2, "groups": 4}), ("tgc", {"blocks": 4, "groups": 1}),
])
def test_matches_per_block_loop(name, hyper, stride):
    layer = create_op(name, 32, 48, 3, stride, **hyper)
    x = torch.randn(3, 32, 10, 9)
    ref = _per_block_reference(x, layer.weight, hyper["blocks"], hyper.get("groups", 1), stride, 3)
    torch.testing.assert_close(layer(x), ref)
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(layer(cl), ref, rtol=1e-4, atol=1e-5)


class _CountConvs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.convolution, torch.ops.aten.conv2d):
            self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name,hyper", [("tbc", {"blocks": 8}), ("tgc", {"blocks": 4, "groups": 4})])
def test_single_convolution_call(name, hyper):
    layer = create_op(name, 64, 64, 3, **hyper)
    with torch.no_grad(), _CountConvs() as counter:
        layer(torch.randn(2, 64, 6, 6))
    assert counter.calls == 1


@pytest.mark.parametrize("name,hyper", [("tbc", {"blocks": 4}), ("tgc", {"blocks": 2, "groups": 4})])
def test_single_image_inference_runs_tiled_and_exact(name, hyper):
    """One image on a large map in inference: the B*G-group conv over the repeated shared filter
    (the fast form there), one conv call, same function as the per-block loop; the repeated
    filter is reused while the parameter is unchanged and rebuilt when it changes."""
    layer = create_op(name, 32, 32, 3, **hyper).eval()
    x = torch.randn(1, 32, 28, 28)
    with torch.no_grad():
        with _CountConvs() as counter:
            y = layer(x)
        assert counter.calls == 1
        ref = _per_block_reference(x, layer.weight, hyper["blocks"], hyper.get("groups", 1), 1, 3)
        torch.testing.assert_close(y, ref)
        tiled = layer._tiled_weight()
        assert tiled.shape == (32, 32 // (hyper["blocks"] * hyper.get("groups", 1)), 3, 3)
        assert layer._tiled_weight() is tiled  # reused
        layer.weight.mul_(-2.0)  # an optimizer step or load_state_dict writes in place like this
        torch.testing.assert_close(layer(x), -2.0 * ref)
        assert layer._tiled_weight() is not tiled
        layer.weight.data.mul_(0.5)  # invisible to the version counter ...
        layer.eval()  # ... so the documented reset: a mode switch drops the cache
        torch.testing.assert_close(layer(x), -ref)
    # training, autograd, batches: the paper's batch fold (gradient reaches the shared filter)
    layer.train()
    y = layer(x.requires_grad_())
    y.sum().backward()
    assert layer.weight.grad is not None and "_tiled" not in layer.__dict__
    import copy
    import pickle

    layer.eval()
    with torch.no_grad():
        layer(x)
    assert "_tiled" in layer.__dict__
    assert "_tiled" not in copy.deepcopy(layer).__dict__ and "_tiled" not in pickle.loads(pickle.dumps(layer)).__dict__
    assert "_tiled" in layer.__dict__


@pytest.mark.parametrize("name,hyper,shape,tiled", [
    ("tbc", {"blocks": 4}, (2, 32, 28, 28), True),  # blocks of 8 channels: tiled at any batch
    ("tgc", {"blocks": 2, "groups": 2}, (2, 32, 28, 28), False),  # blocks of 16 channels, 2 images: fold
    ("tbc", {"blocks": 2}, (1, 32, 27, 27), False),  # a small map: fold
    ("tbc", {"blocks": 2}, (1, 32, 28, 28), True),
])
def test_inference_form_by_shape(name, hyper, shape, tiled):
    layer = create_op(name, 32, 32, 3, **hyper).eval()
    x = torch.randn(shape)
    with torch.no_grad(), _CountConvs() as counter:
        y = layer(x)
    assert counter.calls == 1 and ("_tiled" in layer.__dict__) == tiled
    torch.testing.assert_close(y, _per_block_reference(x, layer.weight, hyper["blocks"], hyper.get("groups", 1), 1, 3))


def test_shared_weight_shape():
    assert create_op("tbc", 64, 32, 3, blocks=4).weight.shape == (8, 16, 3, 3)
    assert create_op("tgc", 64, 32, 3, blocks=4, groups=2).weight.shape == (8, 8, 3, 3)


def test_wrong_input_channels_fail_in_forward():
    layer = create_op("tbc", 32, 32, blocks=2)
    with pytest.raises(RuntimeError):
        layer(torch.randn(2, 64, 5, 5))


@pytest.mark.parametrize("name,hyper,key", [
    ("tbc", {"blocks": 0}, "blocks"),
    ("tbc", {"blocks": 3}, "blocks"),
    ("tbc", {"blocks": 128}, "blocks"),
    ("tbc", {"blocks": 2.0}, "blocks"),
    ("tbc", {"blocks": True}, "blocks"),
    ("tgc", {"blocks": 3, "groups": 1}, "blocks"),
    ("tgc", {"blocks": 2, "groups": 0}, "groups"),
    ("tgc", {"blocks": 2, "groups": 3}, "groups"),
    ("tgc", {"blocks": 8, "groups": 16}, "groups"),
])
def test_bad_hyperparameters(name, hyper, key):
    with pytest.raises(HyperparameterError, match=rf"^{name}: {key}: "):
        create_op(name, 64, 64, **hyper)
    with pytest.raises(HyperparameterError, match=rf"^{name}: {key}: "):
        op_cost(name, 64, 64, 3, 8, 8, **hyper)


def test_bad_out_channels_for_blocks():
    with pytest.raises(HyperparameterError, match=r"tbc: blocks: B must divide .*out_channels=36"):
        create_op("tbc", 64, 36, blocks=8)
