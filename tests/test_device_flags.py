"""``--device``, ``--precision``, ``--channels-last`` and ``--augment`` of ``evaluate`` and ``search``:
``auto`` resolved where the settings are made, bad values in one line on stderr (exit 2 usage, 1
otherwise) with nothing written, and the value used in the metrics."""

from __future__ import annotations

import json

import pytest
import torch

import nasconv.precision as precision_mod
from nasconv.cli import build_parser, main
from nasconv.cli._common import eval_config
from nasconv.evaluate import EvalConfig
from nasconv.search import SearchConfig
from nasconv.spaces import load_space

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
EVAL = ["evaluate", "--space", "resnet20", "--data", "synthetic", "--train-images", "128", "--resolution", "16",
        "--no-latency"]
SEARCH = ["search", "--space", "resnet20", "--budget", "30mflops", "--sampler", "random", "--inline", "--no-baseline",
          "--no-latency", "--objectives", "accuracy,macs", "--data", "synthetic", "--resolution", "16", "--trials", "1",
          "--json", "--storage", "sqlite:///db.db"]


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(precision_mod, "host_cpu_flags", lambda: frozenset({"avx2", "f16c"}))


CASES = {
    "precision-unknown": ([*EVAL, "--precision", "half"], 2, "argument --precision: invalid choice: 'half'"),
    "bf16-without-native": ([*EVAL, "--precision", "bf16"], 1, "--precision bf16: this CPU"),
    "fp16-without-native": ([*EVAL, "--device", "cpu", "--precision", "fp16"], 1, "use --precision fp32"),
    "device-unknown": ([*EVAL, "--device", "gpu"], 2, "unknown device 'gpu'; accepted: auto, cpu, cuda, cuda:N"),
    "search-bf16-without-native": ([*SEARCH, "--precision", "bf16"], 1, "no native bf16 instructions"),
    "search-device-unknown": ([*SEARCH, "--device", "cuda:one"], 2, "unknown device 'cuda:one'"),
}
if not torch.cuda.is_available():
    CASES["cuda-index-without-gpu"] = ([*EVAL, "--device", "cuda:7"], 1, "--device cuda:7: no CUDA GPU is available")


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_device_or_precision_is_one_line_and_writes_nothing(case, tmp_path, monkeypatch, capsys, no_native_bf16):
    argv, code, phrase = CASES[case]
    monkeypatch.chdir(tmp_path)
    returncode = main(argv)
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert returncode == code, stderr
    assert len(lines) == 1 and "Traceback" not in stderr and phrase in lines[0], stderr
    assert list(tmp_path.iterdir()) == []  # no study database, nothing else


def test_evaluate_json_says_device_and_precision(capsys, no_native_bf16):
    assert main([*EVAL, "--json", "--channels-last", "--augment"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["precision"] == "fp32" and m["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert m["steps"] == 2 and not m["diverged"]


def _search_eval(argv: list[str]) -> EvalConfig:
    args = build_parser().parse_args(argv)
    cfg = eval_config(args, load_space("resnet20"))
    return SearchConfig(space="resnet20", gpus_per_trial=args.gpus_per_trial, eval=cfg, runner="inline").eval


@no_gpu
def test_search_resolves_auto_on_the_driver(no_native_bf16):
    here = _search_eval(SEARCH)
    assert (here.device, here.train.precision) == ("cpu", "fp32")
    # GPUs per trial: the workers evaluate on CUDA, which the driver may not see; bf16 there
    gpus = _search_eval([*SEARCH, "--gpus-per-trial", "0.5"])
    assert (gpus.device, gpus.train.precision) == ("cuda", "bf16")
    assert gpus.keyed_settings()["device"] == "cuda" and gpus.keyed_settings()["train"]["precision"] == "bf16"
    assert "auto" not in json.dumps(gpus.to_dict())
    flags = _search_eval([*SEARCH, "--channels-last", "--augment", "--precision", "fp32"])
    assert flags.train.channels_last and flags.train.augment
    # a library user's EvalConfig: resolved when the search is configured
    lib = SearchConfig(space="resnet20", gpus_per_trial=1, eval=EvalConfig(), runner="inline").eval
    assert (lib.device, lib.train.precision) == ("cuda", "bf16")
