"""Bad input changes nothing: each case runs the CLI, which ends in one line on stderr (no
traceback) with exit 2 (usage) or 1 (the rest), and leaves the study database's rows and every
file on disk byte-identical. Among them: studies that are not what they seem (one made by plain
Optuna, one of a space whose name a user's file reuses with other content)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from nasconv.cli import main
from nasconv.errors import SpaceError, StorageError
from nasconv.search import SearchConfig
from nasconv.search import study as study_mod
from nasconv.spaces import MAX_YAML_NODES, load_space
from nasconv.storage import open_storage

SHIPPED = Path(__file__).resolve().parents[1] / "search_spaces"
#: conftest's SearchCLI.BASE with its fast proxy: resnet20, synflow on synthetic data at 16 px
SEARCH = ["search", "--space", "resnet20", "--budget", "30mflops", "--sampler", "random", "--inline",
          "--no-baseline", "--no-latency", "--objectives", "accuracy,macs", "--data", "synthetic",
          "--proxy", "synflow", "--resolution", "16", "--trials", "2", "--json", "--storage", "sqlite:///db.db"]


def _resnet20(**changes) -> dict:
    data = yaml.safe_load((SHIPPED / "resnet20.yaml").read_text())
    data.update(changes)
    return data


def _stage_change(i: int, **changes) -> dict:
    data = _resnet20()
    data["stages"][i].update(changes)
    return data


def _dump(db: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    finally:
        con.close()


def _files(root: Path) -> dict:
    # The database's own files are compared by their rows: SQLite may fold its write-ahead log
    # into the file when a reader closes, which changes bytes but no row.
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("db.db")}


def _make_db(tmp: Path) -> None:
    """A database as a user has it: nasconv's tables, a study stamped by nasconv for the shipped
    resnet20 (``s``), and two made by plain Optuna: one with trials, one empty with one
    direction."""
    url = f"sqlite:///{tmp / 'db.db'}"
    storage, tables = open_storage(url, heartbeat=False)
    try:
        cfg = SearchConfig(space="resnet20", budget="30mflops", objectives=("accuracy", "macs"), storage=url)
        study_mod.open_study(storage, "s", cfg, load_space("resnet20"), _budget("30mflops"))
    finally:
        tables.dispose()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plain = optuna.create_study(study_name="plain", storage=url, directions=["maximize", "minimize"])
    plain.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    optuna.create_study(study_name="plain1", storage=url, directions=["minimize"])


def _budget(text: str):
    from nasconv.budget import parse_budget

    return parse_budget(text)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: id -> (argv, expected exit code, a phrase of the message, files to write first)
CASES: dict[str, tuple[list[str], int, str, dict]] = {
    "plain-optuna-study-with-trials": ([*SEARCH, "--study", "plain"], 1, "not made by nasconv", {}),
    "plain-optuna-study-other-directions": ([*SEARCH, "--study", "plain1"], 1, "optimises 1 value", {}),
    "reused-space-name": ([*SEARCH[:2], "mine.yaml", *SEARCH[3:], "--study", "s"], 1, "content of space",
                          {"mine.yaml": _stage_change(2, width=48)}),
    "missing-data": ([*SEARCH, "--study", "new", "--data", "cifar10:/nonexistent"], 1, "does not exist", {}),
    "negative-seed": ([*SEARCH, "--study", "new", "--seed", "-1"], 2, "--seed", {}),
    "huge-seed": ([*SEARCH, "--study", "new", "--seed", "99999999999"], 2, "--seed", {}),
    "gpus-nan": ([*SEARCH, "--study", "new", "--gpus-per-trial", "nan"], 2, "--gpus-per-trial", {}),
    "gpus-inf": ([*SEARCH, "--study", "new", "--gpus-per-trial", "inf"], 2, "--gpus-per-trial", {}),
    "cpus-negative": ([*SEARCH, "--study", "new", "--cpus-per-worker", "-5"], 2, "--cpus-per-worker", {}),
    "unreachable-address": ([*[a for a in SEARCH if a != "--inline"], "--study", "new", "--address",
                             f"127.0.0.1:{_free_port()}"], 1, "cannot reach a Ray cluster", {}),
    "expansion-0": (["evaluate", "--space", "e.yaml", "--data", "synthetic", "--proxy", "synflow", "--no-latency",
                     "--json"], 1, "expansion", {"e.yaml": _resnet20(block="bottleneck", expansion=0)}),
    "billion-laughs": (["space", "show", "lol.yaml"], 1, "aliases", {"lol.yaml": None}),
    "latency-batch": (["evaluate", "--space", "resnet20", "--latency-batch", "1000000"], 2, "--latency-batch", {}),
    "train-resolution": (["evaluate", "--space", "resnet20", "--resolution", "100000"], 2, "resolution", {}),
    "cost-resolution-0": (["cost", "--space", "resnet20", "--resolution", "0"], 2, "--resolution", {}),
    "cost-resolution-negative": (["cost", "--space", "resnet20", "--resolution=-5"], 2, "--resolution", {}),
    "ops-kernel-0": (["ops", "--kernel", "0"], 2, "--kernel", {}),
    "ops-kernel-even": (["ops", "--kernel", "2"], 2, "--kernel", {}),
    # files that never end, are binary or are folders: read at most a bounded number of bytes
    "space-dev-zero": ([*SEARCH[:2], "/dev/zero", *SEARCH[3:], "--study", "s"], 1, "larger than 1,000,000", {}),
    "arch-dev-zero": (["cost", "--space", "resnet20", "--arch", "/dev/zero"], 1, "larger than 1,000,000", {}),
    "space-binary": (["space", "show", "bin.yaml"], 1, "not UTF-8", {"bin.yaml": b"a: \xd0\xff\x00"}),
    "arch-binary": (["cost", "--space", "resnet20", "--arch", "a.json"], 1, "not UTF-8", {"a.json": b"\xff{}"}),
    "arch-folder": (["cost", "--space", "resnet20", "--arch", "."], 1, "Is a directory", {}),
    # multi-fidelity settings
    "rungs-0": ([*SEARCH, "--study", "new", "--proxy", "train", "--rungs", "0"], 2, "--rungs", {}),
    "eta-1": ([*SEARCH, "--study", "new", "--proxy", "train", "--rungs", "2", "--eta", "1"], 2, "--eta", {}),
    "eta-nan": ([*SEARCH, "--study", "new", "--proxy", "train", "--rungs", "2", "--eta", "nan"], 2, "--eta", {}),
    "repeats-negative": ([*SEARCH, "--study", "new", "--proxy", "train", "--repeats", "-1"], 2, "--repeats", {}),
    "rungs-with-zero-cost-proxy": ([*SEARCH, "--study", "new", "--rungs", "3"], 2, "training proxy", {}),
    "repeats-with-zero-cost-proxy": ([*SEARCH, "--study", "new", "--repeats", "2"], 2, "training proxy", {}),
    "top-rung-beyond-the-dataset": ([*SEARCH, "--study", "new", "--proxy", "train", "--rungs", "4", "--eta", "3",
                                     "--train-images", "1000"], 2, "trains on 27,000 images", {}),
    "resumed-with-other-rungs": ([*SEARCH, "--study", "s", "--proxy", "train", "--rungs", "2", "--train-images",
                                  "100"], 1, "was run with 1 rung(s)", {}),
}
if not torch.cuda.is_available():
    CASES["cuda-without-gpu"] = ([*SEARCH, "--study", "new", "--device", "cuda"], 1, "CUDA", {})

LAUGHS = "a: &a [" + ",".join(["lol"] * 9) + "]\n" + "".join(
    f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_changes_nothing(tmp_path, case, monkeypatch, capsys):
    argv, code, phrase, files = CASES[case]
    for name, data in files.items():
        if isinstance(data, bytes):
            (tmp_path / name).write_bytes(data)
        else:
            (tmp_path / name).write_text(LAUGHS if data is None else yaml.safe_dump(data, sort_keys=False))
    if "search" in argv:
        _make_db(tmp_path)
    rows, disk = (_dump(tmp_path / "db.db") if (tmp_path / "db.db").exists() else None), _files(tmp_path)
    # In this process (the CLI's entry point, as `nasconv` runs it; a process each cost ~5 s of
    # imports x 40 cases). tests/test_cli.py runs its bad inputs as processes.
    monkeypatch.chdir(tmp_path)
    returncode = main(argv)
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert returncode == code, stderr
    assert len(lines) == 1 and "Traceback" not in stderr and phrase in lines[0], stderr
    assert "internal error" not in lines[0]
    if rows is not None:
        assert _dump(tmp_path / "db.db") == rows
    assert _files(tmp_path) == disk


# --- studies, in process ----------------------------------------------------------------------

def test_an_empty_plain_study_of_the_same_directions_is_refused_after_the_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(study_mod, "STAMP_WAIT_S", 0.3)
    url = f"sqlite:///{tmp_path / 'db.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="p", storage=url, directions=["maximize", "minimize"])
    storage, tables = open_storage(url, heartbeat=False)
    try:
        cfg = SearchConfig(space="resnet20", budget="30mflops", objectives=("accuracy", "macs"), storage=url)
        with pytest.raises(StorageError, match="not made by nasconv"):
            study_mod.open_study(storage, "p", cfg, load_space("resnet20"), _budget("30mflops"))
        assert optuna.load_study(study_name="p", storage=url).user_attrs == {}
    finally:
        tables.dispose()


def test_a_study_without_the_content_hash_resumes_when_its_trials_fit_and_is_then_stamped(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.db'}"
    storage, tables = open_storage(url, heartbeat=False)
    space = load_space("resnet20")
    other = load_space(str(_write(tmp_path / "o.yaml", _stage_change(2, width=48))))
    try:
        cfg = SearchConfig(space="resnet20", budget="30mflops", objectives=("accuracy", "macs"), storage=url)
        study = study_mod.open_study(storage, "old", cfg, space, _budget("30mflops"))
        arch = space.baseline()
        study.add_trial(optuna.trial.create_trial(values=[1.0, 2.0], user_attrs={"arch": arch.to_dict()}))
        # as a study written before the hash: no space_hash attribute
        with sqlite3.connect(tmp_path / "db.db") as con:
            con.execute("DELETE FROM study_user_attributes WHERE key = 'space_hash'")
        with pytest.raises(StorageError, match="other content"):
            study_mod.open_study(storage, "old", cfg, other, _budget("30mflops"))
        assert "space_hash" not in optuna.load_study(study_name="old", storage=url).user_attrs
        study_mod.open_study(storage, "old", cfg, space, _budget("30mflops"))
        assert optuna.load_study(study_name="old", storage=url).user_attrs["space_hash"] == space.content_hash
        with pytest.raises(StorageError, match="content of space"):
            study_mod.open_study(storage, "old", cfg, other, _budget("30mflops"))
    finally:
        tables.dispose()


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- space files, in process ------------------------------------------------------------------

def test_content_hash_is_the_content():
    space = load_space("resnet20")
    assert len(space.content_hash) == 16
    assert load_space(str(SHIPPED / "resnet20.yaml")).content_hash == space.content_hash


def test_content_hash_ignores_description_and_follows_choices(tmp_path):
    base = load_space("resnet20").content_hash
    same = load_space(str(_write(tmp_path / "a.yaml", _resnet20(description="mine"))))
    assert same.content_hash == base
    fewer = _resnet20()
    fewer["choices"] = fewer["choices"][:-1]
    assert load_space(str(_write(tmp_path / "b.yaml", fewer))).content_hash != base
    assert load_space(str(_write(tmp_path / "c.yaml", _stage_change(0, stride=2)))).content_hash != base


@pytest.mark.parametrize("data, where", [
    (_resnet20(num_classes=0), "num_classes: must be in [1"),
    (_resnet20(in_channels=-3), "in_channels: must be in [1"),
    (_resnet20(resolution=10**9), "resolution: must be in [1"),
    (_resnet20(block="bottleneck", expansion=0), "expansion: must be in [1"),
    (_resnet20(block="bottleneck", expansion=2.5), "expansion: must be int"),
    (_resnet20(stem={"type": "cifar", "width": 10**9}), "stem.width: must be in [1"),
    (_stage_change(2, width=10**9), "stages[2].width: must be in [1"),
    (_stage_change(1, width={"choices": [16, 10**9]}), "stages[1].width.choices: must be in [1"),
    (_stage_change(1, width={"base": 32, "multipliers": [1, 10**8]}), "stages[1].width.multipliers"),
    (_stage_change(0, depth=10**6), "stages[0].depth: must be in [1"),
    (_stage_change(0, depth={"choices": [True, 2]}), "stages[0].depth.choices"),
])
def test_out_of_range_values_are_refused_with_their_key_path(tmp_path, data, where):
    with pytest.raises(SpaceError) as exc:
        load_space(str(_write(tmp_path / "s.yaml", data)))
    assert where in str(exc.value)


def test_duplicate_keys_are_refused_with_path_and_lines(tmp_path):
    text = (SHIPPED / "resnet20.yaml").read_text().replace("num_classes: 10", "num_classes: 10\nnum_classes: 100")
    (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(SpaceError, match=r"num_classes: duplicate key \(lines \d+ and \d+\)"):
        load_space(str(tmp_path / "d.yaml"))
    (tmp_path / "e.yaml").write_text("name: x\nstages:\n  - {depth: 1, depth: 2}\n")
    with pytest.raises(SpaceError, match=r"stages\[0\]\.depth: duplicate key"):
        load_space(str(tmp_path / "e.yaml"))


def test_merge_keys_still_work(tmp_path):
    text = (SHIPPED / "resnet20.yaml").read_text().replace(
        "  - {depth: {choices: [2, 3, 4], default: 3}, width: {base: 32",
        "  - {<<: {stride: 1}, depth: {choices: [2, 3, 4], default: 3}, width: {base: 32")
    (tmp_path / "m.yaml").write_text(text.replace("width: {base: 32, multipliers: [0.5, 1, 1.5, 2]}, stride: 2",
                                                  "width: {base: 32, multipliers: [0.5, 1, 1.5, 2]}"))
    assert load_space(str(tmp_path / "m.yaml")).stages[1].stride == 1


def test_billion_laughs_is_refused_at_once(tmp_path):
    import time

    (tmp_path / "lol.yaml").write_text(LAUGHS)
    t0 = time.process_time()  # CPU time: a busy machine does not count, an expansion would
    with pytest.raises(SpaceError, match=f"more than {MAX_YAML_NODES:,} YAML nodes"):
        load_space(str(tmp_path / "lol.yaml"))
    assert time.process_time() - t0 < 10


def test_a_huge_hyperparameter_grid_is_refused_before_it_is_enumerated(tmp_path):
    data = _resnet20()
    data["choices"] = [{"op": "gc", "groups": list(range(1, 70))}, {"op": "igc", "M": list(range(1, 70))}]
    data["choices"][0]["groups"] = [2] * 5000
    with pytest.raises(SpaceError, match=r"choices\[0\]: its hyperparameter lists make 5,000"):
        load_space(str(_write(tmp_path / "g.yaml", data)))


def test_a_stage_too_big_to_bound_is_refused(tmp_path):
    data = _stage_change(1, depth={"choices": list(range(1, 101))},
                         width={"choices": list(range(16, 16 + 16 * 40, 16))})
    with pytest.raises(SpaceError, match=r"stages\[1\]: .* combinations"):
        load_space(str(_write(tmp_path / "big.yaml", data)))


def test_a_space_of_a_trillion_architectures_is_counted_and_bounded_at_once(tmp_path):
    import time

    data = _resnet20(choices=["standard", {"op": "gc", "groups": [2, 4, 8, 16]}],
                     stages=[{"depth": {"choices": list(range(1, 21))}, "width": 64, "stride": 1}] * 6)
    t0 = time.process_time()  # CPU time: a busy machine does not count, an enumeration would
    s = load_space(str(_write(tmp_path / "t.yaml", data)))
    summary = s.summary()
    assert summary["architectures"] == 100**6
    assert summary["min_macs"] < summary["max_macs"]
    assert time.process_time() - t0 < 60


def test_json_output_is_strict(capsys):
    import json

    from nasconv.cli._common import print_json

    print_json({"val_loss": float("nan"), "x": [float("inf"), 1.5, {"y": float("-inf")}], "n": 3})
    text = capsys.readouterr().out
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard {c}")) == \
        {"val_loss": None, "x": [None, 1.5, {"y": None}], "n": 3}
