"""nasconv.latency.effects and nasconv.results.latency_effects: stage x family latency effects from
a latency table's parts (a synthetic table: these tests check the arithmetic, not a device), and
the report showing them for a study with no trained candidate."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from nasconv.latency import Calibration, LatencyTable, current_setting, open_tables, round_key, table_effects
from nasconv.latency.effects import MIDDLE_OF_3_VAR, slope_spread
from nasconv.profile import LatencyResult
from nasconv.results.html import render_html
from nasconv.results.latency_effects import LABEL, with_table_latency
from nasconv.results.report import build_report
from nasconv.spaces import load_space
from nasconv.stats import Z95

SPACE = """\
name: tiny-effects
description: two stages, a family with two settings and one the table lacks
resolution: 16
in_channels: 3
num_classes: 10
stem: {type: cifar, width: 8}
block: basic
choices: [standard, {op: gc, groups: [2, 4]}, {op: tbc, blocks: [2]}]
stages:
  - {depth: {choices: [1, 2], default: 1}, width: 8, stride: 1}
  - {depth: 1, width: {choices: [8, 16], default: 16}, stride: 2}
"""
S1 = "basic:{}:8>8x1/s1@16"  # stage 1: its only block shape (depth 2 runs it twice)
S2 = ("basic:{}:8>8x1/s2@16", "basic:{}:8>16x1/s2@16")  # stage 2: width 8 or 16
#: (median ms, half-width of its 95% interval) per op and part; tbc has none
PARTS = {"standard": {S1: (2.0, 0.04), S2[0]: (1.0, 0.02), S2[1]: (1.6, 0.02)},
         "gc(groups=2)": {S1: (1.0, 0.30), S2[0]: (0.9, 0.02), S2[1]: (1.5, 0.02)},
         "gc(groups=4)": {S1: (0.6, 0.02), S2[0]: (0.95, 0.02), S2[1]: (1.55, 0.02)}}
#: each part's three profiling passes, relative to its median
PASSES = (0.9, 1.0, 1.1)
SLOPE, INTERCEPT = 1.25, 0.5


def _res(median: float, half: float) -> LatencyResult:
    return LatencyResult(median, 0.0, 0.0, 10, False, 1, 16, "cpu", "cpu", 1, torch.__version__,
                         median - half, median + half)


@pytest.fixture()
def synthetic(tmp_path):
    """(url, space, table, setting, calibration): the parts above stored as a profile stores them."""
    path = tmp_path / "tiny-effects.yaml"
    path.write_text(SPACE)
    space = load_space(str(path))
    url = f"sqlite:///{tmp_path}/s.db"
    tables = open_tables(url)
    table = LatencyTable(tables, url)
    setting = current_setting("cpu", threads=1)
    for op, parts in PARTS.items():
        for pattern, (median, half) in parts.items():
            key = pattern.format(op)
            table.put(setting, key, _res(median, half))
            for i, f in enumerate(PASSES):
                table.put(setting, round_key(key, i), _res(median * f, half))
    cal = Calibration(INTERCEPT, SLOPE, 4, 0.0, tuple((x, INTERCEPT + SLOPE * x) for x in (2.0, 3.0, 5.0, 8.0)))
    table.put_calibration(setting, space.name, space.content_hash, cal.to_dict())
    yield url, space, table, setting, cal
    tables.dispose()


def _by_hand(coef: dict[str, float]) -> tuple[float, float, float]:
    """Estimate and 95% interval of SLOPE x sum(a x median), each part's se the larger of its own
    interval's and the passes' (the middle of three passes spread by PASSES)."""
    rel = (math.log(PASSES[2]) - math.log(PASSES[0])) / 1.693
    medians = {pattern.format(op): v for op, parts in PARTS.items() for pattern, v in parts.items()}
    diff = sum(a * medians[k][0] for k, a in coef.items())
    var = sum((a * max(medians[k][1] / Z95, math.sqrt(MIDDLE_OF_3_VAR) * rel * medians[k][0])) ** 2
              for k, a in coef.items())
    est, sd = SLOPE * diff, SLOPE * math.sqrt(var)
    return est, est - Z95 * sd, est + Z95 * sd


def test_effects_are_the_parts_differences_with_propagated_intervals(synthetic):
    _, space, table, setting, cal = synthetic
    got = table_effects(space, table, setting, cal, ["standard", "standard"])
    assert got.slope_rel_sd == pytest.approx(0.0, abs=1e-9)  # the calibration networks lie on a line
    # stage 1: depth 1 or 2 (1.5 blocks on average), gc the mean of groups 2 and 4
    gc1 = got.get(0, "gc").effect
    want = _by_hand({S1.format("gc(groups=2)"): 0.75, S1.format("gc(groups=4)"): 0.75, S1.format("standard"): -1.5})
    assert (gc1.estimate_ms, gc1.low_ms, gc1.high_ms) == pytest.approx(want)
    assert gc1.estimate_ms == pytest.approx(SLOPE * 1.5 * (0.8 - 2.0)) and gc1.resolved
    assert gc1.parts_ms == pytest.approx(1.5 * (0.8 - 2.0))
    # each setting against the reference: groups=2's own wide interval (0.30 ms) is the larger there
    settings = dict(got.get(0, "gc").settings)
    g2 = settings["gc(groups=2)"]
    assert (g2.estimate_ms, g2.low_ms, g2.high_ms) == pytest.approx(
        _by_hand({S1.format("gc(groups=2)"): 1.5, S1.format("standard"): -1.5}))
    assert settings["gc(groups=4)"].estimate_ms == pytest.approx(SLOPE * 1.5 * (0.6 - 2.0))
    # stage 2: width 8 or 16, one block; a 0.1 ms difference the passes' spread does not resolve
    gc2 = got.get(1, "gc").effect
    want = _by_hand({**{p.format(op): 0.25 for p in S2 for op in ("gc(groups=2)", "gc(groups=4)")},
                     **{p.format("standard"): -0.5 for p in S2}})
    assert (gc2.estimate_ms, gc2.low_ms, gc2.high_ms) == pytest.approx(want)
    assert gc2.estimate_ms == pytest.approx(SLOPE * -0.075) and not gc2.resolved
    # a family the table has no part of: no number, the missing part named
    tbc = got.get(0, "tbc")
    assert tbc.effect is None and tbc.missing == (S1.format("tbc(blocks=2)"),)
    # the reference need not be standard: gc against tbc lacks tbc's parts
    assert got.get(0, "standard") is None
    assert table_effects(space, table, setting, cal, ["tbc", "tbc"]).get(1, "gc").effect is None


def test_the_slopes_spread_comes_from_its_networks():
    exact = Calibration(0.5, 1.25, 4, 0.0, tuple((x, 0.5 + 1.25 * x) for x in (2.0, 3.0, 5.0, 8.0)))
    assert slope_spread(exact) == pytest.approx(0.0, abs=1e-9)
    xs, off = (2.0, 3.0, 5.0, 8.0, 9.0, 12.0), (1.05, 0.95, 1.04, 0.97, 1.0, 1.03)
    noisy = Calibration(0.5, 1.25, 6, 0.05, tuple((x, (0.5 + 1.25 * x) * f) for x, f in zip(xs, off)))
    assert 0.0 < slope_spread(noisy) < 0.2
    two = Calibration(0.0, 1.25, 2, 0.0, ((2.0, 2.5), (4.0, 5.0)))
    assert slope_spread(two) == pytest.approx(0.25 / Z95)  # too few networks: the model's +-25%


def _study(url: str, space, **eval_config) -> optuna.Study:
    """A study of ``space`` whose two candidates were both rejected over budget: nothing trained."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="untrained", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("space", space.source)
    study.set_user_attr("objectives", ["accuracy", "latency"])
    study.set_user_attr("eval_config", {"device": "cpu", "latency_batch": 1, "proxy": "train", **eval_config})
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[0.0, 1e6],
                                                  user_attrs={"status": "rejected"}))
    return study


