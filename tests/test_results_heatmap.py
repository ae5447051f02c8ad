"""The report's heat map colours only what is resolved; cells the candidates cannot tell apart get
no number (nasconv.results.effects, .html, .plot)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from nasconv.results.claims import claims
from nasconv.results.effects import fit_effects
from nasconv.results.html import effect_panels
from nasconv.results.plot import UNRESOLVED_FACE, effects_figure, figure_bytes, resolved_grid

FAMILIES = ["standard", "gc", "tbc", "ghost"]


def _effects(fit, unit="ms", better=-1) -> dict:
    return {"stages": [f"stage {s + 1}" for s in range(4)], "families": FAMILIES, "references": ["standard"] * 4,
            "objectives": {"latency": fit.to_dict() | {"unit": unit, "better": better}}}


def _rows(rng, n):
    return [[FAMILIES[rng.integers(4)] for _ in range(4)] for _ in range(n)]


def _drawn(effects):
    """(the colour values the heat map drew, their RGBA, the hatched cells) of its one panel."""
    fig = effects_figure(effect_panels(effects))
    try:
        ax = fig.axes[0]
        image = ax.images[0]
        values = image.get_array()
        rgba = image.to_rgba(values)
        hatched = [p for p in ax.patches if p.get_gid() == "unresolved"]
        return values, rgba, hatched
    finally:
        figure_bytes(fig, "svg")  # closes it


def _unresolved_fit() -> dict:
    """The issue's study: nothing resolved, one cell +0.39 [-1.6, 2.4] (the largest estimate), which
    the old map drew in its darkest blue."""
    cells = [(0, "gc", 0.39, -1.6, 2.4), (0, "tbc", -0.12, -1.9, 1.7), (1, "gc", 0.05, -0.8, 0.9),
             (2, "ghost", -0.3, -2.2, 1.6)]
    return {"objective": "accuracy", "n": 12, "references": ["standard"] * 4, "residual_sd": 1.0, "reason": None,
            "unit": "points", "better": 1,
            "effects": [{"stage": s, "family": f, "n": 3, "estimate": v, "ci": [lo, hi], "resolved": False,
                         "identifiable": True} for s, f, v, lo, hi in cells]}


def test_a_study_where_nothing_is_resolved_has_no_coloured_cell():
    """Every cell pale grey and hatched, none coloured, however large its estimate."""
    effects = {"stages": [f"stage {s + 1}" for s in range(4)], "families": FAMILIES,
               "references": ["standard"] * 4, "objectives": {"accuracy": _unresolved_fit()}}
    values, rgba, hatched = _drawn(effects)
    assert np.ma.getmaskarray(values).all()  # no cell carries a colour value
    assert (rgba[..., 3] == 0).all()  # and the colour map paints none
    assert len(hatched) == 4
    assert all(p.get_facecolor()[:3] == pytest.approx(to_rgba(UNRESOLVED_FACE)[:3]) for p in hatched)
    assert all(p.get_hatch() for p in hatched)


def test_noise_fitted_to_nothing_colours_nothing():
    rng = np.random.default_rng(3)
    fit = fit_effects(_rows(rng, 20), list(rng.normal(0, 1, 20)), ["standard"] * 4)
    assert fit.effects and not any(e.resolved for e in fit.effects)
    values, _, hatched = _drawn(_effects(fit))
    assert np.ma.getmaskarray(values).all() and len(hatched) == len(fit.effects)


def test_a_resolved_effect_is_the_only_coloured_cell():
    """A real effect (stage 1 gc: -3 ms) in noise: that cell is coloured blue (better: lower
    latency) at full scale; the unresolved ones are not coloured, whatever their estimate."""
    rng = np.random.default_rng(0)
    rows = _rows(rng, 60)
    y = [10 - 3.0 * (r[0] == "gc") + rng.normal(0, 0.5) for r in rows]
    fit = fit_effects(rows, y, ["standard"] * 4)
    resolved = {(e.stage, e.family) for e in fit.effects if e.resolved}
    assert (0, "gc") in resolved
    values, rgba, hatched = _drawn(_effects(fit))
    coloured = {(int(r), FAMILIES[int(c)]) for r, c in zip(*np.nonzero(~np.ma.getmaskarray(values)))}
    assert coloured == resolved
    r, g, b, a = rgba[0, FAMILIES.index("gc")]
    assert b > r and a > 0  # blue = better
    assert len(hatched) == len(fit.effects) - len(resolved)
    grid = resolved_grid(effect_panels(_effects(fit))[0])
    assert np.nanmax(np.abs(grid)) == pytest.approx(abs(fit.get(0, "gc").estimate), rel=0.5)


def test_cells_seen_only_together_are_marked_not_numbered():
    """The issue's case: two cells seen in one candidate each, the same one: the data measure only
    their sum, so neither gets an estimate or an interval; the others still do."""
    rng = np.random.default_rng(1)
    rows = [[FAMILIES[rng.integers(2)], FAMILIES[rng.integers(2)], "standard", "standard"] for _ in range(30)]
    rows[7] = ["standard", "standard", "tbc", "ghost"]  # stage 3 tbc and stage 4 ghost: once, together
    y = [5.0 + 1.0 * (r[0] == "gc") + rng.normal(0, 0.3) for r in rows]
    fit = fit_effects(rows, y, ["standard"] * 4)
    a, b = fit.get(2, "tbc"), fit.get(3, "ghost")
    assert not a.identifiable and not b.identifiable and not a.resolved and not b.resolved
    assert a.confounded_with == ((3, "ghost"),) and b.confounded_with == ((2, "tbc"),)
    assert a.to_dict()["estimate"] is None and a.to_dict()["ci"] is None
    assert all(e.identifiable for e in fit.effects if e.stage < 2)
    assert fit.get(0, "gc").resolved
    effects = _effects(fit)
    panel = effect_panels(effects)[0]
    assert [c["text"] for c in panel["cells"] if c["stage"] >= 2] == ["not\nidentifiable\nn=1"] * 2
    assert np.isnan(resolved_grid(panel)[2:]).all()
    said = claims({"effects": {**effects, "candidates": 30}, "front": []})
    assert said["not_identifiable"] == 2 and said["resolved"] == 1
    assert "2 stage x family combinations cannot be told apart" in said["text"]
    assert "stage 3: tbc is confounded with stage 4: ghost" in said["text"]


def test_a_cell_seen_with_varied_partners_is_identifiable():
    """Full rank: every cell's effect is estimable, and none is marked."""
    rng = np.random.default_rng(2)
    rows = _rows(rng, 40)
    fit = fit_effects(rows, list(rng.normal(0, 1, 40)), ["standard"] * 4)
    assert len(fit.effects) == 12 and all(e.identifiable for e in fit.effects)
