"""Export of a model-space candidate: a .py importing the user's factory, nasconv's operators
embedded as standalone source, the weights; the exported model equals the built candidate."""

from __future__ import annotations

import pytest
import torch

from nasconv.arch import OpChoice
from nasconv.build import build_model
from nasconv.export import ExportItem, load, write_exports
from tests.test_custom_space import make


@pytest.mark.parametrize("name, ops", [
    ("vgg", {1: ("hetconv", {"part": 2})}),  # VGG's convolutions have a bias: BiasedOp in the file
    ("reuse", {0: ("ghost", {}), 1: ("gc", {"groups": 4})}),
])
def test_exported_candidate_equals_the_built_one(name, ops, tmp_path):
    space = make(name)
    choice = [OpChoice.make(*ops[i]) if i in ops else OpChoice.make("standard") for i in range(len(space.stages))]
    arch = space.make_arch(choice)
    model = build_model(arch)
    with torch.no_grad():  # "trained" weights: not the fresh initialisation the exported build() makes
        for p in model.parameters():
            p.mul_(1.1).add_(0.01)
    files = write_exports([ExportItem(f"{name}-cand", arch, model=model, weights=True)], tmp_path,
                          torchscript=True, onnx=name == "reuse")
    source = (tmp_path / f"{name}-cand.py").read_text()
    assert "import nasconv" not in source and "from nasconv" not in source
    assert "FACTORY = " in source and "REPLACEMENTS = [" in source
    assert {f.name for f in files} >= {f"{name}-cand.py", f"{name}-cand.pt", f"{name}-cand.torchscript.pt"}
    loaded = load(tmp_path / f"{name}-cand")
    model.eval()
    x = torch.randn(2, *space.input_shape)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
        traced = torch.jit.load(str(tmp_path / f"{name}-cand.torchscript.pt"))
        assert torch.allclose(traced(x[:1]), model(x[:1]), atol=1e-4)
    if name == "reuse":
        assert loaded.shared is loaded.alias  # one module under both names, as in the user's model
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(tmp_path / f"{name}-cand.onnx"))
        with torch.no_grad():
            got = torch.from_numpy(session.run(None, {"input": x[:1].numpy()})[0])
            assert torch.allclose(got, model(x[:1]), atol=1e-4)


def test_kept_weights_payload_rebuilds_the_candidate():
    from nasconv.checkpoint import model_from_payload, weights_payload

    space = make("reuse")
    arch = space.make_arch([OpChoice.make("hetconv", {"part": 2}), OpChoice.make("standard")])
    model = build_model(arch).eval()
    payload = weights_payload(model, num_classes=10)
    assert payload["in_channels"] == 3 and payload["trained_arch"]["kind"] == "model"
    back = model_from_payload(payload).eval()
    x = torch.randn(1, *space.input_shape)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
