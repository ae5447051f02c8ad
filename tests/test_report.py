"""``nasconv report``: the study's answer, evidence and uncertainty as HTML and JSON, on a real
searched study (SQLite and PostgreSQL), a running one, one with a single trial, and bad input."""

from __future__ import annotations

import json
import re

import optuna
import pytest
from optuna.trial import TrialState

from nasconv.cli import main
from nasconv.precision import resolve_precision
from nasconv.storage import NasconvTables
from tests.conftest import _unavailable
from tests.report_helpers import STUDY, browse, chromium, console_errors, search


def _report(capsys, *argv) -> tuple[int, dict | None, str]:
    capsys.readouterr()
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip().startswith("{") else None), err


def test_report_html_json_and_artifacts(searched, capsys, tmp_path):
    folder, storage = searched
    out = tmp_path / "report.html"
    study = optuna.load_study(study_name=STUDY, storage=storage)
    before = {a.artifact_id for a in optuna.artifacts.get_all_artifact_meta(study)}
    code, rep, err = _report(capsys, "--study", STUDY, "--storage", storage, "--out", str(out), "--json")
    assert code == 0, err
    trials = study.get_trials()
    status = [t.user_attrs.get("status") for t in trials if t.state == TrialState.COMPLETE]
    c = rep["counts"]
    assert (c["trials"], c["evaluated"], c["rejected_over_budget"]) == (
        len(trials), status.count("evaluated"), status.count("rejected"))
    assert c["evaluated"] == 10 and c["failed"] == 0
    assert rep["settings"]["space"] == "resnet20" and rep["settings"]["metric_names"] == ["accuracy", "latency_ms"]
    assert rep["settings"]["devices"] and rep["settings"]["precisions"] == [resolve_precision("auto", "cpu")]
    assert rep["time"]["evaluations"] == 10 and 0 < rep["time"]["evaluation_s"] <= rep["time"]["wall_s"] + 1
    # the front is pareto's, each member with its intervals
    assert main(["pareto", "--study", STUDY, "--storage", storage, "--json"]) == 0
    pareto = json.loads(capsys.readouterr().out)
    assert [f["trial"] for f in rep["front"]] == [f["trial"] for f in pareto["front"]]
    assert all(f["accuracy_ci"][0] <= f["accuracy"] <= f["accuracy_ci"][1] for f in rep["front"])
    assert rep["noise_line"] and rep["baseline"]["macs"] == 40_813_184
    # latency judged on the front and the baseline timed together when the search ended
    assert rep["noise"]["latency"]["paired"] is True and "timed together, interleaved" in rep["noise_line"]
    assert rep["noise"] == pareto["noise"]
    snaps = NasconvTables(storage).snapshots(STUDY)
    assert [h["hypervolume"] for h in rep["hypervolume_history"]] == [s.hypervolume for s in snaps]
    lo, hi = rep["hypervolume_ci"]
    assert lo <= hi and lo > 0
    # per stage and family: counts add up, intervals around estimates, claims only where resolved
    eff = rep["effects"]
    assert eff["candidates"] == 10 and eff["stages"] == ["stage 1", "stage 2", "stage 3"]
    assert all(sum(n.values()) == 10 for n in eff["counts"])
    for name in ("accuracy", "latency"):
        fit = eff["objectives"][name]
        assert fit["reason"] is None and fit["effects"]
        for e in fit["effects"]:
            if not e["identifiable"]:  # the candidates cannot tell it apart: no number at all
                assert e["estimate"] is None and e["ci"] is None and not e["resolved"]
                continue
            assert e["ci"][0] <= e["estimate"] <= e["ci"][1]
            assert e["resolved"] == (e["ci"][0] > 0 or e["ci"][1] < 0)
    resolved = len({(e["stage"], e["family"]) for f in eff["objectives"].values() for e in f["effects"]
                    if e["resolved"]})
    assert rep["claims"]["resolved"] == resolved
    assert len([s for s in rep["claims"]["sentences"] if s.startswith("stage ")]) == resolved
    assert all(set(f) <= set(eff["families"]) for f in eff["on_front"])
    for name in ("accuracy", "latency_ms"):
        params = rep["importance"][name]["params"]
        assert {p["param"] for p in params} >= {"s0_op", "s1_op", "s2_op"}
        assert abs(sum(p["importance"] for p in params) - 1) < 1e-6
        assert all(p["ci"] is None or p["ci"][0] <= p["importance"] <= p["ci"][1] for p in params)
    # the HTML: self-contained, the answer first, heat map and plots embedded as SVG
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http://" not in page.split("<svg")[0]
    assert page.index('id="answer"') < page.index('id="heatmap"') < page.index('id="front-plot"')
    for fig in ("heatmap", "front-plot", "hv-plot"):
        assert re.search(f'<figure id="{fig}"><svg', page)
    assert rep["claims"]["sentences"][0].split(":")[0] in page
    # attached for the dashboard: the report and the front plot, and every trial's note refreshed
    arts = [a for a in optuna.artifacts.get_all_artifact_meta(study) if a.artifact_id not in before]
    assert sorted(a.filename for a in arts) == sorted(["report.html", f"front-{STUDY}.png"])
    assert all((folder / "artifacts" / a.artifact_id).is_file() for a in arts)
    assert "attached to study" in err


