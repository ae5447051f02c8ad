"""``nasconv space from-model`` and the commands downstream of a model space: cost, sample,
evaluate and an inline search, end to end on synthetic data; bad input in one line."""

from __future__ import annotations

import json

import pytest

from nasconv.cli import main
from tests.test_custom_space import EXAMPLES, ROOT

LOOP = str(ROOT / EXAMPLES["reuse"][0])


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("own") / "loop.yaml"
    assert main(["space", "from-model", LOOP, "--kwargs", '{"width": 8}', "--input", "3x32x32", "--out",
                 str(path)]) == 0
    return path


def test_from_model_writes_a_space_that_show_cost_and_sample_read(space_file, capsys, tmp_path):
    capsys.readouterr()
    text = space_file.read_text()
    assert "kind: model" in text and "fingerprint:" in text and "aliases: [alias]" in text
    assert main(["space", "show", str(space_file), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kind"] == "model" and [s["convs"] for s in shown["stages"]] == [["shared"], ["down"]]
    assert shown["fixed"][0]["name"] == "stem"
    assert main(["sample", "--space", str(space_file), "--seed", "3", "--budget", f"{shown['max_macs']}macs",
                 "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps(sampled))
    assert main(["cost", "--space", str(space_file), "--arch", str(arch), "--measure", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)
    assert cost["arch_hash"] == sampled["arch_hash"] and cost["macs"] == sampled["macs"]
    assert (cost["measured"]["params"], cost["measured"]["macs"]) == (cost["params"], cost["macs"])
    assert [p["name"] for p in cost["parts"]] == ["rest", "s0-32px", "s1-16px"]


def test_from_model_prints_the_file_without_out(capsys):
    assert main(["space", "from-model", LOOP, "--kwargs", '{"width": 8}', "--input", "3x32x32",
                 "--ops", "hetconv,spconv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# A search space made from") and "{op: hetconv, part: [2, 4, 8]}" in out
    assert "gc" not in out.split("stages:")[1]


@pytest.mark.parametrize("argv, code, match", [
    (["no_such_pkg_xyz:make", "--input", "3x32x32"], 2, "importing no_such_pkg_xyz failed: ModuleNotFoundError"),
    ([LOOP, "--input", "3x32"], 2, "--input must be CxHxW"),
    ([LOOP, "--input", "3x32x32", "--kwargs", "{width: 8}"], 2, "--kwargs must be a JSON object"),
    ([LOOP, "--input", "3x32x32", "--kwargs", '{"depth": 3}'], 1, "raised TypeError"),
    ([LOOP, "--input", "3x32x32", "--shared", "refuse"], 1, "called 3 times in one forward pass"),
    ([LOOP, "--input", "5x32x32"], 1, "rejects a 5x32x32 input"),
])
def test_bad_input_is_one_line_with_its_exit_code(argv, code, match, capsys, tmp_path):
    out = tmp_path / "never.yaml"
    assert main(["space", "from-model", *argv, "--out", str(out)]) == code
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_evaluate_and_inline_search_on_a_model_space(space_file, capsys, tmp_path):
    common = ["--data", "synthetic", "--train-images", "64", "--val-images", "32", "--batch-size", "32",
              "--no-latency"]
    assert main(["evaluate", "--space", str(space_file), "--json", *common]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["space"] == "loop-net" and metrics["accuracy"] is not None
    assert main(["space", "show", str(space_file), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    budget = (shown["min_macs"] + shown["baseline"]["macs"]) // 2
    storage = f"sqlite:///{tmp_path / 's.db'}"
    argv = ["search", "--space", str(space_file), "--trials", "3", "--inline", "--storage", storage,
            "--sampler", "random", "--objectives", "accuracy,macs", "--budget", f"{budget}macs", "--json", *common]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["evaluated"] == 3 and result["failed"] == 0
    assert all(t["macs"] <= budget and t["arch"]["kind"] == "model" for t in result["front"])
    study = result["study_name"]
    assert main(["report", "--storage", storage, "--study", study, "--out", str(tmp_path / "r.html")]) == 0
    assert "loop-net" in (tmp_path / "r.html").read_text()
    assert main(["export", "--storage", storage, "--study", study, "--pareto", "--out", str(tmp_path / "ex")]) == 0
    exported = sorted(p.name for p in (tmp_path / "ex").glob("*.py"))
    assert exported and "FACTORY = " in (tmp_path / "ex" / exported[0]).read_text()
    # the stored study is this space's: a space file with other choices is refused on resume
    edited = space_file.read_text().replace("      - {op: gc, groups: [2, 4, 8]}\n", "", 1)
    other = tmp_path / "loop.yaml"
    other.write_text(edited)
    assert main([*argv[:2], str(other), *argv[3:]]) == 1
    assert "differs in the content of space" in capsys.readouterr().err


def test_a_model_space_trains_only_at_the_size_it_was_made_for(space_file, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--space", str(space_file), "--arch", "baseline", "--data", "synthetic",
                 "--resolution", "16", "--no-latency"]) == 2
    err = capsys.readouterr().err.strip()
    assert "made for 32 px inputs" in err and "--input Cx16x16" in err and "\n" not in err


def test_a_dotted_module_is_found_from_the_current_folder(monkeypatch, capsys, tmp_path):
    path, factory = EXAMPLES["reuse"][0].split(":")
    (tmp_path / "mynets_xyz.py").write_text((ROOT / path).read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["space", "from-model", f"mynets_xyz:{factory}", "--kwargs", '{"width": 8}', "--input",
                 "3x32x32"]) == 0
    assert "kind: model" in capsys.readouterr().out
