"""build_model: the same networks, parameter names and random draws as before the redesign, and
the network nasconv builds is the one it exports."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from nasconv import build as build_module
from nasconv.arch import ArchSpec, OpChoice, StageSpec
from nasconv.build import build_model
from nasconv.errors import UnknownNameError
from nasconv.export import FOLDS
from nasconv.spaces import load_space

FIXTURES = Path(__file__).parent / "fixtures"
#: written by the code before the redesign: per architecture (every operator in basic and
#: bottleneck blocks, resnet20 samples, other class count / input channels / no zero-init), built
#: under ``torch.manual_seed(0)``: a hash of the state dict's names and shapes, each tensor's sum,
#: and the eval-mode output for a fixed input
REFERENCE = json.loads((FIXTURES / "build_v0.json").read_text())
EXPORTS = json.loads((FIXTURES / "export_v0" / "index.json").read_text())


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("ref", REFERENCE, ids=[r["tag"] for r in REFERENCE])
def test_same_parameters_and_outputs_as_before(ref):
    arch = ArchSpec.from_dict(ref["arch"])
    torch.manual_seed(0)
    model = build_model(arch, **ref["build"]).eval()
    state = model.state_dict()
    names = json.dumps([[k, list(v.shape)] for k, v in state.items()])
    assert hashlib.sha256(names.encode()).hexdigest() == ref["state_names"], "parameter names or shapes changed"
    for (name, value), expected in zip(state.items(), ref["state_sums"], strict=True):
        got = value.double().sum().item()
        assert math.isclose(got, expected, rel_tol=1e-5, abs_tol=1e-5), f"{name}: other values ({got} != {expected})"
    res = min(arch.resolution, 64)
    channels = ref["build"].get("in_channels") or arch.in_channels
    x = torch.randn(2, channels, res, res, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert torch.allclose(y, torch.tensor(ref["output"]), rtol=1e-4, atol=1e-5)


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"fixture_{path.stem.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("entry", [e for e in EXPORTS if not any(s["op"] in FOLDS for s in e["arch"]["stages"])],
                         ids=lambda e: e["tag"])
def test_same_network_as_the_files_exported_before(entry):
    """The standalone files written before the redesign draw the same initial weights as
    ``build_model`` does now, tensor for tensor (a folded operator has other parameters)."""
    module = _import(FIXTURES / "export_v0" / entry["tag"] / next(f for f in entry["files"] if f.endswith(".py")))
    torch.manual_seed(0)
    exported = module.build().state_dict()
    torch.manual_seed(0)
    ours = build_model(ArchSpec.from_dict(entry["arch"])).state_dict()
    assert list(ours) == list(exported)
    for k in exported:
        assert torch.equal(ours[k], exported[k]), k


def test_build_is_torchvisions_resnet50():
    with torch.device("meta"):
        default = build_module.build()
        resnet50 = build_model(load_space("resnet50").baseline())
    assert {k: v.shape for k, v in default.state_dict().items()} == \
        {k: v.shape for k, v in resnet50.state_dict().items()}


def test_model_keeps_its_arch_and_blocks():
    arch = ArchSpec("t", 16, 3, 10, "small", 16, (StageSpec("bottleneck", 2, 8, 1, OpChoice.make("gc", {"groups": 2}),
                                                             2),))
    model = build_model(arch, num_classes=5)
    assert model.arch == arch and len(list(model.blocks())) == 2 and model.fc.out_features == 5
    assert model.forward_features(torch.randn(1, 3, 16, 16)).shape == (1, 16)


def test_unknown_operator_is_refused():
    arch = ArchSpec("t", 16, 3, 10, "cifar", 16, (StageSpec("basic", 1, 16, 1, OpChoice.make("nope")),))
    with pytest.raises(UnknownNameError, match="unknown operator 'nope'"):
        build_model(arch)
