"""evaluate(): plain picklable metrics, zero-cost proxies, latency, errors."""

from __future__ import annotations

import json
import math
import pickle
import random
from dataclasses import replace

import pytest
import torch

from nasconv.build import build_model
from nasconv.errors import DeviceError, UnknownNameError, UsageError
from nasconv.evaluate import EvalConfig, evaluate, with_train_overrides
from nasconv.profile import measure_latency, resolve_device
from nasconv.proxies import ZERO_COST_PROXIES
from nasconv.spaces import load_space
from nasconv.train import TrainConfig

QUICK = TrainConfig(train_images=512, val_images=256, epochs=1, batch_size=64, resolution=16)


def test_evaluate_train_proxy_returns_plain_metrics():
    arch = load_space("resnet20").baseline()
    m = evaluate(arch, EvalConfig(train=QUICK, latency_max_time_s=2.0))
    assert pickle.loads(pickle.dumps(m)) == m
    for key in ("accuracy", "latency_ms", "params", "macs", "train_time_s", "diverged", "device_name",
                "threads", "torch_version", "latency_iqr_ms"):
        assert key in m, key
    assert 0.1 < m["accuracy"] <= 1.0 and m["score"] == m["accuracy"]
    assert m["params"] == 272_474 and m["macs"] == 40_813_184
    assert m["latency_ms"] > 0 and m["latency_resolution"] == 32 and m["latency_batch"] == 1
    # every measurement carries its uncertainty: the accuracy its binomial SE and Wilson interval
    # on the validation images it was measured on, the median latency its 95% interval
    assert m["val_images"] == 256
    assert m["accuracy_se"] == pytest.approx(math.sqrt(m["accuracy"] * (1 - m["accuracy"]) / 256))
    lo, hi = m["accuracy_ci"]
    assert lo < m["accuracy"] < hi and 0.08 < hi - lo < 0.13  # about 4 SE wide at n = 256
    lo, hi = m["latency_ci_ms"]
    assert lo <= m["latency_ms"] <= hi


@pytest.mark.parametrize("proxy", ZERO_COST_PROXIES)
def test_zero_cost_proxies_score_without_training(proxy):
    arch = load_space("resnet20").sample(random.Random(0))
    m = evaluate(arch, EvalConfig(proxy=proxy, train=QUICK, latency=False, zc_batch=16))
    assert m["accuracy"] is None and m["steps"] == 0
    assert isinstance(m["score"], float) and math.isfinite(m["score"])
    again = evaluate(arch, EvalConfig(proxy=proxy, train=QUICK, latency=False, zc_batch=16))
    assert again["score"] == pytest.approx(m["score"], rel=1e-6)


def test_zero_cost_proxies_tell_networks_apart():
    space = load_space("resnet20")
    rng = random.Random(1)
    archs = [space.sample(rng) for _ in range(4)]
    for proxy in ("synflow", "naswot", "grad_norm"):
        scores = {evaluate(a, EvalConfig(proxy=proxy, train=QUICK, latency=False, zc_batch=16))["score"] for a in archs}
        assert len(scores) == 4, proxy


def test_settings_key():
    base = EvalConfig()
    assert base.settings_key() == EvalConfig(threads=4, data_dir="/x").settings_key()
    assert base.settings_key() != EvalConfig(proxy="synflow").settings_key()
    assert base.settings_key() != with_train_overrides(base, epochs=3).settings_key()
    # training settings do not matter to a zero-cost proxy
    assert EvalConfig(proxy="synflow").settings_key() == with_train_overrides(
        EvalConfig(proxy="synflow"), epochs=3).settings_key()
    # ... but its initialisation seed and input size do: the score changes with them
    for change in ({"seed": 1}, {"resolution": 64}):
        assert EvalConfig(proxy="synflow").settings_key() != with_train_overrides(
            EvalConfig(proxy="synflow"), **change).settings_key()


#: the settings every evaluation had before device "auto" and the precision setting existed
LEGACY = EvalConfig(device="cpu", train=TrainConfig(precision="fp32"))


