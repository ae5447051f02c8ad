"""benchmarks/latency_model_runs.py: the latency benchmark's runs side by side and pooled."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import load_benchmark


def _space(name: str, pred: list[float], m1: list[float], m2: list[float], drift: float | None = None) -> dict:
    rows = [{"arch_hash": f"a{i}", "predicted_ms": p, "measured_ms": a, "again_ms": b}
            for i, (p, a, b) in enumerate(zip(pred, m1, m2))]
    extra = {"as_a_search": {"drift": drift}} if drift else {}
    return {"space": name, "rows": rows, "rho_gain_ci": [0.0, 0.0], **extra}


def test_runs_are_read_side_by_side_and_pooled_over_architectures(tmp_path):
    lm = load_benchmark("latency_model_runs")
    rng = np.random.default_rng(0)
    true = np.linspace(2.0, 6.0, 40)
    # run 1: the prediction is the truth, the measurement noisy (re-test well below the prediction's rho)
    noisy1, noisy2 = true * rng.normal(1, 0.08, 40), true * rng.normal(1, 0.08, 40)
    # run 2: the machine ran 20% slow while measuring; the run measured that drift first
    slow1, slow2 = true * 1.2 * rng.normal(1, 0.01, 40), true * 1.2 * rng.normal(1, 0.01, 40)
    for when, space in (("2026-12-05 10:00 UTC", _space("r", list(true), list(noisy1), list(noisy2))),
                        ("2026-12-05 11:00 UTC", _space("r", list(true), list(slow1), list(slow2), drift=1.2))):
        (tmp_path / f"latency_model-{when[11:13]}.json").write_text(json.dumps({"when": when, "spaces": [space]}))
    (tmp_path / "latency_model-earlier-runs.json").write_text("[]")  # an earlier method's file: not read
    res = lm.collect(tmp_path)
    assert [r["when"][11:16] for r in res["runs"]] == ["10:00", "11:00"]
    slow = res["runs"][1]
    assert slow["within"] == 0 and slow["search_within"] == 40  # only the drift-scaled prediction is within 10%
    (pool,) = res["pooled"]
    assert pool["runs"] == 2 and pool["n"] == 80 and pool["runs_at_90"] == 2
    k1 = int(np.sum(np.abs(true - noisy1) / noisy1 <= 0.10))
    assert pool["within"] == k1 / 80 and pool["search_within"] == (k1 + 40) / 80
    lo, hi = pool["search_within_ci"]
    assert lo < pool["search_within"] <= hi <= 1
    # the truth ranks a noisy measurement better than that measurement re-ranks itself
    assert pool["rho_gain"] > 0 and pool["rho_gain_ci"][0] > 0
    text = lm.report(res)
    assert "| r | 2 | 80 |" in text and "| measurements |" in text and "(drift 1.200)" in text


def test_an_all_within_space_still_gets_an_interval_below_one(tmp_path):
    lm = load_benchmark("latency_model_runs")
    t = list(np.linspace(1.0, 3.0, 20))
    (tmp_path / "latency_model.json").write_text(json.dumps({"when": "x", "spaces": [_space("s", t, t, t)]}))
    (pool,) = lm.collect(tmp_path)["pooled"]
    assert pool["within"] == 1.0 and pool["within_ci"][0] < 0.9  # Wilson's, where the bootstrap gives [1, 1]
