"""nasconv.latency.blocks: the parts a network's latency is summed from, and a space's distinct parts."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from nasconv.build import build_model
from nasconv.latency import arch_key_counts, arch_parts, build_part, space_parts
from nasconv.spaces import list_spaces, load_space
from tests.latency_helpers import tiny_space


def _all_archs(space):
    per_stage = [list(itertools.product(st.ops, st.depths, st.widths)) for st in space.stages]
    return [space.make_arch(choice) for choice in itertools.product(*per_stage)]


def test_space_parts_are_exactly_the_parts_of_its_architectures(tmp_path):
    space = tiny_space(tmp_path)
    archs = _all_archs(space)
    assert len(archs) == space.size == 32
    used = {p.key for a in archs for p in arch_parts(a)}
    keys = [p.key for p in space_parts(space)]
    assert len(keys) == len(set(keys)) == 13
    assert used == set(keys)  # nothing missing, nothing never used


def test_parts_chain_into_the_network_and_count_repeats():
    arch = load_space("resnet20").baseline()  # 3 stages of 3 basic blocks
    parts = arch_parts(arch)
    assert [p.kind for p in parts] == ["stem"] + ["block"] * 9 + ["head"]
    counts = arch_key_counts(arch)
    assert sum(counts.values()) == 11
    # stage 1's first block (16 -> 16, stride 1) is its repeated block: 3 of one key there
    assert counts["basic:standard:16>16x1/s1@32"] == 3 and counts["basic:standard:16>32x1/s2@32"] == 1
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        for p in parts:
            assert x.shape[1:] == (p.in_channels, p.size, p.size) or p.kind == "head", p.key
            x = build_part(p).eval()(x)
        assert x.shape == build_model(arch).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", list_spaces())
def test_every_shipped_space_baseline_is_covered(name):
    space = load_space(name)
    keys = {p.key for p in space_parts(space)}
    assert set(arch_key_counts(space.baseline())) <= keys
    assert set(arch_key_counts(space.sample(random.Random(0)))) <= keys
