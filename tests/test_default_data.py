"""Data, device and precision a user did not name: CIFAR-10 where found, else Fashion-MNIST, said in
one line and stamped on the study; a stored study keeps what it began with. Evaluations record
that their latency was timed with the device to themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from nasconv.evaluate import EvalConfig, evaluate
from nasconv.precision import resolve_precision
from nasconv.spaces import load_space
from tests.test_data_cifar import write_cifar10

AUTO = resolve_precision("auto", "cpu")  # what a search on this machine's CPU trains in
FAST = ["--space", "resnet20", "--trials", "1", "--no-baseline", "--inline", "--train-images", "128",
        "--val-images", "300", "--batch-size", "32", "--latency-batch", "1"]


def _search(storage: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nasconv.cli", "search", *FAST, "--storage", storage, *extra],
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_without_data_a_new_study_says_and_stamps_its_choice_and_a_resumed_one_keeps_it(tmp_path: Path,
                                                                                       monkeypatch):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = _search(storage, "--study", "d")
    assert first.returncode == 0, first.stderr
    line = next(ln for ln in first.stdout.splitlines() if ln.startswith("data: "))
    # offline here (conftest points downloads at a closed port): CIFAR-10 not found, so Fashion-MNIST
    assert line.startswith("data: fashion-mnist (CIFAR-10 not found")
    attrs = optuna.load_study(study_name="d", storage=storage).user_attrs
    assert attrs["eval_config"]["data"] == "fashion-mnist"
    assert attrs["data_choice"].startswith("fashion-mnist: CIFAR-10 not found")
    assert attrs["eval_config"]["device"] == "cpu" and attrs["eval_config"]["train"]["precision"] == AUTO
    trial = optuna.load_study(study_name="d", storage=storage).trials[0]
    assert trial.user_attrs["latency_isolated"] is True and trial.user_attrs["latency_wait_s"] >= 0
    assert trial.user_attrs["val_images"] == 300  # --val-images
    assert trial.user_attrs["precision"] == AUTO  # bf16 on a CPU with native bf16, else fp32

    # CIFAR-10 appears (in $NASCONV_DATA): the stored study keeps its data, a new one takes CIFAR-10.
    write_cifar10(tmp_path / "data" / "cifar-10-batches-py", per_batch=40)
    env = dict(os.environ, NASCONV_DATA=str(tmp_path / "data"))
    again = _search(storage, "--study", "d", "--trials", "2", env=env)
    assert again.returncode == 0, again.stderr
    assert "data: fashion-mnist (the data study 'd' began with" in again.stdout
    assert len(optuna.load_study(study_name="d", storage=storage).trials) == 2
    new = _search(storage, "--study", "c", "--train-images", "64", "--resolution", "16", env=env)
    assert new.returncode == 0, new.stderr
    assert "data: cifar10 (CIFAR-10 found in " in new.stdout
    assert optuna.load_study(study_name="c", storage=storage).user_attrs["eval_config"]["data"] == "cifar10"

    named = _search(storage, "--study", "e", "--data", "synthetic:200", "--json")
    assert named.returncode == 0, named.stderr
    # --json: stdout is the result alone; it says what was read (#34), and no choice was made
    read = json.loads(named.stdout)["data"]
    assert read["num_classes"] == 10 and read["line"].startswith("data: synthetic:200: 10 classes")
    assert "data:" not in named.stderr
    assert "data_choice" not in optuna.load_study(study_name="e", storage=storage).user_attrs


def test_evaluation_records_that_its_latency_had_the_device_to_itself(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NASCONV_LOCK_DIR", str(tmp_path / "locks"))
    space = load_space("resnet20")
    cfg = EvalConfig(data="synthetic:200", device="cpu", latency_max_time_s=0.2)
    from dataclasses import replace

    cfg = replace(cfg, train=replace(cfg.train, train_images=64, val_images=32, batch_size=32, resolution=16))
    m = evaluate(space.baseline(), cfg)
    assert m["latency_isolated"] is True and m["latency_wait_s"] >= 0
    assert (tmp_path / "locks" / "cpu.rw.lock").exists()
    monkeypatch.setenv("NASCONV_LATENCY_LOCK", "0")
    assert evaluate(space.baseline(), cfg)["latency_isolated"] is False


def test_a_resumed_study_keeps_the_training_images_it_began_with(tmp_path: Path, capsys):
    """A default that changes (12,000 images where the CPU trains in bf16) does not stop a study
    begun with another count from resuming: unnamed, the stored count is kept."""
    from nasconv.cli import main

    storage = f"sqlite:///{tmp_path / 's.db'}"
    base = ["search", "--space", "resnet20", "--no-baseline", "--inline", "--no-latency", "--objectives",
            "accuracy,macs", "--data", "synthetic:300", "--val-images", "50", "--batch-size", "32",
            "--resolution", "16", "--storage", storage, "--study", "k", "--json"]
    assert main([*base, "--trials", "1", "--train-images", "96"]) == 0
    assert main([*base, "--trials", "2"]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="k", storage=storage)
    assert study.user_attrs["eval_config"]["train"]["train_images"] == 96
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 2
