"""Ray GPU scheduling without a GPU: a Ray node that declares 2 GPUs it does not have
(``ray start --num-gpus 2``), and the seam ``NASCONV_TEST_SIMULATE_CUDA=1`` standing in for the CUDA
calls that cannot run here (an evaluation on ``cuda`` computes on the CPU and locks the GPU Ray
assigned it). The search, the runner, the evaluation and the latency lock are the real ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from nasconv.evaluate import EvalConfig
from nasconv.search import SearchConfig
from nasconv.train import TrainConfig
from tests.conftest import RayNode, _unavailable, free_port

GPUS, CPUS = 2, 8


def _gpu_node(**extra_env: str):
    """One Ray head on loopback declaring 2 GPUs and 8 CPUs, with the CUDA seam set for its workers
    and a latency-lock directory of its own."""
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        found = shutil.which("ray")
        if found is None:
            _unavailable("the `ray` command is not installed")
        ray_bin = Path(found)
    tmp = Path(tempfile.mkdtemp(prefix="ng", dir="/tmp"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "NASCONV_TEST_SIMULATE_CUDA": "1", "NASCONV_LOCK_DIR": str(tmp / "locks"),
           **{k: v.replace("{tmp}", str(tmp)) for k, v in extra_env.items()}}
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    head = RayNode([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
                    f"--num-cpus={CPUS}", f"--num-gpus={GPUS}", "--disable-usage-stats",
                    "--object-store-memory=100000000", "--include-dashboard=false",
                    f"--dashboard-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                    f"--metrics-export-port={free_port()}", f"--temp-dir={tmp}/h"], env, tmp / "head.log")
    try:
        if not head.wait_started(120):
            _unavailable(f"`ray start --head` did not start: {head.log.read_text(errors='replace')[-800:]}")
        yield f"127.0.0.1:{port}", tmp
    finally:
        head.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def gpu_node():
    yield from _gpu_node()


@pytest.fixture
def crashing_gpu_node():
    """The same, where the first evaluation to get going is SIGKILLed mid-way (its worker dies)."""
    yield from _gpu_node(NASCONV_TEST_CRASH_AT="during_eval:1", NASCONV_TEST_CRASH_MARK="{tmp}/crashed")


def _search(address: str, storage: str, study: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``nasconv search`` in its own process: a driver that joined this cluster leaves no Ray state
    behind in the test process (a later local ``ray.init`` there must start afresh)."""
    cmd = [sys.executable, "-m", "nasconv.cli", "search", "--space", "resnet20", "--sampler", "random",
           "--storage", storage, "--study", study, "--address", address, "--cpus-per-worker", "1",
           "--no-baseline", "--json", "--data", "synthetic:300", "--train-images", "256", "--batch-size", "32",
           "--resolution", "16", "--epochs", "1", "--precision", "fp32", *args]  # not the GPU proxy's 20 epochs
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def _eval(device: str = "auto") -> EvalConfig:
    # fp32: the seam computes on this CPU, which has no native bf16 (auto would pick bf16 for a GPU)
    return EvalConfig(data="synthetic:300", device=device, latency_max_time_s=0.3,
                      train=TrainConfig(train_images=256, val_images=64, batch_size=32, resolution=16,
                                        precision="fp32"))


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    best = now = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


@pytest.mark.slow
def test_half_gpu_trials_run_four_at_a_time_each_on_the_gpu_ray_assigned(gpu_node, tmp_path):
    address, tmp = gpu_node
    locks = tmp / "locks"
    storage = f"sqlite:///{tmp_path / 'g.db'}"
    out = _search(address, storage, "g", "--trials", "10", "--workers", "6", "--gpus-per-trial", "0.5")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["evaluated"] == 10 and res["failed"] == 0
    trials = [t for t in optuna.load_study(study_name="g", storage=storage).trials
              if t.state == optuna.trial.TrialState.COMPLETE]
    a = [t.user_attrs for t in trials]
    # --device auto with GPUs per trial: CUDA, on the GPU Ray assigned (each task sees one id)
    assert {x["device"] for x in a} == {"cuda"} and all(x["simulated_cuda"] for x in a)
    assert all(len(x["gpu_ids"]) == 1 and x["cuda_visible_devices"] == x["gpu_ids"][0] for x in a)
    assert {x["gpu_ids"][0] for x in a} <= {"0", "1"}
    # 6 in flight, 0.5 GPU each on 2 GPUs: 4 run at once and no more, 2 per GPU
    spans = [tuple(x["worker_span"]) for x in a]
    assert _max_overlap(spans) == 4
    for gpu in ("0", "1"):
        assert _max_overlap([tuple(x["worker_span"]) for x in a if x["gpu_ids"][0] == gpu]) <= 2
    # each latency was timed holding its own GPU's lock (the two halves of a GPU share one)
    assert all(x["latency_isolated"] for x in a)
    assert {p.name for p in locks.iterdir()} >= {"cuda-0.rw.lock", "cuda-1.rw.lock"}


@pytest.mark.slow
def test_more_gpus_per_trial_than_the_cluster_has_is_one_line(gpu_node, tmp_path):
    address, _ = gpu_node
    storage = f"sqlite:///{tmp_path / 'g.db'}"
    out = _search(address, storage, "big", "--trials", "2", "--gpus-per-trial", "3")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and "the Ray cluster has 2 GPUs" in lines[0], out.stderr


def test_auto_is_the_cpu_without_gpus_per_trial_on_a_machine_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: auto is cuda here")  # the CI machines have none
    cfg = SearchConfig(space="resnet20", eval=_eval(), runner="inline")
    assert cfg.eval.device == "cpu"
    assert SearchConfig(space="resnet20", eval=_eval(), runner="inline", gpus_per_trial=0.25).eval.device == "cuda"


@pytest.mark.slow
def test_a_worker_killed_mid_evaluation_on_a_gpu_node_is_retried(crashing_gpu_node, tmp_path):
    address, tmp = crashing_gpu_node
    storage = f"sqlite:///{tmp_path / 'g.db'}"
    out = _search(address, storage, "k", "--trials", "3", "--workers", "2", "--gpus-per-trial", "0.5")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert (tmp / "crashed").exists()  # a worker was killed in the middle of an evaluation
    # Ray ran the task again on another worker: every candidate evaluated, on its GPU, none failed
    assert res["evaluated"] == 3 and res["failed"] == 0
    trials = optuna.load_study(study_name="k", storage=storage).trials
    assert all(t.user_attrs.get("device") == "cuda" and t.user_attrs.get("gpu_ids") for t in trials)
