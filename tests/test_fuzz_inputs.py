"""Hostile inputs to the two user-facing parsers: an architecture JSON file and a ``--budget`` string.

Whatever the input, ``ArchSpec.from_json`` / ``from_dict`` give a checked spec whose JSON
round-trips, and ``parse_budget`` a budget whose text parses back to the same limits; or they raise
a :class:`NasconvError` with a one-line message (the CLI prints it as is). Never another exception,
and never unbounded time or memory. The property tests are derandomized so CI runs the same
examples every time; each example has a deadline.
"""

from __future__ import annotations

import copy
import json
import math
import time
import tracemalloc
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasconv.arch import (
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_EXPANSION,
    MAX_JSON_CHARS,
    MAX_RESOLUTION,
    MAX_STAGES,
    MAX_WIDTH,
    ArchSpec,
)
from nasconv.budget import MAX_COUNT, MAX_LATENCY_MS, MIN_LATENCY_MS, Budget, parse_budget
from nasconv.errors import NasconvError, SpaceError
from nasconv.spaces import load_space

# derandomize: the same examples on every run (no example database either, so nothing is written
# into the checkout). too_slow / data_too_large: the JSON strategies build large nested values by
# design, which is what is being tested, not a badly written strategy.
FUZZ = settings(max_examples=250, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BASES = {name: load_space(name).baseline().to_dict() for name in ("resnet50", "resnet20")}


def _refused_on_one_line(exc: NasconvError) -> None:
    msg = str(exc)
    assert msg and len(msg.splitlines()) == 1 and msg == msg.strip(), repr(msg)
    assert len(msg) < 600, msg  # values are shown shortened, never echoed whole


def check_arch(parse: Callable[[Any], ArchSpec], value: Any) -> ArchSpec | None:
    """``parse(value)`` is a spec that round-trips or a one-line NasconvError; nothing else."""
    try:
        arch = parse(value)
    except NasconvError as exc:
        _refused_on_one_line(exc)
        return None
    assert isinstance(arch, ArchSpec)
    text = arch.to_json()
    again = ArchSpec.from_json(text)
    assert again == arch and again.arch_hash == arch.arch_hash and again.to_json() == text
    assert ArchSpec.from_dict(arch.to_dict()) == arch
    return arch


def check_budget(value: Any) -> Budget | None:
    try:
        b = parse_budget(value)
    except NasconvError as exc:
        _refused_on_one_line(exc)
        return None
    assert isinstance(b, Budget)
    for count in (b.macs, b.params):
        assert count is None or (type(count) is int and 1 <= count <= MAX_COUNT)
    assert b.latency_ms is None or MIN_LATENCY_MS <= b.latency_ms <= MAX_LATENCY_MS
    again = parse_budget(b.text)  # the canonical text names the study: it must mean the same limits
    assert (again.macs, again.params, again.latency_ms, again.text) == (b.macs, b.params, b.latency_ms, b.text)
    return b


# --- architecture JSON: arbitrary text and arbitrary JSON values -----------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
                | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=6)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=40)


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_arch_from_arbitrary_text(text):
    check_arch(ArchSpec.from_json, text)


@FUZZ
@given(json_values)
def test_arch_from_arbitrary_json_values(value):
    check_arch(ArchSpec.from_json, json.dumps(value))
    check_arch(ArchSpec.from_json, json.dumps({"arch": value}))
    check_arch(ArchSpec.from_dict, value)


# --- architecture JSON: a real architecture with fields replaced by hostile values -----------------

HOSTILE = [10**9, 10**6, 10**30, 10**400, 2**63, -1, 0, -(10**9), True, False, 1.5, 3.0, 1e300, -0.0,
           float("nan"), float("inf"), -float("inf"), "", "64", "basic", "bottleneck", "x" * 10_000, "a\nb",
           "\u2028", None, [], {}, [1, 2], {"a": 1}, [[[[[]]]]]]
