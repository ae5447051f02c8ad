"""Architecture specs: JSON round-trip, canonical form and stable hash, structural checks."""

from __future__ import annotations

import json
import random

import pytest

from nasconv.arch import ArchSpec, OpChoice
from nasconv.errors import SpaceError
from nasconv.spaces import list_spaces, load_space


@pytest.mark.parametrize("space_name", list_spaces())
def test_json_round_trip_and_hash(space_name):
    space = load_space(space_name)
    rng = random.Random(1)
    for _ in range(20):
        arch = space.sample(rng)
        again = ArchSpec.from_json(arch.to_json())
        assert again == arch
        assert again.arch_hash == arch.arch_hash
        assert ArchSpec.from_json(arch.to_json(indent=2)) == arch


def test_hash_ignores_key_order_and_number_spelling():
    arch = load_space("resnet50").baseline()
    data = arch.to_dict()
    data["stages"][1]["op"] = "spconv"
    data["stages"][1]["hyper"] = {"ratio": 0.25}
    a = ArchSpec.from_dict(data)
    # reversed key order, ints spelled as floats, 0.25 spelled differently
    shuffled = {k: data[k] for k in reversed(list(data))}
    shuffled["resolution"] = 224.0
    shuffled["stages"] = [dict(reversed(list(s.items()))) for s in data["stages"]]
    shuffled["stages"][1]["hyper"] = {"ratio": 1 / 4}
    shuffled["stages"][0]["depth"] = 3.0
    b = ArchSpec.from_dict(json.loads(json.dumps(shuffled)))
    assert a == b and a.arch_hash == b.arch_hash
    assert a.arch_hash != arch.arch_hash


def test_hash_is_stable_across_versions():
    # A golden value: changing the canonical form would silently break every stored cache.
    assert load_space("resnet50").baseline().arch_hash == "3d180d29f5c65d41"


def test_op_choice_canonical():
    assert OpChoice.make("gc", {"groups": 4.0}) == OpChoice.make("gc", {"groups": 4})
    assert OpChoice.make("tgc", {"groups": 2, "blocks": 4}).label() == "tgc(blocks=4,groups=2)"
    assert OpChoice.make("spconv", {"ratio": 0.125}).label() == "spconv(ratio=1/8)"


@pytest.mark.parametrize("text,match", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "must be an object"),
    ('{"space": "resnet50"}', "malformed architecture JSON"),
])
def test_malformed_json(text, match):
    with pytest.raises(SpaceError, match=match):
        ArchSpec.from_json(text)


def test_structural_errors():
    data = load_space("resnet20").baseline().to_dict()
    data["stages"][0]["block"] = "inverted"
    with pytest.raises(SpaceError, match=r"stages\[0\].block must be one of basic, bottleneck"):
        ArchSpec.from_dict(data)
    data = load_space("resnet20").baseline().to_dict()
    data["stages"][1]["depth"] = "three"
    with pytest.raises(SpaceError, match=r"stages\[1\].depth must be an integer"):
        ArchSpec.from_dict(data)


def test_sample_json_wrapper_is_accepted():
    arch = load_space("resnet20").baseline()
    wrapped = json.dumps({"arch": arch.to_dict(), "arch_hash": arch.arch_hash})
    assert ArchSpec.from_json(wrapped) == arch
