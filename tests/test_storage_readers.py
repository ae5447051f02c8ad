"""Readers beside a writer: ``pareto``'s summary (read-only storage) and optuna-dashboard's API
polled without pause while a search writes the same SQLite file. No reader sees a half-written
trial or fails, and the writer is never held past its busy timeout (the search ends normally,
with everything the one-driver checks ask for)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from nasconv.results import study_summary
from nasconv.storage import open_study
from tests.conftest import free_port


def _get(url: str) -> dict | list:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the dashboard ended (rc {proc.returncode}): {proc.stderr.read()[-2000:]}")
        try:
            _get(url)
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() - t0 > timeout:
                pytest.fail("the dashboard did not answer")
            time.sleep(0.3)


@pytest.mark.slow
def test_pareto_and_dashboard_read_while_a_search_writes(search_cli, tmp_path):
    url, trials = f"sqlite:///{tmp_path}/s.db", 4
    # the study exists before the readers start (made at once: no 2-s evaluation)
    first = search_cli.run(url, 1, slow=True, env=search_cli.env(NASCONV_TEST_DELAY="nowhere:0"))
    assert first.returncode == 0, first.stderr
    port = free_port()
    dash = subprocess.Popen([sys.executable, "-m", "nasconv.cli", "dashboard", "--storage", url, "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        api = f"http://127.0.0.1:{port}/api/studies"
        _wait_up(api, dash)
        search = search_cli.start(url, trials, slow=True)
        seen, polls = [], 0
        while search.poll() is None:
            study, tables = open_study("s", url, readonly=True)
            try:
                summary = study_summary(study, tables)
            finally:
                tables.dispose()
            for row in summary["front"]:  # a front member is whole: values and its architecture
                assert row["score"] is not None and row["macs"] > 0 and row["arch"] and len(row["values"]) == 2, row
            seen.append(summary["evaluated"])
            (sid,) = [s["study_id"] for s in _get(api)["study_summaries"] if s["study_name"] == "s"]
            for t in _get(f"{api}/{sid}?after=0")["trials"]:
                if t["state"] == "Complete":
                    assert len(t["values"]) == 2, t
            polls += 1
        out, err = search.communicate(timeout=60)
    finally:
        dash.terminate()
        dash.wait(timeout=30)
    assert search.returncode == 0, err[-2000:]
    assert "locked" not in err and "busy" not in err
    assert polls >= 3 and seen == sorted(seen) and seen[0] < trials  # the readers watched it progress
    search_cli.check(url, trials)
