"""Brief-training proxy: real learning, determinism, divergence reporting, reduced copies."""

from __future__ import annotations

import random

import pytest

from nasconv.cost import estimate_cost
from nasconv.data import load_dataset
from nasconv.errors import UsageError
from nasconv.spaces import load_space
from nasconv.train import TrainConfig, reduced_copy, train_candidate

QUICK = TrainConfig(train_images=2048, val_images=512, epochs=1, batch_size=32, resolution=16, max_depth=None,
                    width_factor=1.0)


@pytest.fixture(scope="module")
def fmnist():
    return load_dataset("fashion-mnist")


def test_learns_real_fashion_mnist(fmnist):
    res = train_candidate(load_space("resnet20").baseline(), fmnist, QUICK)
    assert not res.diverged
    assert res.steps == 2048 // 32
    assert res.accuracy > 0.5  # 10 classes: chance is 0.1


def test_deterministic_for_a_seed(fmnist):
    arch = load_space("resnet20").baseline()
    a = train_candidate(arch, fmnist, QUICK)
    b = train_candidate(arch, fmnist, QUICK)
    assert (a.accuracy, a.train_loss) == (b.accuracy, b.train_loss)
    c = train_candidate(arch, fmnist, TrainConfig(**{**QUICK.to_dict(), "seed": 1}))
    assert c.train_loss != a.train_loss


def test_divergence_is_reported_not_raised(fmnist):
    cfg = TrainConfig(**{**QUICK.to_dict(), "lr": 1e12, "optimizer": "sgd", "label_smoothing": 0.0})
    res = train_candidate(load_space("resnet20").baseline(), fmnist, cfg)
    assert res.diverged and res.diverged_step is not None and res.accuracy == 0.0


def test_dynamic_temperature_is_annealed(fmnist):
    from nasconv.arch import OpChoice

    space = load_space("resnet20")
    dyn = OpChoice.make("dynconv", {"experts": 2})
    arch = space.make_arch((dyn, 2, st.width_default) for st in space.stages)
    seen = []
    import nasconv.train as train_mod

    orig = train_mod.set_temperature

    def spy(model, t):
        seen.append(t)
        return orig(model, t)

    train_mod.set_temperature = spy
    try:
        train_candidate(arch, fmnist, QUICK)
    finally:
        train_mod.set_temperature = orig
    assert seen[0] == 30.0 and seen[-1] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(seen[1:], seen[2:]))  # non-increasing


@pytest.mark.parametrize("space_name", ["resnet50", "resnet18", "resnet20"])
def test_reduced_copy_keeps_operators_and_is_valid(space_name):
    space = load_space(space_name)
    rng = random.Random(5)
    for _ in range(30):
        arch = space.sample(rng)
        red = reduced_copy(arch, max_depth=1, width_factor=0.5, resolution=28, num_classes=10, in_channels=3,
                           small_stem=True)
        assert [s.op for s in red.stages] == [s.op for s in arch.stages]
        assert all(s.depth == 1 for s in red.stages)
        assert all(r.width in (a.width, round(a.width / 2)) for r, a in zip(red.stages, arch.stages))
        estimate_cost(red, 28, num_classes=10)  # builds a valid cost, i.e. every op fits
    assert red.stem == ("small" if space.stem == "imagenet" else space.stem)


def test_bad_config():
    with pytest.raises(UsageError, match="optimizer must be one of adamw|sgd"):
        TrainConfig(optimizer="lion").check()
    with pytest.raises(UsageError, match="epochs must be >= 1"):
        TrainConfig(epochs=0).check()
