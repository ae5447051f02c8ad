"""Supernet training: budget-restricted sampling, checkpoints keyed by settings, resume after a stop
equal to an uninterrupted run, corrupt and foreign checkpoints refused in one line; one-shot
evaluation returns the trained evaluation's metrics with ``fidelity: oneshot``. Synthetic data:
these check the machinery, benchmarks/oneshot.py the ranking on real images."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from nasconv.budget import parse_budget
from nasconv.cost import estimate_cost
from nasconv.data import load_dataset
from nasconv.errors import UsageError
from nasconv.evaluate import eval_config_for
from nasconv.spaces import load_space
from nasconv.supernet.evaluate import TrainedSupernet
from nasconv.supernet.store import SupernetCheckpointError, read_checkpoint
from nasconv.supernet.train import SupernetConfig, sample_arch, train_supernet

TINY = {
    "name": "tiny", "resolution": 8, "in_channels": 3, "num_classes": 10, "stem": {"type": "cifar", "width": 4},
    "block": "basic", "choices": ["standard", {"op": "gc", "groups": [2, 4]}, {"op": "dynconv", "experts": [2]}],
    "proxy": {"max_depth": None, "width_factor": 1.0},
    "stages": [{"depth": {"choices": [1, 2], "default": 1}, "width": {"base": 4, "multipliers": [1, 2]}, "stride": 1},
               {"depth": {"choices": [1, 2], "default": 1}, "width": {"base": 8, "multipliers": [1, 2]}, "stride": 2}],
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return load_space(str(path))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: threads only contend on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic:400", seed=0)


def _cfg(space, **changes) -> SupernetConfig:
    ec = eval_config_for(space, data="synthetic:400", device="cpu", latency=False, precision="fp32",
                         train_images=128, val_images=40, batch_size=16, resolution=8)
    return replace(SupernetConfig(eval=ec, steps=8, train_images=128), **changes)


def _states_equal(a: dict, b: dict) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_states_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_sampling_is_uniform_over_families_and_within_the_budget() -> None:
    space = load_space("resnet20")
    budget = parse_budget("30mmacs")
    rng = random.Random(0)
    archs = [sample_arch(space, budget, rng) for _ in range(300)]
    assert all(estimate_cost(a).macs <= 30_000_000 for a in archs)
    families = Counter(a.stages[2].op.name for a in [sample_arch(space, parse_budget(None), rng) for _ in range(900)])
    assert set(families) == {o.name for o in space.stages[2].ops}
    assert max(families.values()) < 2 * min(families.values())  # 100 each expected: not 3x for gc's 3 settings
    with pytest.raises(UsageError, match="leaves almost no architecture"):
        sample_arch(space, parse_budget("1kparams"), rng)


@pytest.mark.slow
def test_resume_after_a_stop_equals_the_uninterrupted_run(tiny, ds, tmp_path: Path) -> None:
    cfg = _cfg(tiny)
    whole = train_supernet(tiny, cfg, tmp_path / "a", ds=ds)
    assert whole.finished and whole.step == 8
    first = train_supernet(tiny, cfg, tmp_path / "b", ds=ds, max_steps=3)  # stopped: an injected step limit
    assert not first.finished and read_checkpoint(first.path)["step"] == 3
    second = train_supernet(tiny, cfg, tmp_path / "b", ds=ds)
    assert second.finished and second.step == 8
    a, b = read_checkpoint(whole.path), read_checkpoint(second.path)
    assert _states_equal(a["model"], b["model"]) and _states_equal(a["optimizer"], b["optimizer"])
    assert a["losses"] == b["losses"]

    def ctrl_c_at_step_5(step: int, total: int, loss: float) -> None:
        if step == 5:
            raise KeyboardInterrupt  # as Ctrl-C or SIGTERM (nasconv.errors.Terminated) in a step
    with pytest.raises(KeyboardInterrupt):
        train_supernet(tiny, cfg, tmp_path / "c", ds=ds, progress=ctrl_c_at_step_5)
    killed = train_supernet(tiny, cfg, tmp_path / "c", ds=ds, max_steps=0)  # reads the checkpoint, trains nothing
    assert killed.step == 5 and not killed.finished
    c = read_checkpoint(train_supernet(tiny, cfg, tmp_path / "c", ds=ds).path)
    assert _states_equal(a["model"], c["model"]) and _states_equal(a["optimizer"], c["optimizer"])


@pytest.mark.slow
def test_checkpoint_every_interval_by_the_injected_clock(tiny, ds, tmp_path: Path) -> None:
    ticks = iter(range(0, 10_000, 100))  # each reading of the clock: 100 s later
    saved = []
    import nasconv.supernet.train as mod

    real = mod.save_checkpoint
    mod.save_checkpoint = lambda path, payload: (saved.append(payload["step"]), real(path, payload))
    try:
        train_supernet(tiny, replace(_cfg(tiny), checkpoint_every_s=250), tmp_path, ds=ds,
                       clock=lambda: float(next(ticks)))
    finally:
        mod.save_checkpoint = real
    assert saved[-1] == 8 and len(saved) >= 3  # every few steps by that clock, and at the end


@pytest.mark.slow
def test_corrupt_and_foreign_checkpoints_are_refused_in_one_line(tiny, ds, tmp_path: Path) -> None:
    cfg = _cfg(tiny, steps=2)
    out = train_supernet(tiny, cfg, tmp_path, ds=ds)
    other = _cfg(tiny, steps=2, eval=replace(cfg.eval, train=replace(cfg.eval.train, seed=1, lr=0.01)))
    with pytest.raises(SupernetCheckpointError) as err:
        read_checkpoint(out.path, {**read_checkpoint(out.path)["identity"], "seed": 1, "space_hash": "0" * 16})
    assert "seed: 0 here, 1 asked" in str(err.value) and "space_hash" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(SupernetCheckpointError, match="no supernet checkpoint"):
        TrainedSupernet.load(tiny, other, tmp_path, ds=ds)  # other settings: another file, not a silent reuse
    data = out.path.read_bytes()
    out.path.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(SupernetCheckpointError, match="corrupt or truncated.*train it again") as err:
        train_supernet(tiny, cfg, tmp_path, ds=ds)
    assert "\n" not in str(err.value)
    again = train_supernet(tiny, cfg, tmp_path, ds=ds, restart=True)  # what the message offers
    assert again.finished


@pytest.mark.slow
def test_oneshot_evaluation_has_the_trained_evaluations_metrics(tiny, ds, tmp_path: Path) -> None:
    cfg = _cfg(tiny)
    train_supernet(tiny, cfg, tmp_path, ds=ds)
    loaded = TrainedSupernet.load(tiny, cfg, tmp_path, ds=ds)
    before = {k: v.clone() for k, v in loaded.net.state_dict().items()}
    rng = random.Random(3)
    for arch in [tiny.baseline(), tiny.sample(rng)]:
        m = loaded.evaluate_subnet(arch)
        assert m["fidelity"] == "oneshot" and m["arch_hash"] == arch.arch_hash and m["val_images"] == 40
        assert 0 <= m["accuracy"] <= 1 and m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1]
        assert m["accuracy_se"] > 0 and m["supernet_steps"] == 8 and m["params"] == estimate_cost(arch).params
    after = loaded.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN recalibration put back
    assert loaded.evaluate_subnet(tiny.baseline())["accuracy"] == loaded.evaluate_subnet(tiny.baseline())["accuracy"]


def test_a_zero_cost_proxy_has_no_supernet(tiny) -> None:
    cfg = _cfg(tiny)
    with pytest.raises(UsageError, match="zero-cost score trains nothing"):
        replace(cfg, eval=replace(cfg.eval, proxy="synflow")).check()


@pytest.mark.slow
def test_cli_train_status_eval_and_bad_input(tiny, tmp_path: Path, capsys, monkeypatch) -> None:
    from nasconv.cli import main

    monkeypatch.setenv("NASCONV_SUPERNET_DIR", str(tmp_path / "sn"))
    flags = ["--space", tiny.source, "--data", "synthetic:400", "--device", "cpu", "--precision", "fp32",
             "--train-images", "128", "--val-images", "40", "--batch-size", "16", "--resolution", "8",
             "--supernet-images", "128", "--steps", "4"]
    assert main(["supernet", "train", *flags]) == 0
    assert "4/4 steps, done" in capsys.readouterr().out
    assert main(["supernet", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(c["step"], c["steps"], c["identity"]["space"]) for c in status["checkpoints"]] == [(4, 4, "tiny")]
    assert main(["supernet", "eval", *flags, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fidelity"] == "oneshot"
    # another seed was never trained: one line, exit 1, nothing written over
    assert main(["supernet", "eval", *flags, "--seed", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no supernet checkpoint" in err
    assert main(["supernet", "train", *flags, "--proxy", "synflow"]) == 2
    assert "zero-cost" in capsys.readouterr().err