def test_latency_threads_is_keyed_only_when_set():
    # unset, the key is the one stored studies and caches were written with before the setting
    # existed (these values are what nasconv computed then), so they resume and hit their caches
    assert LEGACY.settings_key() == "7813a8cababd694d"
    assert EvalConfig(proxy="synflow", device="cpu").settings_key() == "4267f7b3a12e11b2"
    assert "latency_threads" not in EvalConfig().keyed_settings()
    # set, it is another measurement
    assert EvalConfig(latency_threads=1).settings_key() != EvalConfig().settings_key()
    assert EvalConfig(latency_threads=1).settings_key() != EvalConfig(latency_threads=2).settings_key()
    assert EvalConfig.from_dict(EvalConfig(latency_threads=1).to_dict()).latency_threads == 1
    with pytest.raises(UsageError, match="latency threads must be >= 1"):
        EvalConfig(latency_threads=0).check()


def test_training_settings_added_later_are_keyed_only_when_set():
    key = LEGACY.settings_key()
    # their default values are what every evaluation did before: the stored key stays valid
    assert with_train_overrides(LEGACY, channels_last=False, augment=False).settings_key() == key
    stored = LEGACY.to_dict()
    for k in ("precision", "channels_last", "augment"):
        del stored["train"][k]  # a study's eval_config written before these settings existed
    assert EvalConfig.from_dict(stored).train.precision == "fp32"
    assert EvalConfig.from_dict(stored).settings_key() == key
    changed = [with_train_overrides(LEGACY, **c).settings_key()
               for c in ({"precision": "bf16"}, {"precision": "fp16"}, {"channels_last": True}, {"augment": True})]
    assert len(set(changed + [key])) == 5
    # a zero-cost proxy does not train: no training setting is its key's business
    zc = EvalConfig(proxy="synflow", device="cpu")
    assert with_train_overrides(zc, precision="bf16", augment=True).settings_key() == zc.settings_key()


