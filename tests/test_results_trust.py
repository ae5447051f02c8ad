"""nasconv.results.trust and .screened: how far one-shot screening is trusted, and the effects over
the screened candidates, on main and screen studies built by hand with the Optuna API (no training;
the builder is benchmarks/report_speed.py's)."""

from __future__ import annotations

import json
import random
import re

import optuna
import pytest

from nasconv.cli import main
from nasconv.results.screened import sign_agreement
from nasconv.results.trust import (
    AGAINST_MEANING,
    WEAK_MEANING,
    screen_study_name,
    screening_trust,
    trust_line_of,
)
from nasconv.stats import bootstrap_rho, spearman
from tests.conftest import load_benchmark

SCREENED, TRAINED = 60, 30


def _trial(number: int, acc: float | None, oneshot: float | None, *, status: str = "evaluated",
           arch_hash: str | None = None) -> optuna.trial.FrozenTrial:
    attrs = {"status": status, "arch_hash": arch_hash or f"h{number}", "accuracy": acc}
    if oneshot is not None:
        attrs.update(oneshot_accuracy=oneshot, oneshot_accuracy_ci=[oneshot - 0.01, oneshot + 0.01],
                     screen_trial=number)
    t = optuna.trial.create_trial(value=acc if acc is not None else 0.0, user_attrs=attrs)
    t.number = number
    return t


def _pairs(n: int, noise: float, seed: int = 0, sign: float = 1.0) -> list[optuna.trial.FrozenTrial]:
    rng = random.Random(seed)
    accs = [rng.uniform(0.5, 0.9) for _ in range(n)]
    return [_trial(i, a, sign * a + rng.gauss(0, noise)) for i, a in enumerate(accs)]


def test_trust_on_a_known_correlated_set():
    trials = _pairs(30, 0.03)
    trust = screening_trust(trials, screened=500)
    alone = [t.user_attrs["accuracy"] for t in trials]
    oneshot = [t.user_attrs["oneshot_accuracy"] for t in trials]
    assert trust.n == 30 and trust.screened == 500
    assert trust.rho == pytest.approx(spearman(oneshot, alone)) and trust.rho > 0.8
    assert trust.ci == bootstrap_rho(oneshot, alone, seed=0)  # seeded: the same data, the same interval
    assert trust.ci[0] < trust.rho < trust.ci[1] and trust.ci[0] > 0
    assert screening_trust(trials, screened=500) == trust
    assert trust.verdict == "supported" and not trust.weak
    d = trust.to_dict()
    assert d["rho_ci95"] == list(trust.ci) and d["weak"] is False and "of 500 screened" in d["line"]


def test_weak_and_against_say_so_in_one_line():
    few = screening_trust(_pairs(3, 0.0))
    assert few.weak and few.n == 3 and few.rho is None
    assert "\n" not in few.line() and "only 3 candidates" in few.line() and WEAK_MEANING in few.line()
    noise = screening_trust(_pairs(12, 1.0, seed=4))  # the supernet score is mostly noise
    assert noise.ci[0] <= 0 <= noise.ci[1]
    assert noise.verdict == "weak" and noise.line().startswith("screening trust: weak: ")
    assert WEAK_MEANING in noise.line() and f"{noise.rho:+.2f}" in noise.line()
    against = screening_trust(_pairs(25, 0.01, sign=-1.0))
    assert against.ci[1] < 0 and against.verdict == "against" and AGAINST_MEANING in against.line()


def test_none_without_screening_and_what_counts():
    assert screening_trust([_trial(i, 0.8, None) for i in range(6)]) is None
    nothing_yet = screening_trust([_trial(i, 0.8, None) for i in range(6)], screened=100)
    assert nothing_yet.n == 0 and nothing_yet.weak and "of 100 screened" in nothing_yet.line()
    trials = _pairs(6, 0.0)
    # a rejected candidate and a repeat of an architecture (a cache hit) are not counted
    trials += [_trial(6, 0.1, 0.9, status="rejected"), _trial(7, 0.2, 0.8, arch_hash="h0")]
    assert screening_trust(trials).n == 6
    assert screen_study_name("resnet50-4gflops") == "resnet50-4gflops.oneshot"