hostile_values = st.sampled_from(HOSTILE) | json_values | st.integers(-(2**70), 2**70)
TOP_KEYS = ["format", "space", "resolution", "in_channels", "num_classes", "stem", "stages", "head", "arch", "extra"]
STAGE_KEYS = ["block", "depth", "width", "stride", "expansion", "op", "hyper", "extra"]


@st.composite
def mutated_archs(draw) -> dict[str, Any]:
    data = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["top", "stem", "stage", "hyper", "stages"]))
        delete = draw(st.integers(0, 5)) == 0
        value = draw(hostile_values)
        if where == "stages":  # the same few stage dicts, many times over (not compounding)
            stages = data["stages"] if isinstance(data.get("stages"), list) else []
            data["stages"] = stages[:4] * draw(st.sampled_from([0, 2, MAX_STAGES + 1, 2_500]))
            continue
        if where == "top":
            target, key = data, draw(st.sampled_from(TOP_KEYS))
        elif where == "stem" and isinstance(data.get("stem"), dict):
            target, key = data["stem"], draw(st.sampled_from(["type", "width", "extra"]))
        elif isinstance(data.get("stages"), list) and data["stages"] and isinstance(data["stages"][0], dict):
            stage = data["stages"][draw(st.integers(0, len(data["stages"]) - 1))]
            if where == "hyper":
                if not isinstance(stage.get("hyper"), dict):
                    stage["hyper"] = {}
                target, key = stage["hyper"], draw(st.sampled_from(["groups", "ratio", "blocks", ""]))
            else:
                target, key = stage, draw(st.sampled_from(STAGE_KEYS))
        else:
            continue
        if delete:
            target.pop(key, None)
        else:
            target[key] = value
    return data


@FUZZ
@given(mutated_archs())
def test_arch_from_mutated_real_architectures(data):
    check_arch(ArchSpec.from_dict, data)
    try:
        text = json.dumps(data)
    except ValueError:  # a Python int of over 4300 digits has no JSON text; from_dict saw it above
        return
    check_arch(ArchSpec.from_json, text)


@st.composite
def plausible_archs(draw) -> dict[str, Any]:
    """In-range values everywhere, so that the accepting path and its round trip get exercised."""
    count = st.integers(1, MAX_WIDTH)
    hyper = st.dictionaries(st.text(max_size=8), st.none() | st.booleans() | st.text(max_size=8)
                            | st.integers(-(10**15), 10**15) | st.floats(-1e15, 1e15), max_size=4)
    stage = st.fixed_dictionaries(
        {"block": st.sampled_from(["basic", "bottleneck"]), "depth": st.integers(1, MAX_DEPTH),
         "width": count, "stride": st.sampled_from([1, 2, 1.0, 2.0]), "op": st.text(min_size=1, max_size=10)},
        optional={"expansion": st.integers(1, MAX_EXPANSION), "hyper": hyper | st.none()})
    return draw(st.fixed_dictionaries(
        {"space": st.text(max_size=12), "resolution": st.integers(1, MAX_RESOLUTION), "in_channels": count,
         "num_classes": st.integers(1, MAX_CLASSES), "stages": st.lists(stage, min_size=1, max_size=6),
         "stem": st.fixed_dictionaries({"type": st.sampled_from(["imagenet", "small", "cifar"]), "width": count})},
        optional={"format": st.just(1), "head": st.text(max_size=12)}))


@FUZZ
@given(plausible_archs())
def test_arch_in_range_is_accepted_and_round_trips(data):
    assert check_arch(ArchSpec.from_json, json.dumps(data)) is not None


# --- architecture JSON: the hostile cases one by one, with what each is refused for ------------------