def test_auto_is_never_stored_or_keyed():
    for cfg in (EvalConfig(), EvalConfig(proxy="synflow"), EvalConfig(device="cpu")):
        assert "auto" not in json.dumps(cfg.keyed_settings())
        done = cfg.resolved()
        assert done.device != "auto" and done.train.precision != "auto"
        assert done.settings_key() == cfg.settings_key()  # the key counts auto as what it is here


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_auto_is_the_cpu_here(monkeypatch):
    import nasconv.precision as precision_mod

    monkeypatch.setattr(precision_mod, "host_cpu_flags", lambda: frozenset({"avx2"}))
    assert EvalConfig().resolved().device == "cpu" and EvalConfig().settings_key() == LEGACY.settings_key()
    monkeypatch.setattr(precision_mod, "host_cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert EvalConfig().resolved().train.precision == "bf16"
    assert EvalConfig().settings_key() == with_train_overrides(LEGACY, precision="bf16").settings_key()
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        EvalConfig(device="tpu").check()


def test_metrics_say_the_precision_used():
    arch = load_space("resnet20").baseline()
    m = evaluate(arch, EvalConfig(data="synthetic", train=replace(QUICK, precision="fp32"), latency=False))
    assert m["precision"] == "fp32" and m["steps"] == 512 // 64
    m = evaluate(arch, EvalConfig(data="synthetic", proxy="params", train=QUICK, latency=False))
    assert m["precision"] == "fp32"  # a zero-cost proxy scores in fp32


def test_latency_threads_apply_to_the_measurement_alone():
    arch = load_space("resnet20").baseline()
    before = torch.get_num_threads()
    try:
        m = evaluate(arch, EvalConfig(proxy="params", train=QUICK, threads=2, latency_threads=1,
                                      latency_max_time_s=0.5))
        assert m["threads"] == 1 and m["latency_ms"] > 0
        # the evaluating process's own thread count is back for whatever comes next
        assert torch.get_num_threads() == 2
        m = evaluate(arch, EvalConfig(proxy="params", train=QUICK, threads=2, latency_max_time_s=0.5))
        assert m["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_zero_cost_score_follows_the_seed():
    arch = load_space("resnet20").baseline()
    cfg = EvalConfig(proxy="synflow", data="synthetic", latency=False)
    scores = [evaluate(arch, with_train_overrides(cfg, seed=s))["score"] for s in (0, 0, 1)]
    assert scores[0] == scores[1] and scores[0] != scores[2]


@pytest.mark.parametrize("proxy", ["synflow", "grad_norm"])  # synflow: ICC 0.02 -> 1.00 on resnet50
def test_zero_cost_score_sees_the_residual_branches(proxy):
    """A stage's operator moves the score far more than the initialisation seed does (with the
    zero-init residual start of brief training, every branch is cut off and it would not)."""
    from dataclasses import replace

    from nasconv.arch import OpChoice

    base = load_space("resnet50").baseline()
    stages = list(base.stages)
    stages[2] = replace(stages[2], op=OpChoice.make("gc", {"groups": 32}))
    grouped = base.with_overrides(stages=tuple(stages))
    cfg = EvalConfig(proxy=proxy, data="synthetic", latency=False, zc_batch=8)
    to_log = math.log if proxy == "grad_norm" else float  # grad_norm is a norm: compare its logs
    score = {(a.arch_hash, s): to_log(evaluate(a, with_train_overrides(cfg, seed=s))["score"])
             for a in (base, grouped) for s in (0, 1)}
    seed_spread = max(abs(score[a.arch_hash, 0] - score[a.arch_hash, 1]) for a in (base, grouped))
    arch_gap = abs(score[base.arch_hash, 0] - score[grouped.arch_hash, 0])
    assert arch_gap > 3 * seed_spread, (arch_gap, seed_spread)


def test_latency_median_and_iqr():
    model = build_model(load_space("resnet20").baseline())
    lat = measure_latency(model, in_channels=3, resolution=32, min_repeats=10, max_time_s=5)
    assert lat.repeats >= 10 and lat.median_ms > 0 and lat.iqr_ms >= 0
    assert lat.capped or lat.rel_iqr < 0.05
    assert lat.threads == torch.get_num_threads() and lat.torch_version == torch.__version__


def test_latency_grows_with_batch():
    model = build_model(load_space("resnet20").baseline())
    one = measure_latency(model, in_channels=3, resolution=32, batch_size=1, max_time_s=3)
    many = measure_latency(model, in_channels=3, resolution=32, batch_size=32, max_time_s=3)
    assert many.median_ms > one.median_ms


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(DeviceError, match="no CUDA GPU is available"):
        resolve_device("cuda")


def test_unknown_proxy():
    with pytest.raises(UnknownNameError, match="known: train, synflow, naswot, grad_norm, params"):
        evaluate(load_space("resnet20").baseline(), EvalConfig(proxy="jacov"))


def test_a_cpu_training_in_bf16_spends_what_it_saves_on_images(monkeypatch):
    """bf16 made a reduced-copy candidate ~1.45x faster on a CPU with native bf16: there the CPU
    proxy trains on 1.5x the images (benchmarks/bf16_budget.py), unless told or the space sets it."""
    import nasconv.precision as precision
    from nasconv.evaluate import CPU_BF16_TRAIN_IMAGES, eval_config_for

    space = load_space("resnet50")
    monkeypatch.setattr(precision, "native_precision", lambda p, device: True)  # a CPU with AVX512-BF16
    auto = eval_config_for(space, device="cpu")
    assert (auto.train.precision, auto.train.train_images) == ("bf16", CPU_BF16_TRAIN_IMAGES) == ("bf16", 12000)
    assert eval_config_for(space, device="cpu", precision="fp32").train.train_images == 8000
    assert eval_config_for(space, device="cpu", train_images=5000).train.train_images == 5000
    assert eval_config_for(space, device="cpu", full_proxy=True).train.train_images == 8000
    assert eval_config_for(space, device="cuda").train.train_images == dict(space.proxy_gpu)["train_images"]
    monkeypatch.setattr(precision, "native_precision", lambda p, device: p == "fp32")  # a CPU without
    assert eval_config_for(space, device="cpu").train.train_images == 8000


def test_naswot_on_a_network_without_relu_modules_says_why_in_one_line():
    import torch
    from torch import nn

    from nasconv.errors import UsageError
    from nasconv.proxies import naswot

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    with pytest.raises(UsageError, match="nn.ReLU modules.*--proxy grad_norm"):
        naswot(Functional(), torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
