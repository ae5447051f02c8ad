"""nasconv.latency.model_parts: the latency table of a ``kind: model`` space (a user's own network):
its searched convolutions at their shapes under each choice, and the rest of the network as one
part; profiled, stored, predicted and used by a search."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nasconv.cli import main
from nasconv.custom.cost import profile
from nasconv.flops import measure_cost
from nasconv.latency import Repeats, arch_parts, build_part, current_setting, measure_network, space_parts
from nasconv.spaces import load_space
from tests.test_custom_space import EXAMPLES, ROOT

LOOP = str(ROOT / EXAMPLES["reuse"][0])
QUICK = Repeats(warmup=2, min_repeats=5, max_repeats=20, max_time_s=0.5)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lat") / "loop.yaml"
    assert main(["space", "from-model", LOOP, "--kwargs", '{"width": 8}', "--input", "3x32x32", "--out", str(path),
                 "--ops", "gc,hetconv"]) == 0
    return path


def test_parts_are_the_slots_at_each_call_and_the_rest(space_file):
    space = load_space(str(space_file))
    parts = space_parts(space)
    rest = [p for p in parts if p.kind == "rest"]
    assert len(rest) == 1 and all(p.kind == "conv" for p in parts if p is not rest[0])
    # each stage's slots x its choices x the slot's distinct call shapes
    slots = space.slot_by_name
    assert len(parts) == 1 + sum(len(st.ops) * len(set(slots[n].calls)) for st in space.stages for n in st.slots)
    arch = space.sample(random.Random(2))
    got = arch_parts(arch)
    assert got[0] == rest[0] and len(got) == 1 + sum(len(slots[n].calls) for st in space.stages for n in st.slots)
    assert {p.key for p in got} <= {p.key for p in parts}
    # the rest is the model with the searched convolutions gone: exactly the cost model's rest
    module = build_part(rest[0])
    assert module(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    measured, rest_cost = measure_cost(module, (3, 32, 32)), profile(space, 32).rest
    assert (measured.params, measured.macs) == (rest_cost.params, rest_cost.macs)


def test_profile_stores_the_table_and_predicts_a_candidate_within_a_loose_factor(space_file, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'lat.db'}"
    capsys.readouterr()
    assert main(["latency", "profile", "--space", str(space_file), "--storage", storage, "--threads", "1",
                 "--quick", "--networks", "4", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    space = load_space(str(space_file))
    assert rep["parts"] == rep["measured"] == len(space_parts(space)) and rep["networks_measured"] == 4
    assert rep["calibration"]["n"] == 4 and rep["calibration"]["slope"] > 0
    arch = space.sample(random.Random(5))
    path = tmp_path / "a.json"
    path.write_text(arch.to_json())
    assert main(["latency", "predict", "--space", str(space_file), "--storage", storage, "--threads", "1",
                 "--arch", str(path), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["arch_hash"] == arch.arch_hash and 0 < pred["low_ms"] <= pred["latency_ms"] <= pred["high_ms"]
    assert pred["block_sum_ms"] > 0
    # a measurement of the same candidate: within a loose factor (a shared machine; not a timing test)
    measured = measure_network(arch, current_setting("cpu", threads=1), "cpu", QUICK).median_ms
    assert 1 / 4 < pred["latency_ms"] / measured < 4
    # the search predicts from the table (no timing of its own where it predicts)
    capsys.readouterr()
    assert main(["search", "--space", str(space_file), "--trials", "1", "--inline", "--storage", storage,
                 "--proxy", "grad_norm", "--data", "synthetic", "--objectives", "accuracy,latency", "--sampler",
                 "random", "--latency", "predict", "--latency-threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["evaluated"] == 1 and result["failed"] == 0
    front = result["front"]
    assert front and all(t["latency_ms"] > 0 and t["latency_source"] == "predicted" for t in front)
