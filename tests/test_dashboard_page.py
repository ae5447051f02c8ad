"""optuna-dashboard speaks nasconv: named objectives, a note on every evaluated trial, the report
attached as an artifact; checked in a real headless browser against ``nasconv dashboard``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from optuna_dashboard import get_note

from nasconv.cli import main
from nasconv.search.objectives import metric_names
from tests.conftest import _unavailable, free_port
from tests.report_helpers import STUDY, browse, chromium


def test_metric_names_and_trial_notes(searched):
    _, storage = searched
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert study.metric_names == ["accuracy", "latency_ms"]
    evaluated = [t for t in study.trials if t.user_attrs.get("status") == "evaluated"]
    assert len(evaluated) == 10
    for t in evaluated:
        note = get_note(optuna.trial.Trial(study, t._trial_id))
        assert note.startswith(f"### nasconv: trial {t.number} (evaluated)")
        for s, label in enumerate(t.user_attrs["ops"].split(" | ")):
            assert f"| {s + 1} | `{label}` |" in note
        assert f"latency **{t.user_attrs['latency_ms']:.3f} ms**" in note and "IQR" in note
        lo, hi = t.user_attrs["accuracy_ci"]
        assert f"accuracy **{t.user_attrs['accuracy']:.4f}** (95% [{lo:.4f}, {hi:.4f}]" in note
        assert "rung 0; device" in note
    rejected = [t for t in study.trials if t.user_attrs.get("status") == "rejected"]
    assert all(get_note(optuna.trial.Trial(study, t._trial_id)) == "" for t in rejected)


def test_metric_names_of_zero_cost_and_cost_objectives():
    assert metric_names(["accuracy", "macs", "params"], "synflow") == ["synflow_score", "macs", "params"]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"nasconv dashboard exited: {proc.stderr.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail("nasconv dashboard did not start listening")


@pytest.mark.slow
def test_dashboard_shows_names_notes_and_the_report(searched, tmp_path, capsys):
    if chromium() is None:
        _unavailable("chromium is not installed (apt-get install chromium)")
    folder, storage = searched
    assert main(["report", "--study", STUDY, "--storage", storage, "--out", str(tmp_path / "report.html")]) == 0
    capsys.readouterr()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nasconv.cli", "dashboard", "--storage", storage, "--port",
                             str(port), "--study", STUDY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_port(port, proc)
        study = optuna.load_study(study_name=STUDY, storage=storage)
        sid = study._study_id
        page = f"http://127.0.0.1:{port}/dashboard/studies/{sid}"
        dom, _ = browse(page, tmp_path)
        assert "latency_ms" in dom and "accuracy" in dom and "Objective 0" not in dom
        assert "report.html" in dom and f"front-{STUDY}.png" in dom  # the study's artifacts
        trial = next(t for t in study.trials if t.user_attrs.get("status") == "evaluated")
        dom, _ = browse(f"{page}/trials?numbers={trial.number}", tmp_path)
        assert f"nasconv: trial {trial.number} (evaluated)" in dom
        assert trial.user_attrs["ops"].split(" | ")[0] in dom
        # the attached report is served as it was written
        api = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{sid}?after=0").read())
        report = next(a for a in api["artifacts"] if a["filename"] == "report.html")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/artifacts/{sid}/{report['artifact_id']}").read()
        assert body == (tmp_path / "report.html").read_bytes()
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert f"/dashboard/studies/{sid} for" in err and f"artifacts in {folder / 'artifacts'}" in err


def test_dashboard_unknown_study_is_one_line(searched, capsys):
    _, storage = searched
    assert main(["dashboard", "--storage", storage, "--study", "nope", "--port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert "no study 'nope'" in err and STUDY in err and err.count("\n") == 1
