"""A study database written before the redesign resumes under the current code.

tests/fixtures/study_v0.sql is the SQL dump of the database that the `nasconv search` commands
below made at commit 73a292e, loaded back into SQLite here. The same command with more trials
continues each study, keeps every stored trial as it was, and takes the stored evaluations from
the cache."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "study_v0.sql"
COMMON = ["search", "--space", "resnet20", "--budget", "30mflops", "--inline", "--data", "synthetic",
          "--proxy", "synflow", "--resolution", "16", "--json"]
#: study -> the flags it was made with (and how many trials it holds)
STUDIES = {
    "nsga": (["--sampler", "nsga2", "--latency-batch", "1"], 6),
    "tpe": (["--sampler", "tpe", "--no-baseline", "--no-latency", "--objectives", "accuracy,macs"], 5),
}


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=url).get_trials()


def _row(t: optuna.trial.FrozenTrial) -> tuple:
    return (t.number, t.state, t.values, t.params, t.user_attrs)


@pytest.mark.slow
@pytest.mark.parametrize("study", sorted(STUDIES))
def test_a_pre_redesign_study_resumes(tmp_path, study):
    db = tmp_path / "v0.db"
    con = sqlite3.connect(db)
    con.executescript(FIXTURE.read_text())
    con.close()
    url = f"sqlite:///{db}"
    flags, held = STUDIES[study]
    before = _trials(url, study)
    evaluated_before = sum(1 for t in before if t.user_attrs.get("status") in ("evaluated", "cached"))
    assert evaluated_before == held
    out = subprocess.run([sys.executable, "-m", "nasconv.cli", *COMMON, *flags, "--trials", str(held + 2),
                          "--storage", url, "--study", study], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["evaluated"] == held + 2 and res["failed"] == 0
    after = _trials(url, study)
    assert [_row(t) for t in after[:len(before)]] == [_row(t) for t in before]  # nothing stored was changed
    new = after[len(before):]
    assert new and all(t.state == optuna.trial.TrialState.COMPLETE for t in new)
    # the parameter form the study began with is kept (TPE's family form, NSGA-II's flat one)
    form = "s0_family" if study == "tpe" else "s0_op"
    assert all(form in t.params for t in new if t.user_attrs.get("status") != "rejected")
    if study == "nsga":
        assert res["baseline"] == optuna.load_study(study_name=study, storage=url).user_attrs["baseline"]
