"""Every numeric flag of every command is bounded where it is parsed: a value outside its range,
not a number or not finite is a usage error (exit 2, one line naming the flag) before anything is
read or a study is created, for flat and multi-fidelity searches alike. A blank ``--study``,
``--device``, ``--budget``, ``--data-dir`` or ``--cache-dir`` is a usage error, not the default
without a word. ``report`` and ``pareto`` refuse a study nasconv did not make, as ``search`` does.

All in process (nasconv.cli.main, as the ``nasconv`` entry point runs it): a parse error costs
milliseconds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest

from nasconv.cli import build_parser, main
from nasconv.cli._common import FloatRange, IntRange
from nasconv.storage import open_storage
from tests.cli_helpers import walk_options

FLAGS = list(walk_options(build_parser()))
NUMERIC = [(path, a) for path, a in FLAGS if isinstance(a.type, (IntRange, FloatRange))]
#: a valid value of each option a command requires (any other required option gets "x")
VALID = {"--space": "resnet20", "--study": "s", "--out": "o"}
#: what some commands need besides their required options to get no further than the flag
EXTRA = {("evaluate",): ["--data", "synthetic"], ("search",): ["--data", "synthetic", "--inline"],
         ("export",): ["--study", "s"], ("report",): ["--json"]}
#: command path -> its required options with valid values, and EXTRA (read from the parser, so
#: that a command added tomorrow is checked the day it is added)
REQUIRED = {}
for _path, _a in FLAGS:
    REQUIRED.setdefault(_path, list(EXTRA.get(_path, [])))
    if _a.required and _a.option_strings[-1] not in REQUIRED[_path]:
        REQUIRED[_path] += [_a.option_strings[-1], VALID.get(_a.option_strings[-1], "x")]


def _argv(path, flag, value, db: Path) -> list[str]:
    argv = [*path, *REQUIRED.get(path, []), f"{flag}={value}"]
    if any(a.dest == "storage" for p, a in FLAGS if p == path):
        argv += ["--storage", f"sqlite:///{db}"]
    return argv


def _bad_values(t) -> list[str]:
    if isinstance(t, IntRange):
        return [str(t.high + 1), str(t.low - 1), "99999999999999999999", "9" * 5000, "1.5", "1e3", "", "nan"]
    return [repr(t.high) if t.high_open else repr(t.high * 2 + 1), repr(t.low) if t.low_open else repr(t.low - 1),
            "nan", "inf", "-inf", "1e309", "x", ""]


def _studies(db: Path) -> list:
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        return con.execute("SELECT study_name FROM studies").fetchall()


def _one_line(capsys, flag: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasconv: error: ") and flag in lines[0], err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


def test_every_numeric_flag_is_bounded():
    """No option parses a number with a plain int or float: each states its range (a flag with
    fixed choices is bounded by them)."""
    unbounded = [f"{' '.join(p)} {a.option_strings[-1]}" for p, a in FLAGS
                 if a.type in (int, float) and not a.choices]
    assert unbounded == []
    assert len(NUMERIC) >= 30  # what this file checks below: the bounded ones, found


@pytest.mark.parametrize("path, action", NUMERIC, ids=[f"{'-'.join(p)}{a.option_strings[-1]}" for p, a in NUMERIC])
def test_out_of_range_values_are_one_usage_line_and_create_nothing(path, action, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flag = action.option_strings[-1]
    db = tmp_path / "db.db"
    for value in _bad_values(action.type):
        assert main(_argv(path, flag, value, db)) == 2, value
        line = _one_line(capsys, flag)
        assert len(line) < 400, line  # a 5000-digit value is shown shortened
    assert not db.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path, action", NUMERIC, ids=[f"{'-'.join(p)}{a.option_strings[-1]}" for p, a in NUMERIC])
def test_the_bounds_themselves_are_accepted(path, action):
    t, flag = action.type, action.option_strings[-1]
    edges = [t.low, t.high] if isinstance(t, IntRange) else \
        [t.low + (0.5 if t.low_open else 0.0), t.high - (0.5 if t.high_open else 0.0)]
    for v in edges:
        args = build_parser().parse_args([*path, *REQUIRED.get(path, []), f"{flag}={v}"])
        assert getattr(args, action.dest) == v


#: the issue's cases: a flat and a multi-fidelity search into a database that holds no study yet
SEARCH = ["search", "--space", "resnet20", "--budget", "30mflops", "--sampler", "random", "--inline",
          "--no-baseline", "--no-latency", "--objectives", "accuracy,macs", "--data", "synthetic", "--trials", "1",
          "--json"]


def test_a_search_with_a_huge_value_leaves_no_study(tmp_path, capsys):
    db = tmp_path / "db.db"
    _, tables = open_storage(f"sqlite:///{db}", heartbeat=False)  # the database exists, empty
    tables.dispose()
    for rungs in ("1", "2"):  # flat and multi-fidelity alike
        for extra in (["--epochs", "99999999999999999999"], ["--train-images", "99999999999"],
                      ["--val-images", "99999999999"], ["--batch-size", "9999999"]):
            assert main([*SEARCH, "--storage", f"sqlite:///{db}", "--rungs", rungs, *extra]) == 2
            _one_line(capsys, extra[0])
    assert _studies(db) == []


@pytest.mark.parametrize("argv, flag", [
    (["search", "--space", "resnet20", "--study", ""], "--study"),
    (["search", "--space", "resnet20", "--study", "  "], "--study"),
    (["pareto", "--study", ""], "--study"),
    (["report", "--study", "", "--json"], "--study"),
    (["dashboard", "--study", ""], "--study"),
    (["export", "--study", "", "--pareto", "--out", "o"], "--study"),
    (["evaluate", "--space", "resnet20", "--device", ""], "--device"),
    (["search", "--space", "resnet20", "--device", ""], "--device"),
    (["search", "--space", "resnet20", "--device", "gpu"], "--device"),
    (["latency", "profile", "--space", "resnet20", "--device", ""], "--device"),
    (["latency", "predict", "--space", "resnet20", "--device", " "], "--device"),
    (["search", "--space", "resnet20", "--budget", ""], "--budget"),
    (["sample", "--space", "resnet20", "--budget", " "], "--budget"),
    (["evaluate", "--space", "resnet20", "--data-dir", ""], "--data-dir"),
    (["search", "--space", "resnet20", "--cache-dir", ""], "--cache-dir"),
    (["ops", "--shape", "1,1,99999999,1"], "--shape"),
])
def test_blank_names_are_usage_errors_not_defaults(argv, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "db.db"
    if any(a.dest == "storage" for p, a in FLAGS if p == tuple(argv[:2 if argv[0] == "latency" else 1])):
        argv = [*argv, "--storage", f"sqlite:///{db}"]
    assert main(argv) == 2
    _one_line(capsys, flag)
    assert not db.exists()


def _plain_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'db.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plain = optuna.create_study(study_name="plain", storage=url, directions=["maximize", "minimize"])
    plain.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    optuna.create_study(study_name="empty", storage=url, directions=["maximize", "minimize"])
    return url


def _dump(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in tables}


@pytest.mark.parametrize("study, trials", [("plain", 2), ("empty", 0)])
def test_report_and_pareto_refuse_a_study_nasconv_did_not_make(study, trials, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    url = _plain_db(tmp_path)
    before = _dump(tmp_path / "db.db")
    for command in (["pareto"], ["pareto", "--json"], ["report", "--json"], ["report", "--out", "r.html"]):
        assert main([*command, "--study", study, "--storage", url]) == 1
        line = _one_line(capsys, "not made by nasconv")
        assert f"study {study!r}" in line and f"({trials} trial(s)" in line and "None" not in line
        assert capsys.readouterr().out == ""
    assert _dump(tmp_path / "db.db") == before and not (tmp_path / "r.html").exists()