def test_sign_agreement_counts_effects_resolved_in_both():
    def fit(*effects):
        return {"effects": [{"stage": s, "family": f, "estimate": e, "resolved": r} for s, f, e, r in effects]}

    a = fit((0, "gc", 1.0, True), (1, "gc", -2.0, True), (2, "gc", 0.5, False), (0, "tbc", 3.0, True))
    b = fit((0, "gc", 0.4, True), (1, "gc", 1.0, True), (2, "gc", 0.7, True), (0, "tbc", 1.0, False))
    got = sign_agreement(a, b)
    assert (got["agree"], got["both"], got["disagree"]) == (1, 2, [[1, "gc"]])
    assert got["line"].startswith("1 of 2 effects resolved in both fits agree in sign")


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('trust')}/s.db"
    bench = load_benchmark("report_speed")
    bench.build_studies(url, space_name="resnet20", screened=SCREENED, trained=TRAINED, effect_sd=0.05,
                        rho_noise=0.3, plain=True)
    return url, bench.NAME, bench.PLAIN


def _json(capsys, *argv):
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_pareto_shows_trust_in_text_and_json(studies, capsys):
    url, name, plain = studies
    assert main(["pareto", "--study", name, "--storage", url]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("screening trust:"))
    assert f"over {TRAINED} candidates trained both ways (of {SCREENED} screened)" in line
    got = _json(capsys, "pareto", "--study", name, "--storage", url, "--json")["screening_trust"]
    assert got["n"] == TRAINED and got["screened"] == SCREENED and got["verdict"] in ("supported", "weak")
    assert len(got["rho_ci95"]) == 2 and got["rho_ci95"][0] <= got["spearman_rho"] <= got["rho_ci95"][1]
    assert got["line"] == line == trust_line_of(url, name)  # what the search prints at its end
    assert _json(capsys, "pareto", "--study", plain, "--storage", url, "--json")["screening_trust"] is None
    assert main(["pareto", "--study", plain, "--storage", url]) == 0
    assert "screening trust" not in capsys.readouterr().out and trust_line_of(url, plain) is None


def test_report_shows_trust_and_both_effect_fits(studies, capsys, tmp_path):
    url, name, plain = studies
    out = tmp_path / "r.html"
    rep = _json(capsys, "report", "--study", name, "--storage", url, "--json", "--out", str(out), "--no-attach")
    assert rep["screening_trust"]["n"] == TRAINED and rep["screening_trust"]["screened"] == SCREENED
    scr = rep["screened_effects"]
    assert scr["label"] == f"one-shot: supernet accuracy, {SCREENED} candidates" and scr["candidates"] == SCREENED
    assert scr["references"] == rep["effects"]["references"]  # a cell means the same in both fits
    assert all(sum(c.values()) == SCREENED for c in scr["counts"])  # families read from the screen trials' params
    acc = scr["objectives"]["accuracy"]
    assert acc["n"] == SCREENED and acc["label"] == "one-shot: supernet accuracy" and not acc["reason"]
    agree = scr["agreement"]["accuracy"]
    # strong synthetic effects, the same in both: some are resolved in both fits, and agree
    assert agree["both"] >= 1 and agree["agree"] == agree["both"]
    assert re.match(r"\d+ of \d+ effects resolved in both fits agree in sign", agree["line"])
    page = out.read_text()
    assert 'id="screening-trust"' in page and rep["screening_trust"]["line"].split(":")[0] in page
    assert f"one-shot: supernet accuracy, {SCREENED} candidates" in page and "agree in sign" in page
    assert "not computed over the screened candidates" in page  # PED-ANOVA skipped there, and said
    rep = _json(capsys, "report", "--study", plain, "--storage", url, "--json")
    assert rep["screening_trust"] is None and rep["screened_effects"] is None


def test_four_candidates_in_perfect_agreement_are_not_called_supported():
    from nasconv.results.trust import ScreeningTrust, permutation_p

    # a percentile bootstrap over 4 points in the same order gives [1, 1]; the exact permutation
    # test says 2 of 24 orderings are as extreme (two-sided), p = 0.083
    assert permutation_p([1, 2, 3, 4], [5, 6, 7, 8], 1.0) == pytest.approx(2 / 24)
    t = ScreeningTrust(4, 1.0, (1.0, 1.0), 10, p_value=permutation_p([1, 2, 3, 4], [5, 6, 7, 8], 1.0))
    assert t.verdict == "weak" and "permutation p = 0.083" in t.line()
    eight = ScreeningTrust(8, 1.0, (1.0, 1.0), 10, p_value=permutation_p(range(8), range(8), 1.0))
    assert eight.verdict == "supported" and eight.p_value == pytest.approx(2 / 40320)
