"""The command line: help everywhere, JSON outputs, and one-line errors with the right exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nasconv.cli import build_parser, main
from nasconv.ops import list_ops
from nasconv.spaces import load_space

SUBCOMMANDS = [["ops"], ["space"], ["space", "list"], ["space", "show"], ["cost"], ["sample"], ["evaluate"],
               ["search"], ["pareto"], ["dashboard"], ["export"]]


def run(*argv, check=False):
    """The real console entry point in a fresh process."""
    out = subprocess.run([sys.executable, "-m", "nasconv.cli", *argv], capture_output=True, text=True, timeout=300)
    if check and out.returncode:
        raise AssertionError(out.stderr)
    return out


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: nasconv" in capsys.readouterr().out


def test_top_level_help_explains_budget_units(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "1 FLOP = 1 multiply-add" in out and "search" in out


def test_ops_json(capsys):
    assert main(["ops", "--shape", "64,128,28,28", "--stride", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["ops"]] == list_ops()
    std = data["ops"][0]
    assert std["params"] == 64 * 128 * 9 and std["macs"] == 64 * 128 * 9 * 14 * 14
    assert all(isinstance(r["params"], int) and isinstance(r["macs"], int) for r in data["ops"])


def test_ops_table(capsys):
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_ops()) and "MACs/std" in out


def test_space_list_and_show_json(capsys):
    assert main(["space", "list", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert {"resnet50", "resnet18", "resnet20"} <= set(names)
    assert main(["space", "show", "resnet50", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["architectures"] == 30 ** 4 and s["baseline"] == {"params": 25_557_032, "macs": 4_089_184_256}
    assert s["min_macs"] < s["baseline"]["macs"] <= s["max_macs"]


def test_cost_json_has_breakdown(capsys):
    assert main(["cost", "--space", "resnet50", "--arch", "baseline", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["params"], d["macs"]) == (25_557_032, 4_089_184_256)
    assert [p["name"] for p in d["parts"]] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert sum(p["macs"] for p in d["parts"]) == d["macs"]


def test_sample_round_trips_through_cost(tmp_path, capsys):
    assert main(["sample", "--space", "resnet50", "--seed", "3", "--budget", "3gflops"]) == 0
    arch_file = tmp_path / "a.json"
    arch_file.write_text(capsys.readouterr().out)
    assert main(["cost", "--space", "resnet50", "--arch", str(arch_file), "--json", "--measure"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["macs"] <= 3_000_000_000
    assert d["measured"] == {"params": d["params"], "macs": d["macs"]}
    assert main(["sample", "--space", "resnet50", "--seed", "3", "--budget", "3gflops", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macs"] == d["macs"]  # same seed, same architecture


def test_evaluate_json_zero_cost(capsys):
    assert main(["evaluate", "--space", "resnet20", "--proxy", "synflow", "--resolution", "16", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"accuracy", "latency_ms", "params", "macs", "score"} <= set(d)
    assert d["macs"] == 40_813_184


BAD = [
    # (argv, exit code, text the one-line error must contain)
    (["frobnicate"], 2, "invalid choice"),
    (["ops", "--shape", "64,64"], 2, "--shape must be C_IN,C_OUT,H,W"),
    (["ops", "--stride", "3"], 2, "invalid choice"),
    (["space", "show", "resnet51"], 2, "unknown space 'resnet51'; known: resnet18"),
    (["space", "show", "/no/such/space.yaml"], 1, "cannot read space file"),
    (["cost", "--space", "resnet50", "--arch", "/no/such.json"], 1, "cannot read architecture file"),
    (["sample", "--space", "resnet50", "--budget", "4gigawatts"], 2, "malformed budget '4gigawatts'; accepted forms"),
    (["sample", "--space", "resnet50", "--budget", "-1gflops"], 2, "accepted forms"),
    (["sample", "--space", "resnet50", "--budget", "abc"], 2, "accepted forms"),
    (["sample", "--space", "resnet50", "--budget", "1gflops"], 1, "fewest MACs achievable are 2,296,696,832"),
    (["sample", "--space", "resnet50", "--budget", "5mparams"], 1, "fewest parameters achievable"),
    (["evaluate", "--space", "resnet20", "--proxy", "jacov"], 2, "unknown proxy 'jacov'"),
    (["evaluate", "--space", "resnet20", "--device", "cuda"], 1, "no CUDA GPU is available"),
    (["evaluate", "--space", "resnet20", "--device", "tpu"], 2, "unknown device 'tpu'"),
    (["evaluate", "--space", "resnet20", "--data", "mnist-digits"], 2, "unknown dataset 'mnist-digits'"),
    (["evaluate", "--space", "resnet20", "--data", "imagefolder:/no/such/dir"], 1, "/no/such/dir"),
    (["evaluate", "--space", "resnet20", "--epochs", "0"], 2, "--epochs: must be an integer in [1,"),
    (["evaluate", "--space", "resnet20", "--val-images", "0"], 2, "--val-images: must be an integer in [1,"),
    (["evaluate", "--space", "resnet20", "--latency-threads", "0"], 2, "--latency-threads: must be an integer in [1,"),
    (["search", "--space", "resnet20", "--latency-threads", "0"], 2, "--latency-threads: must be an integer in [1,"),
    (["search", "--space", "resnet20", "--trials", "0"], 2, "--trials: must be an integer in [1,"),
    (["search", "--space", "resnet20", "--sampler", "cmaes"], 2, "unknown sampler 'cmaes'"),
    (["search", "--space", "resnet20", "--objectives", "accuracy,energy"], 2, "unknown objective 'energy'"),
    (["search", "--space", "resnet20", "--budget", "1mflops"], 1, "below the cheapest architecture"),
    (["search", "--space", "resnet20", "--storage", "nosuchdb://x"], 1, "storage URL"),
    (["search", "--space", "resnet20", "--storage", "sqlite:////proc/nope/x.db"], 1, "studies folder"),
    (["search", "--space", "nope"], 2, "unknown space 'nope'"),
    (["pareto", "--study", "missing", "--storage", "sqlite:////no/such/folder/x.db"], 1, "no database at"),
    (["search", "--space", "resnet20", "--workers", "0"], 2, "--workers: must be an integer in [1,"),
    (["search", "--space", "resnet20", "--objectives", "accuracy,latency", "--no-latency"], 2,
     "needs latency measurement"),
]


@pytest.mark.parametrize("argv,code,text", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line(argv, code, text, capsys):
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nasconv: error: ") and text in lines[0], lines[0]


#: one usage error, one error of the library, one of the storage: as the console entry point ends them
IN_A_PROCESS = [BAD[0], BAD[5], BAD[-3]]


@pytest.mark.parametrize("argv,code,text", IN_A_PROCESS, ids=[" ".join(b[0]) for b in IN_A_PROCESS])
def test_bad_input_of_the_real_command_is_one_line(argv, code, text):
    out = run(*argv)
    assert out.returncode == code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("nasconv: error: ") and text in lines[0], lines[0]
    assert "Traceback" not in out.stderr


def test_arch_from_another_space(tmp_path):
    f = tmp_path / "r20.json"
    f.write_text(load_space("resnet20").baseline().to_json())
    out = run("cost", "--space", "resnet50", "--arch", str(f))
    assert out.returncode == 1 and "does not belong to space 'resnet50'" in out.stderr
    f.write_text("{not json")
    out = run("cost", "--space", "resnet50", "--arch", str(f))
    assert out.returncode == 1 and "not valid JSON" in out.stderr.strip()


def test_parser_builds_quickly():
    assert build_parser().prog == "nasconv"