def _with(path: tuple, value: Any, base: str = "resnet50") -> dict[str, Any]:
    data = copy.deepcopy(BASES[base])
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize("text,match", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a":' * 150_000 + "1" + "}" * 150_000, "nested too deeply"),
    (" " * (MAX_JSON_CHARS + 1), "at most 1,000,000"),
    (json.dumps(_with(("stages", 0, "width"), 10**9)), r"stages\[0\].width must be at most 65,536"),
    (json.dumps(_with(("stages", 0, "depth"), 10**6)), r"stages\[0\].depth must be at most 10,000"),
    (json.dumps(_with(("stages", 0, "expansion"), 10**9)), r"stages\[0\].expansion must be at most 64"),
    (json.dumps(_with(("resolution",), 10**9)), "resolution must be at most"),
    (json.dumps(_with(("num_classes",), 10**9)), "num_classes must be at most"),
    (json.dumps(_with(("stem", "width"), 10**9)), "stem.width must be at most"),
    (json.dumps(_with(("stages", 0, "width"), 1e300)), r"must be at most 65,536, got an integer of 997 bits"),
    (json.dumps(_with(("stages", 0, "width"), -1)), r"stages\[0\].width must be >= 1, got -1"),
    (json.dumps(_with(("stages", 0, "width"), 0)), r"stages\[0\].width must be >= 1, got 0"),
    (json.dumps(_with(("stages", 0, "stride"), 3)), r"stages\[0\].stride must be 1 or 2, got 3"),
    (json.dumps(_with(("stages", 0, "width"), True)), "must be an integer, got True"),
    (json.dumps(_with(("stages", 0, "width"), 2.5)), "must be an integer, got 2.5"),
    (json.dumps(_with(("stages", 0, "width"), "64")), "must be an integer, got '64'"),
    (json.dumps(_with(("stages", 0, "width"), float("nan"))), "must be an integer, got nan"),
    (json.dumps(_with(("stages", 0, "width"), float("inf"))), "must be an integer, got inf"),
    (json.dumps(_with(("stages", 0, "hyper"), {"groups": float("nan")})), "must be finite"),
    (json.dumps(_with(("stages", 0, "hyper"), {"groups": 10**16})), "at most 1e\\+15 in magnitude"),
    (json.dumps(_with(("stages", 0, "hyper"), [1])), "hyper must be an object, got a list"),
    (json.dumps(_with(("stages", 0, "hyper"), {str(i): i for i in range(100)})), "at most 32 entries"),
    (json.dumps(_with(("space",), float("nan"))), "space must be a string, got nan"),
    (json.dumps(_with(("space",), [1, 2])), r"space must be a string, got \[1, 2\]"),
    (json.dumps(_with(("stages", 0, "op"), 5)), r"stages\[0\].op must be a string, got 5"),
    (json.dumps(_with(("stages", 0, "op"), "x" * 10_000)), "at most 256 characters, got 10,000"),
    (json.dumps(_with(("stages",), BASES["resnet50"]["stages"] * 1000)), "at most 64 stages, got 4,000"),
    (json.dumps(_with(("stages",), [])), "at least one stage"),
    (json.dumps(_with(("stages",), "abc")), "stages must be a list, got a string"),
    (json.dumps(_with(("stages",), [1])), r"stages\[0\] must be an object, got a number"),
    (json.dumps(_with(("stem",), [])), "stem must be an object, got a list"),
    (json.dumps(_with(("format",), 2)), "architecture format 2 is not supported"),
    (json.dumps(_with(("format",), "1")), "architecture format '1' is not supported"),
    (json.dumps(_with(("format",), True)), "architecture format True is not supported"),
    ('{"width": ' + "9" * 5000 + "}", "not valid JSON: Exceeds the limit"),
    ("42", "must be an object, got a number"),
    ("null", "must be an object, got null"),
    (b"\xff\xfe\xfd", "not valid JSON"),
    (None, "must be text, got NoneType"),
])
def test_hostile_architecture_json_is_refused(text, match):
    start = time.process_time()  # CPU time: a busy machine does not count
    with pytest.raises(SpaceError, match=match) as info:
        ArchSpec.from_json(text)
    _refused_on_one_line(info.value)
    assert time.process_time() - start < 2


def test_unknown_keys_are_ignored_as_before():
    arch = ArchSpec.from_dict(BASES["resnet20"])
    data = _with(("bogus",), {"any": [1, 2]}, "resnet20")
    data["stages"][0]["note"] = "kept out of the spec"
    assert ArchSpec.from_json(json.dumps(data)) == arch


