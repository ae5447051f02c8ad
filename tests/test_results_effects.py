"""Stage x family effects: known effects are recovered with honest intervals; the claims they
support are made, and only those."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nasconv.results.claims import claims
from nasconv.results.effects import fit_effects, reference_families, stage_families

FAMILIES = ["standard", "gc", "tbc", "ghost"]
TRUE = {(0, "gc"): -2.0, (1, "tbc"): 1.5}


def _simulate(rng, n=60, sd=0.7, depth_effect=0.0):
    rows = [[FAMILIES[rng.integers(4)] for _ in range(4)] for _ in range(n)]
    depth = rng.integers(1, 4, size=(n, 1)).astype(float)
    y = [10 + sum(TRUE.get((s, f), 0.0) for s, f in enumerate(r)) + depth_effect * d[0] + rng.normal(0, sd)
         for r, d in zip(rows, depth)]
    return rows, y, depth


def test_known_effects_are_recovered_with_covering_intervals():
    rng = np.random.default_rng(0)
    covered = total = resolved_true = false_claims = 0
    for _ in range(20):
        rows, y, _ = _simulate(rng)
        fit = fit_effects(rows, y, ["standard"] * 4)
        assert fit.reason is None and len(fit.effects) == 12
        for e in fit.effects:
            truth = TRUE.get((e.stage, e.family), 0.0)
            total += 1
            covered += e.low <= truth <= e.high
            if truth:
                resolved_true += e.resolved
            else:
                false_claims += e.resolved
    assert covered / total >= 0.9  # nominal 95%
    assert resolved_true == 40  # both real effects, every time
    assert false_claims / 200 <= 0.1


def test_depth_covariate_is_taken_out():
    rng = np.random.default_rng(1)
    rows, y, depth = _simulate(rng, depth_effect=5.0)
    with_cov = fit_effects(rows, y, ["standard"] * 4, covariates=depth)
    without = fit_effects(rows, y, ["standard"] * 4)
    assert with_cov.residual_sd < 1.0 < without.residual_sd
    gc = with_cov.get(0, "gc")
    assert gc.resolved and gc.low <= TRUE[(0, "gc")] <= gc.high


def test_too_few_or_uniform_candidates_say_why():
    assert "at least 3" in fit_effects([["gc"]] * 2, [1.0, 2.0], ["standard"]).reason
    assert "reference family" in fit_effects([["standard"]] * 5, [1, 2, 3, 4, 5], ["standard"]).reason
    assert "same value" in fit_effects([["gc"], ["standard"], ["gc"]], [1.0, 1.0, 1.0], ["standard"]).reason


def test_families_and_references():
    assert stage_families("tbc(blocks=2) | standard | gc(groups=4)") == ["tbc", "standard", "gc"]
    assert reference_families([["standard", "gc"], ["gc", "tbc"]]) == ["standard", "gc"]


def _report(fits, front=True):
    return {"effects": {"candidates": 60, "references": ["standard"] * 4, "objectives": fits,
                        "on_front": [["gc"], ["standard", "tbc"], ["standard"], ["ghost"]]},
            "front": [{"trial": 1}] if front else [], "noise_line": "latency: 2 of 2 front members differ"}


@pytest.mark.parametrize("seed", [0, 1])
def test_claims_state_only_resolved_effects(seed):
    rng = np.random.default_rng(seed)
    rows, y, _ = _simulate(rng)
    lat = fit_effects(rows, y, ["standard"] * 4, objective="latency").to_dict() | {"unit": "ms", "better": -1}
    acc = fit_effects(rows, list(rng.normal(0, 1, len(rows))), ["standard"] * 4,
                      objective="accuracy").to_dict() | {"unit": "points", "better": 1}
    out = claims(_report({"accuracy": acc, "latency": lat}))
    stated = [s for s in out["sentences"] if s.startswith("stage ")]
    resolved = {(e["stage"], e["family"]) for f in (acc, lat) for e in f["effects"] if e["resolved"]}
    assert out["resolved"] == len(stated) == len(resolved) >= 2
    text = out["text"]
    assert re.search(r"stage 1: gc \(in \d+ candidates\) cuts latency by [12]\.\d+ ms \[", text)
    assert re.search(r"stage 2: tbc \(in \d+ candidates\) adds 1\.\d+ ms of latency \[", text)
    for sentence in stated:  # every claim carries its interval; an unresolved side says so
        assert "[" in sentence and "relative to standard" in sentence
    assert "The front uses stage 1: gc; stage 2: standard, tbc" in text
    assert "the machine's drift between those timings is part of their residual" in text  # said where it applies
    assert text.endswith("Front vs noise: latency: 2 of 2 front members differ.")


def test_claims_say_not_resolved_when_nothing_is():
    rng = np.random.default_rng(3)
    rows = [[FAMILIES[rng.integers(4)] for _ in range(4)] for _ in range(20)]
    noise = fit_effects(rows, list(rng.normal(0, 1, 20)), ["standard"] * 4).to_dict() | {"unit": "ms", "better": -1}
    assert not any(e["resolved"] for e in noise["effects"])
    out = claims(_report({"latency": noise}, front=False))
    assert out["resolved"] == 0 and "No stage x family effect is resolved at 95% with these 60" in out["text"]
    assert "drift" not in out["text"]  # no latency effect stated: no caveat about one
    few = fit_effects(rows[:1], [1.0], ["standard"] * 4).to_dict() | {"unit": "ms", "better": -1}
    assert "can be estimated: 1 evaluated candidate(s)" in claims(_report({"latency": few}))["text"]
