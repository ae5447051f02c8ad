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


@pytest.mark.parametrize("text,match", [
    (",", "malformed budget ''"),
    ("4gflops,", "malformed budget ''"),
    ("nan", "malformed budget 'nan'"),
    ("infms", "malformed budget 'infms'"),
    ("1e999gflops", "malformed budget '1e999gflops'"),
    ("0ms", "must be positive"),
    ("0.4flops", "rounds to 0 macs"),
    ("1" * 400 + "gflops", "is too large: the most is 1000000tflops"),
    ("1000001tflops", "is too large"),
    ("1" * 400 + "ms", "out of range: a latency limit must be from 0.000001 to 1000000000 ms"),
    ("0." + "0" * 400 + "1ms", "out of range"),
    ("\u0664gflops", "malformed budget"),  # Arabic-Indic 4: float() reads it, the accepted forms do not
    ("\uff14gflops", "malformed budget"),
    ("4gflops\n20mparams", r"malformed budget '4gflops\\n20mparams'"),
    (",".join(["4gflops"] * 10_000), "79,999 characters long"),
])
def test_hostile_budgets_are_refused_on_one_line(text, match):
    with pytest.raises(UsageError, match=match) as info:
        parse_budget(text)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and len(msg) < 600 and "accepted forms" in msg


@pytest.mark.parametrize("text,canonical", [
    ("4gflops", "4gflops"), ("4.5GFLOPs", "4.5gflops"), ("800mflops", "800mflops"), ("20mparams", "20mparams"),
    ("15ms", "15ms"), ("4gflops, 20mparams,15ms", "4gflops,20mparams,15ms"), ("1234.5mflops", "1234.5mflops"),
    # these were spelled to 6 digits (1234.57tflops, 15.1235ms) or with an exponent (1e-05ms), which
    # named a study after a different budget or did not parse back
    ("1234567gflops", "1234.567tflops"), ("1.2345671gflops", "1.2345671gflops"), ("15.1234567ms", "15.1234567ms"),
    ("0.00001ms", "0.00001ms"), ("1000000tflops", "1000000tflops"),
    ("9007199254740993flops", "9007.199254740993tflops"),  # 2**53 + 1: no float on the way
])
def test_canonical_text_is_exact(text, canonical):
    b = parse_budget(text)
    assert b.text == canonical
    again = parse_budget(b.text)
    assert (again.macs, again.params, again.latency_ms) == (b.macs, b.params, b.latency_ms)