def test_report_renders_in_a_browser(searched, tmp_path, capsys):
    if chromium() is None:
        _unavailable("chromium is not installed (apt-get install chromium)")
    folder, storage = searched
    out = tmp_path / "r.html"
    assert _report(capsys, "--study", STUDY, "--storage", storage, "--out", str(out), "--no-attach")[0] == 0
    dom, log = browse(out.as_uri(), tmp_path, budget_ms=2000)
    assert "Which convolution where" in dom and "What this study says" in dom
    for fig in ("heatmap", "front-plot", "hv-plot"):
        assert re.search(f'<figure id="{fig}"><svg', dom), fig
    assert not console_errors(log), console_errors(log)


def test_running_and_single_trial_studies(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/one.db"
    search(storage, 1, baseline=False)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    study.ask()  # a trial still running: the report is a snapshot
    code, rep, err = _report(capsys, "--study", STUDY, "--storage", storage, "--json")
    assert code == 0, err
    assert rep["counts"]["evaluated"] == 1 and rep["counts"]["running"] == 1
    assert rep["effects"]["objectives"]["accuracy"]["reason"].startswith("1 evaluated candidate")
    assert "not computed" in rep["importance"]["accuracy"]["reason"]
    assert "No stage x family effect can be estimated" in rep["claims"]["text"]


def test_no_completed_trial_is_one_line(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/empty.db"
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("space", "resnet20")  # nasconv's (a study it did not make is refused before)
    study.ask()
    code, rep, err = _report(capsys, "--study", "s", "--storage", storage, "--out", str(tmp_path / "r.html"))
    assert code == 1 and err.count("\n") == 1
    assert "has no completed trial yet (1 running)" in err and not (tmp_path / "r.html").exists()


def test_bad_input_is_one_line_and_writes_nothing(searched, tmp_path, capsys):
    _, storage = searched
    code, _, err = _report(capsys, "--study", "nope", "--storage", storage, "--out", str(tmp_path / "a.html"))
    assert code == 1 and "no study 'nope'" in err and err.count("\n") == 1
    code, _, err = _report(capsys, "--study", STUDY, "--storage", storage, "--out", str(tmp_path / "no" / "a.html"))
    assert code == 1 and "does not exist" in err and not (tmp_path / "no").exists()
    existing = tmp_path / "old.html"
    existing.write_text("keep me")
    code, _, err = _report(capsys, "--study", STUDY, "--storage", storage, "--out", str(existing))
    assert code == 1 and "exists; pass --force" in err and existing.read_text() == "keep me"
    code, _, err = _report(capsys, "--study", STUDY, "--storage", storage)
    assert code == 2 and "give --out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.html"]


@pytest.mark.slow
def test_report_on_postgresql(postgres_url, capsys, tmp_path):
    search(postgres_url, 2, baseline=False)
    code, rep, err = _report(capsys, "--study", STUDY, "--storage", postgres_url, "--json", "--out",
                             str(tmp_path / "pg.html"), "--artifacts", str(tmp_path / "arts"))
    assert code == 0, err
    assert rep["counts"]["evaluated"] == 2 and rep["storage"].startswith("postgresql")
    study = optuna.load_study(study_name=STUDY, storage=postgres_url)
    assert len(optuna.artifacts.get_all_artifact_meta(study)) == 2 and any((tmp_path / "arts").iterdir())
