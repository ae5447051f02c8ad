"""nasconv.custom: building candidates of a model space (module surgery, trained weights) and
their exact cost: the analytic model equals FlopCounterMode on every built candidate."""

from __future__ import annotations

import hashlib
import random

import pytest
import torch

from nasconv.arch import ArchSpec, OpChoice
from nasconv.build import build_model
from nasconv.cost import estimate_cost
from nasconv.custom import ModelError
from nasconv.custom.build import BiasedOp, fresh_model
from nasconv.evaluate import EvalConfig, evaluate
from nasconv.flops import measure_cost
from nasconv.spaces import load_arch
from nasconv.train import TrainConfig
from tests.test_custom_space import EXAMPLES, make

#: random candidates per example here (benchmarks/own_model.py checks 50 per example)
CANDIDATES = 3


@pytest.fixture(scope="module")
def spaces():
    return {name: make(name) for name in EXAMPLES}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_cost_equals_flop_counter_on_random_candidates(name, spaces):
    space = spaces[name]
    rng = random.Random(name)
    archs = [space.baseline()] + [space.sample(rng) for _ in range(CANDIDATES)]
    bounds = space.cost_bounds()
    for arch in archs:
        model = build_model(arch)
        est, got = estimate_cost(arch), measure_cost(model, space.input_shape)
        assert (est.params, est.macs) == (got.params, got.macs), arch.ops_label()
        assert bounds["min_macs"] <= est.macs <= bounds["max_macs"]
    assert model(torch.randn(2, *space.input_shape)).shape == (2, 10)


def test_baseline_is_the_users_model(spaces):
    space = spaces["unet"]
    torch.manual_seed(3)
    own = fresh_model(space).eval()
    torch.manual_seed(3)
    base = build_model(space.baseline()).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(own(x), base(x))


def test_surgery_replaces_every_slot_of_a_stage_and_both_names_of_a_reused_module(spaces):
    vgg = spaces["vgg"]
    ops = [OpChoice.make("standard")] * len(vgg.stages)
    ops[2] = OpChoice.make("hetconv", {"part": 4})
    model = build_model(vgg.make_arch(ops))
    for n in vgg.stages[2].slots:
        m = model.get_submodule(n)
        assert isinstance(m, BiasedOp) and type(m.op).__name__ == "HetConv2d"  # VGG's convs have a bias
    assert type(model.get_submodule(vgg.stages[1].slots[0])) is torch.nn.Conv2d
    loop = spaces["reuse"]
    model = build_model(loop.make_arch([OpChoice.make("gc", {"groups": 4}), OpChoice.make("standard")]))
    assert model.shared is model.alias and type(model.shared).__name__ == "GroupConv2d"


def test_init_from_starts_unreplaced_layers_from_trained_weights(tmp_path):
    trained = fresh_model(make("vgg"))
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5)
    path = tmp_path / "vgg.pt"
    torch.save(trained.state_dict(), path)
    space = make("vgg", init_from=str(path))
    assert space.init_from == str(path)
    trained.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(build_model(space.baseline()).eval()(x), trained(x))
    ops = [OpChoice.make("standard")] * len(space.stages)
    ops[0] = OpChoice.make("spconv", {"ratio": 0.5})
    model = build_model(space.make_arch(ops))
    sd = trained.state_dict()
    assert torch.equal(model.classifier.weight, sd["classifier.weight"])
    assert torch.equal(model.features[3].bias, sd["features.3.bias"])  # the replaced conv's bias is kept
    assert torch.equal(model.features[7].weight, sd["features.7.weight"])
    assert space.init_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    bad = tmp_path / "bad.pt"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    other = make("vgg", init_from=str(bad))
    with pytest.raises(ModelError, match="do not fit the model"):
        build_model(other.baseline())


def test_arch_json_round_trip_and_membership(spaces, tmp_path):
    space = spaces["densenet"]
    arch = space.sample(random.Random(1))
    back = ArchSpec.from_json(arch.to_json())
    assert back == arch and back.arch_hash == arch.arch_hash and back.ops == arch.ops
    path = tmp_path / "a.json"
    path.write_text(arch.to_json())
    assert load_arch(space, str(path)) == arch
    with pytest.raises(Exception, match="does not belong to space"):
        spaces["vgg"].check_arch(arch)
    with pytest.raises(Exception, match="architecture kind 'nope' is not known"):
        ArchSpec.from_dict({"kind": "nope"})


@pytest.mark.slow
def test_evaluate_trains_a_candidate_of_a_model_space(spaces):
    space = spaces["reuse"]
    arch = space.make_arch([OpChoice.make("hetconv", {"part": 2}), OpChoice.make("gc", {"groups": 2})])
    cfg = EvalConfig(data="synthetic", latency=False,
                     train=TrainConfig(train_images=128, val_images=64, batch_size=32, resolution=32,
                                       max_depth=None, width_factor=1.0, small_stem=False))
    out = evaluate(arch, cfg)
    assert out["arch_hash"] == arch.arch_hash and out["space"] == space.name
    assert out["params"] == estimate_cost(arch).params == out["proxy_params"]
    assert out["steps"] == 4 and 0.0 <= out["accuracy"] <= 1.0