def test_huge_python_ints_are_refused_without_printing_them():
    # from_dict takes Python values too (stored trials); str() of such an int is itself refused
    with pytest.raises(SpaceError, match=r"width must be at most 65,536, got an integer of 16,610 bits"):
        ArchSpec.from_dict(_with(("stages", 0, "width"), 10**5000))
    with pytest.raises(SpaceError, match="an integer of"):
        ArchSpec.from_dict(_with(("stages", 0, "hyper"), {"groups": -(10**5000)}))


MiB = 2**20
_MANY = [{"block": "basic", "depth": 10**6, "width": 10**9, "stride": 1, "op": "standard"}] * 10_000


@pytest.mark.parametrize("text,most", [
    (json.dumps(_with(("stages", 0, "width"), 10**9)), 1 * MiB),
    (json.dumps(_with(("stages", 0, "depth"), 10**6)), 1 * MiB),
    ("[" * 400_000 + "]" * 400_000, 1 * MiB),
    ("x" * (50 * MAX_JSON_CHARS), 1 * MiB),  # refused before parsing
    # a text just under MAX_JSON_CHARS is parsed before it can be judged: that parse is the bound
    (json.dumps(_with(("stages",), _MANY)), 32 * MiB),
    ("[" + ",".join(["{}"] * ((MAX_JSON_CHARS - 2) // 3)) + "]", 32 * MiB),
])
def test_hostile_architecture_allocates_nothing_big(text, most):
    assert len(text) <= MAX_JSON_CHARS or most == 1 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(SpaceError):
            ArchSpec.from_json(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < most, f"peak {peak:,} bytes"


# --- budgets ----------------------------------------------------------------------------------------

@FUZZ
@given(st.text(max_size=200) | st.none() | st.integers() | st.floats())
def test_budget_from_arbitrary_text(text):
    check_budget(text)


numbers = (st.integers(0, 10**30).map(str)
           | st.decimals(min_value=0, max_value=10**20, allow_nan=False, places=6).map(str)
           | st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr)
           | st.text("0123456789.", min_size=1, max_size=30)
           | st.integers(1, 400).map(lambda n: "9" * n)
           | st.integers(1, 400).map(lambda n: "0." + "0" * n + "1")
           | st.sampled_from(["nan", "inf", "-1", "-0", "1e999", "1e3", ".5", "5.", "\u0664", "\uff14", "\U0001d7d2",
                              "1_000", "+4", "0x10", "", " "]))
units = st.sampled_from(["flops", "flop", "FLOPs", "macs", "mac", "params", "param", "ms", "MS", "s", "",
                         "gigaflops", "flopss", "\u0131ms"])
terms = st.builds(lambda ws1, n, p, u, ws2: f"{ws1}{n}{p}{u}{ws2}",
                  st.sampled_from(["", " ", "\t", "\u00a0"]), numbers, st.sampled_from(["", "k", "m", "g", "t", "K",
                                                                                       "G", "x"]),
                  units, st.sampled_from(["", " ", "\n"]))


@FUZZ
@given(st.lists(terms, max_size=5).map(",".join))
def test_budget_from_near_valid_text(text):
    check_budget(text)


@FUZZ
@given(st.integers(1, MAX_COUNT), st.sampled_from(["flops", "macs", "params"]))
def test_budget_counts_in_range_round_trip(n, unit):
    b = check_budget(f"{n}{unit}")
    assert b is not None and (b.params if unit == "params" else b.macs) == n


def test_many_parts_are_refused_quickly():
    for text in (",".join(["4gflops"] * 10_000), ",".join([""] * 10_000), "1" * 10**6 + "gflops"):
        start = time.process_time()  # CPU time: a busy machine does not count
        with pytest.raises(NasconvError) as info:
            parse_budget(text)
        _refused_on_one_line(info.value)
        assert time.process_time() - start < 1
    assert math.isfinite(parse_budget("1000000tflops").macs)
