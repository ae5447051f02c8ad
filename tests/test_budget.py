from __future__ import annotations

import pytest

from nasconv.budget import check_feasible, parse_budget
from nasconv.errors import BudgetError, UsageError
from nasconv.spaces import load_space


@pytest.mark.parametrize("text,macs,params,ms", [
    ("4gflops", 4_000_000_000, None, None),
    ("800mflops", 800_000_000, None, None),
    ("4gmacs", 4_000_000_000, None, None),
    ("4.5GFLOPs", 4_500_000_000, None, None),
    ("20mparams", None, 20_000_000, None),
    ("15ms", None, None, 15.0),
    ("4gflops, 20mparams,15ms", 4_000_000_000, 20_000_000, 15.0),
])
def test_accepted(text, macs, params, ms):
    b = parse_budget(text)
    assert (b.macs, b.params, b.latency_ms) == (macs, params, ms)


@pytest.mark.parametrize("text", ["4gigawatts", "-1gflops", "abc", "0gflops", "4gflops,5gflops", "4 g flops", "gflops"])
def test_malformed(text):
    with pytest.raises(UsageError, match="accepted forms"):
        parse_budget(text)


def test_flop_is_a_multiply_add():
    base = 4_089_184_256  # ResNet-50 MACs
    b = parse_budget("4gflops")
    assert b.violations(macs=base)  # the plain ResNet-50 is over 4 GFLOPs in the papers' units
    assert not parse_budget("4.1gflops").violations(macs=base)


def test_constraints_sign():
    b = parse_budget("4gflops,20mparams")
    assert all(v <= 0 for v in b.constraints(macs=3_000_000_000, params=10_000_000))
    assert any(v > 0 for v in b.constraints(macs=5_000_000_000, params=10_000_000))


def test_below_cheapest_names_it():
    space = load_space("resnet50")
    with pytest.raises(BudgetError, match=r"fewest MACs achievable are 2,296,696,832"):
        check_feasible(parse_budget("1gflops"), space.cost_bounds(), space.name)
    check_feasible(parse_budget("4gflops"), space.cost_bounds(), space.name)
