"""Exports stay byte-identical: ``tests/fixtures/export_v0`` holds 13 exports (every operator, the
shipped spaces' baselines and samples) written by the code before the redesign; re-exporting each
architecture must give the same ``.py`` bytes and equal ``.json`` data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasconv.arch import ArchSpec
from nasconv.export import export_space_arch
from nasconv.spaces import load_space

FIXTURES = Path(__file__).parent / "fixtures" / "export_v0"
INDEX = json.loads((FIXTURES / "index.json").read_text())


@pytest.mark.parametrize("entry", INDEX, ids=[e["tag"] for e in INDEX])
def test_reexport_is_identical(tmp_path, entry):
    space = load_space(entry["space"])
    arch = ArchSpec.from_dict(entry["arch"])
    files = export_space_arch(space, arch, tmp_path)
    assert sorted(p.name for p in files) == sorted(entry["files"])
    for name in entry["files"]:
        expected, got = FIXTURES / entry["tag"] / name, tmp_path / name
        if name.endswith(".py"):
            assert got.read_bytes() == expected.read_bytes(), f"{name} differs from the fixture"
        else:
            assert json.loads(got.read_text()) == json.loads(expected.read_text()), f"{name} differs"
