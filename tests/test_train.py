"""Brief-training proxy: real learning, determinism, divergence reporting, reduced copies."""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch
from torch import nn

import nasconv.precision as precision_mod
import nasconv.train as train_mod
from nasconv.cost import estimate_cost
from nasconv.data import load_dataset
from nasconv.errors import DeviceError, UsageError
from nasconv.spaces import load_space
from nasconv.train import AUGMENT_PAD, TrainConfig, augment_batch, reduced_copy, train_candidate

QUICK = TrainConfig(train_images=2048, val_images=512, epochs=1, batch_size=32, resolution=16, max_depth=None,
                    width_factor=1.0)
#: 40 steps of a reduced copy: the loop's own behaviour, fast
TINY = TrainConfig(train_images=1280, val_images=600, batch_size=32, resolution=16)


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
    with pytest.raises(UsageError, match="precision must be one of auto, fp32, bf16, fp16"):
        TrainConfig(precision="fp64").check()
    with pytest.raises(UsageError, match="epochs must be >= 1"):
        TrainConfig(epochs=0).check()


class _NanFrom(nn.Module):
    """The network whose training-mode output turns NaN from the ``at``-th step on (0-based)."""

    def __init__(self, inner: nn.Module, at: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            if self.calls >= self.at:
                out = out * float("nan")
            self.calls += 1
        return out


@pytest.mark.parametrize("at", [0, 7, 24, 25, 30, 39])
def test_divergence_is_reported_at_the_step_it_first_appeared(fmnist, monkeypatch, at):
    # losses are read from the device every 25 steps, not every step: the step is still exact
    build = train_mod.build_model
    monkeypatch.setattr(train_mod, "build_model", lambda *a, **k: _NanFrom(build(*a, **k), at))
    res = train_candidate(load_space("resnet20").baseline(), fmnist, TINY)
    assert res.diverged and res.diverged_step == at and res.steps == at and res.accuracy == 0.0
    assert res.train_loss != res.train_loss  # the NaN loss of that step


def test_divergence_step_does_not_depend_on_how_often_losses_are_read(fmnist):
    cfg = replace(QUICK, lr=1e30, optimizer="sgd", label_smoothing=0.0)
    arch = load_space("resnet20").baseline()
    every = train_candidate(arch, fmnist, cfg, check_every=1)
    sparse = train_candidate(arch, fmnist, cfg)
    assert every.diverged and (every.diverged_step, every.steps) == (sparse.diverged_step, sparse.steps)


def test_step_guard_is_entered_once_per_step_and_progress_after_each(fmnist):
    entered, calls, depth = [], [], [0]

    @contextmanager
    def guard():
        depth[0] += 1
        entered.append(depth[0])
        yield
        depth[0] -= 1

    res = train_candidate(load_space("resnet20").baseline(), fmnist, TINY, step_guard=guard,
                          progress=lambda step, total, loss: calls.append((step, total, loss, depth[0])))
    val_batches = -(-600 // 500)
    assert len(entered) == res.steps + val_batches == 40 + 2 and set(entered) == {1}  # never nested
    assert [c[0] for c in calls] == list(range(1, 41)) and {c[1] for c in calls} == {40}
    assert all(c[3] == 0 for c in calls)  # called outside the guard
    # the loss shown is the one last read from the device: steps 1, 25 and 40
    assert len({c[2] for c in calls[1:24]}) == 1 and calls[-1][2] == res.train_loss


def test_augmentation_is_a_padded_crop_and_flip():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 6, 5)
    fill = torch.tensor([-1.0, -2.0])
    out = augment_batch(x, gen, fill)
    assert out.shape == x.shape and out.is_contiguous()
    pad = AUGMENT_PAD
    padded = fill.view(1, 2, 1, 1).expand(16, 2, 6 + 2 * pad, 5 + 2 * pad).clone()
    padded[:, :, pad:pad + 6, pad:pad + 5] = x
    flips = 0
    for i in range(16):
        found = [(dy, dx, f) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for f in (False, True)
                 if torch.equal(out[i], (lambda w: w.flip(2) if f else w)(padded[i, :, dy:dy + 6, dx:dx + 5]))]
        assert found, i
        flips += all(f for _, _, f in found)
    assert 0 < flips < 16
    again = augment_batch(x, torch.Generator().manual_seed(0), fill)
    assert torch.equal(out, again)  # the same for a seed


def test_augmented_training_is_deterministic_and_another_proxy(fmnist):
    arch = load_space("resnet20").baseline()
    cfg = replace(TINY, augment=True)
    a, b = train_candidate(arch, fmnist, cfg), train_candidate(arch, fmnist, cfg)
    plain = train_candidate(arch, fmnist, TINY)
    assert (a.accuracy, a.train_loss, a.val_loss) == (b.accuracy, b.train_loss, b.val_loss)
    assert a.train_loss != plain.train_loss and not a.diverged


def test_channels_last_trains_the_same_network(fmnist):
    from nasconv.arch import OpChoice

    space = load_space("resnet20")  # 5-D expert banks (condconv, dynconv) and grouped convolutions
    ops = [OpChoice.make("condconv", {"experts": 2}), OpChoice.make("dynconv", {"experts": 2}),
           OpChoice.make("gc", {"groups": 4})]
    arch = space.make_arch((op, 1, st.width_default) for op, st in zip(ops, space.stages))
    plain = train_candidate(arch, fmnist, TINY)
    nhwc = train_candidate(arch, fmnist, replace(TINY, channels_last=True), keep_model=True)
    assert not nhwc.diverged and abs(nhwc.val_loss - plain.val_loss) < 0.05
    # the weights handed back (for export) are in the ordinary layout
    assert all(p.is_contiguous() for p in nhwc.model.parameters())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_training(fmnist, precision):
    res = train_candidate(load_space("resnet20").baseline(), fmnist, replace(TINY, precision=precision),
                          allow_emulated=True)
    assert res.precision == precision and not res.diverged and res.accuracy > 0.3


def test_fp32_is_what_auto_gives_without_native_bf16(fmnist, monkeypatch):
    monkeypatch.setattr(precision_mod, "host_cpu_flags", lambda: frozenset({"avx2"}))
    arch = load_space("resnet20").baseline()
    auto = train_candidate(arch, fmnist, TINY)
    fp32 = train_candidate(arch, fmnist, replace(TINY, precision="fp32"))
    assert auto.precision == "fp32" and (auto.accuracy, auto.train_loss) == (fp32.accuracy, fp32.train_loss)
    with pytest.raises(DeviceError, match="no native bf16"):
        train_candidate(arch, fmnist, replace(TINY, precision="bf16"))