def test_the_report_shows_the_tables_effects_without_a_trained_candidate(synthetic):
    url, space, table, setting, _ = synthetic
    study = _study(url, space)
    tables = open_tables(url)
    try:
        rep = build_report(study, tables, storage=url)
    finally:
        tables.dispose()
    assert rep["counts"]["evaluated"] == 0
    lat = rep["effects"]["objectives"]["latency"]
    assert lat["source"] == "latency table" and lat["label"] == LABEL and lat["setting"] == setting.where()
    cells = {(e["stage"], e["family"]): e for e in lat["effects"]}
    assert set(cells) == {(0, "gc"), (0, "tbc"), (1, "gc"), (1, "tbc")}
    assert cells[0, "gc"]["resolved"] and cells[0, "gc"]["estimate"] == pytest.approx(SLOPE * 1.5 * (0.8 - 2.0))
    assert cells[0, "gc"]["n"] == 0 and len(cells[0, "gc"]["settings"]) == 2
    assert not cells[1, "gc"]["resolved"] and cells[0, "tbc"]["estimate"] is None and cells[0, "tbc"]["missing"]
    assert rep["effects"]["latency_fitted"] is None  # nothing timed to fit
    assert rep["claims"]["resolved"] == 1
    assert any(s.startswith("stage 1: gc cuts latency by 2.25 ms") for s in rep["claims"]["sentences"])
    assert any("latency table" in s for s in rep["claims"]["sentences"])
    page = render_html(rep, "")
    assert LABEL in page and "no part in the latency table" in page and '<figure id="heatmap">' in page


def test_without_a_table_for_the_studys_setting_the_effects_are_unchanged(synthetic):
    url, space, *_ = synthetic
    study = _study(url, space, latency_batch=8)  # timed at batch 8: the table is for batch 1
    tables = open_tables(url)
    try:
        effects = {"references": ["standard", "standard"], "counts": [{}, {}], "objectives": {"latency": {"x": 1}}}
        assert with_table_latency(study, tables, [], effects, storage=url) is effects
    finally:
        tables.dispose()
