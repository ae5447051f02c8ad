"""The supernet: a subnet is a stand-alone network with the supernet's weights, for every shipped
space; the memory estimate is stated and a supernet too large is refused before allocating."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
import torch

from nasconv.build import build_model
from nasconv.errors import SpaceError
from nasconv.evaluate import eval_config_for
from nasconv.spaces import load_space
from nasconv.supernet.memory import MemoryEstimate, SupernetMemoryError, check_fits, estimate_memory
from nasconv.supernet.model import ProxySettings, Supernet, proxy_arch

SPACES = sorted(p.stem for p in (Path(__file__).parents[1] / "search_spaces").glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def _meta_supernet(name: str) -> Supernet:
    """Shapes only (built once per space for these tests)."""
    space = load_space(name)
    with torch.device("meta"):
        return Supernet(space, _proxy(space), seed=0)


def _proxy(space) -> ProxySettings:
    return ProxySettings.of(eval_config_for(space, device="cpu", latency=False, precision="fp32").train,
                            space.num_classes)


@pytest.mark.slow
@pytest.mark.parametrize("name", SPACES)
def test_subnet_equals_standalone_network_with_copied_weights(name: str) -> None:
    space = load_space(name)
    proxy = _proxy(space)
    torch.set_num_threads(1)
    net = Supernet(space, proxy, seed=0)
    rng = random.Random(7)
    x = torch.randn(4, space.in_channels, proxy.resolution, proxy.resolution)
    for arch in [space.baseline()] + [space.sample(rng) for _ in range(3)]:
        sub = net.subnet(arch)
        sub.train()
        with torch.no_grad():
            for m in sub.modules():  # the zero-initialised last BN would hide the block's branch
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
            sub(x)  # moves the running statistics: they must be the stand-alone network's too
        alone = build_model(proxy_arch(arch, proxy), num_classes=space.num_classes)
        alone.load_state_dict(sub.state_dict(), strict=True)
        sub.eval()
        alone.eval()
        with torch.no_grad():
            assert torch.equal(sub(x), alone(x)), arch.ops_label()
        # the subnet's tensors are the supernet's own, not copies: training one trains the other
        own = {t.data_ptr() for t in net.parameters()}
        assert all(p.data_ptr() in own for p in sub.parameters())


def test_choices_have_their_own_weights_and_bn_while_stem_shortcut_head_are_shared() -> None:
    space = load_space("resnet20")
    net = _meta_supernet("resnet20")
    base = space.baseline()
    other = space.make_arch([(space.stages[0].ops[1], s.depth, s.width) for s in base.stages[:1]] +
                            [(s.op, s.depth, s.width) for s in base.stages[1:]])
    a, b = net.subnet(base), net.subnet(other)
    assert a.layer1[0].conv1 is not b.layer1[0].conv1 and a.layer1[0].bn1 is not b.layer1[0].bn1
    assert a.conv1 is b.conv1 and a.fc is b.fc and a.layer2[0].downsample is b.layer2[0].downsample
    deeper = space.make_arch([(s.op, max(space.stages[i].depths), s.width) for i, s in enumerate(base.stages)])
    assert len(list(net.subnet(deeper).blocks())) > len(list(a.blocks()))
    assert net.subnet(deeper).layer1[0].conv1 is a.layer1[0].conv1  # depth skips blocks, weights shared


def test_an_architecture_of_another_space_is_refused_in_one_line() -> None:
    net = _meta_supernet("resnet20")
    with pytest.raises(SpaceError, match="does not belong to space"):
        net.subnet(load_space("resnet18").baseline())


@pytest.mark.parametrize("name", ["resnet20", "resnet50"])
def test_memory_estimate_counts_the_parameters_of_the_supernet(name: str) -> None:
    space, net = load_space(name), _meta_supernet(name)
    est = estimate_memory(space, _proxy(space), batch_size=64, net=net)
    params = sum(p.numel() for p in net.parameters())
    assert est.params == params
    assert est.total_bytes == params * 16 + est.buffers * 4 + est.activation_bytes
    assert est.activation_bytes > 0 and "GiB" in est.describe()


def test_a_supernet_larger_than_memory_is_refused_before_allocating() -> None:
    est = MemoryEstimate(params=10**9, buffers=0, activation_bytes=0, batch_size=64, resolution=28)
    with pytest.raises(SupernetMemoryError, match=r"does not fit: 1000\.0M parameters.*14\.90 GiB.*8\.00 GiB"):
        check_fits(est, "resnet50", available=8 * 2**30)
    check_fits(est, "resnet50", available=64 * 2**30)  # fits: no error


def test_a_users_own_model_space_is_refused_in_one_line() -> None:
    class ModelSpace:  # what a ``kind: model`` space file loads as, by its attributes
        name, kind = "mine", "model"

    with pytest.raises(SpaceError, match="user's own model.*does not cover"):
        Supernet(ModelSpace(), ProxySettings(None, 1.0, False, 32, 10))
