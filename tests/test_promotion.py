"""nasconv.search.promotion and nasconv.search.fidelity: which candidate a free worker promotes
(ASHA over several objectives), and each rung's evaluation settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nasconv.errors import UsageError
from nasconv.evaluate import EvalConfig
from nasconv.search.fidelity import Fidelity
from nasconv.search.promotion import crowding_distance, next_promotion, top_order
from nasconv.train import TrainConfig

MAXMIN = ["maximize", "minimize"]


def test_crowding_distance_is_infinite_at_the_extremes_and_larger_where_sparse():
    losses = np.array([[0.0, 4.0], [1.0, 3.0], [1.2, 2.8], [4.0, 0.0]])
    d = crowding_distance(losses)
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] > 0 and d[2] > d[1]  # 2 has the wider gap around it (1.0 -> 4.0 vs 0.0 -> 1.2)


def test_top_order_puts_the_front_first_then_its_extremes():
    # 0 dominates nobody?  0:(acc .9, 5ms) 1:(.8, 1ms) 2:(.85, 3ms) front; 3:(.7, 6ms) dominated
    losses = np.array([[-0.9, 5.0], [-0.8, 1.0], [-0.85, 3.0], [-0.7, 6.0]])
    order = top_order(losses)
    assert set(order[:3]) == {0, 1, 2} and order[3] == 3
    assert order[2] == 2  # the middle member of the front: smallest crowding distance


def _rung0(n):
    """n candidates on a trade-off line, with candidate 0 dominating all others."""
    vals = {i: [0.5 + 0.01 * i, 10.0 - 0.1 * i] for i in range(n)}
    vals[0] = [0.99, 0.5]
    return vals


def test_nothing_is_promoted_before_a_rung_holds_eta_candidates():
    fid = Fidelity(rungs=3, eta=3)
    assert next_promotion({0: _rung0(2)}, MAXMIN, fid, set()) is None
    assert next_promotion({0: _rung0(3)}, MAXMIN, fid, set()) == (0, 1)


def test_the_top_fraction_is_promoted_once_each_and_busy_ones_are_skipped():
    fid = Fidelity(rungs=3, eta=3)
    vals = {0: _rung0(9)}  # top 3: 0, then the front of the rest (8 dominates 7, ...)
    assert next_promotion(vals, MAXMIN, fid, set()) == (0, 1)
    assert next_promotion(vals, MAXMIN, fid, {(0, 1)}) == (8, 1)
    vals[1] = {0: [0.95, 0.5], 8: [0.6, 9.2]}
    assert next_promotion(vals, MAXMIN, fid, set()) == (7, 1)
    vals[1][7] = [0.6, 9.3]
    # rung 0's top 3 are all promoted; rung 1 has 3: its best goes on to rung 2 (higher rungs first)
    assert next_promotion(vals, MAXMIN, fid, set()) == (0, 2)
    vals[2] = {0: [0.97, 0.5]}
    assert next_promotion(vals, MAXMIN, fid, set()) is None  # nothing left in any top third


def test_infeasible_candidates_are_never_promoted():
    fid = Fidelity(rungs=2, eta=2)
    vals = {0: _rung0(4)}
    assert next_promotion(vals, MAXMIN, fid, set(), {0: 1.5}) == (3, 1)  # 0 is over budget
    assert next_promotion(vals, MAXMIN, fid, set(), {0: 1.5, 1: 1.0, 2: 1.0, 3: 1.0}) is None


def test_the_top_rung_promotes_nowhere():
    fid = Fidelity(rungs=2, eta=2)
    assert next_promotion({0: _rung0(2), 1: {0: [0.9, 0.5], 1: [0.5, 9.9]}}, MAXMIN, fid, set()) is None


# --- rung settings ------------------------------------------------------------------------------

BASE = EvalConfig(data="synthetic", train=TrainConfig(train_images=100, val_images=50, seed=3))


def test_a_flat_search_evaluates_exactly_as_before():
    assert Fidelity().rung_config(BASE, 0) is BASE
    assert Fidelity(repeats=2).rung_config(BASE, 0).settings_key() == BASE.settings_key()


@pytest.mark.parametrize("val, train, expected", [(2000, 444, 500), (2000, 1333, 1333), (2000, 9000, 2000),
                                                  (300, 100, 300), (None, 100, None)])
def test_a_lower_rung_validates_on_as_many_images_as_it_trains_on(val, train, expected):
    fid = Fidelity(rungs=3, eta=3)
    cfg = EvalConfig(data="synthetic", train=TrainConfig(train_images=train, val_images=val))
    assert fid.rung_config(cfg, 0).train.val_images == expected
    assert fid.rung_config(cfg, 2).train.val_images is None  # the top rung: the whole held-out split
    legacy = fid.adopt({"rungs": 3, "eta": 3.0})  # a study made before the rule keeps validating on val_images
    assert legacy.lower_val == "fixed" and legacy.rung_config(cfg, 0).train.val_images == val
    assert fid.adopt(fid.identity()) == fid


def test_rung_settings_grow_by_eta_and_the_top_validates_on_everything():
    fid = Fidelity(rungs=3, eta=2)
    cfgs = [fid.rung_config(BASE, r) for r in range(3)]
    assert [c.train.train_images for c in cfgs] == [100, 200, 400]
    assert [c.train.val_images for c in cfgs] == [50, 50, None]  # at most val_images, at least MIN_LOWER_VAL
    assert [c.latency for c in cfgs] == [True, False, False]  # latency does not depend on training
    assert len({c.settings_key() for c in cfgs}) == 3  # the rung is in the cache key
    rep = fid.rung_config(BASE, 2, repeat=2)
    assert rep.train.seed == 5 and rep.latency and rep.settings_key() != cfgs[2].settings_key()
    assert fid.baseline_config(BASE).train.train_images == 400 and fid.baseline_config(BASE).latency


@pytest.mark.parametrize("kw, word", [({"rungs": 0}, "--rungs"), ({"rungs": 11}, "--rungs"), ({"eta": 1}, "--eta"),
                                      ({"eta": float("nan")}, "--eta"), ({"repeats": -1}, "--repeats")])
def test_bad_fidelity_settings_are_one_usage_error(kw, word):
    with pytest.raises(UsageError, match=word):
        Fidelity(**kw).check()


def test_a_top_rung_beyond_the_dataset_is_refused():
    Fidelity(rungs=3, eta=3).check_dataset(1000, 9000, "x")
    with pytest.raises(UsageError, match="trains on 9,009 images, but x has 9,000"):
        Fidelity(rungs=3, eta=3).check_dataset(1001, 9000, "x")
