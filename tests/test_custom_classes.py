"""nasconv.custom.classes and .weights: the model's class count follows the data; the starting
weights are identified by content (a changed file is refused in one line)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nasconv.arch import ArchSpec, OpChoice
from nasconv.build import build_model
from nasconv.cli import main
from nasconv.cost import estimate_cost
from nasconv.custom import ModelError, space_from_model
from nasconv.custom.build import fresh_model
from nasconv.flops import measure_cost
from tests.test_custom_space import EXAMPLES, ROOT, _module

LOOP = str(ROOT / EXAMPLES["reuse"][0])
#: a model whose factory cannot change its class count (4 outputs, no num_classes keyword)
FIXED_HEAD = """
    def make():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
"""


def test_factory_with_num_classes_builds_the_datas_head():
    space = space_from_model(LOOP, "3x32x32", kwargs={"width": 8, "num_classes": 4})
    assert space.num_classes == 4
    bound = dataclasses.replace(space, num_classes=10)  # what a search on 10-class data asks for
    assert bound.num_classes == 10 and bound.kwargs == {"width": 8, "num_classes": 10} and bound.new_head
    assert bound.fingerprint != space.fingerprint and bound.content_hash != space.content_hash
    arch = bound.make_arch([OpChoice.make("gc", {"groups": 2}), OpChoice.make("standard")])
    model = build_model(arch)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    est, got = estimate_cost(arch), measure_cost(model, (3, 32, 32))
    assert (est.params, est.macs) == (got.params, got.macs)
    back = ArchSpec.from_json(arch.to_json())  # what a worker reads: the 10-class space, no second adaptation
    assert back == arch and back.model_space.kwargs["num_classes"] == 10
    # a 4-class candidate built for 10-class data (an evaluation): built and costed with the data's head
    small = space.baseline()
    assert build_model(small, num_classes=10)(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert estimate_cost(small, num_classes=10).params == estimate_cost(bound.baseline()).params
    assert dataclasses.replace(small, num_classes=10) == bound.baseline()


def test_new_head_keeps_the_trained_trunk_and_starts_a_fresh_classifier(tmp_path):
    space = space_from_model(LOOP, "3x32x32", kwargs={"width": 8, "num_classes": 4})
    trained = fresh_model(space)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5)
    path = tmp_path / "w.pt"
    torch.save(trained.state_dict(), path)
    space = space_from_model(LOOP, "3x32x32", kwargs={"width": 8, "num_classes": 4}, init_from=str(path))
    model = build_model(space.baseline(), num_classes=10)
    assert torch.equal(model.shared.weight, trained.shared.weight)
    assert model.fc.weight.shape == (10, 16) and not torch.equal(model.fc.weight[:4], trained.fc.weight)


def test_a_factory_that_cannot_follow_the_data_is_refused_before_anything_is_stored(tmp_path, capsys):
    ref = _module(tmp_path, FIXED_HEAD, "fixed_head.py") + ":make"
    space = space_from_model(ref, "3x32x32")
    with pytest.raises(ModelError, match="outputs 4 classes, the data has 10, and its factory .* takes no "
                                         "num_classes keyword") as info:
        dataclasses.replace(space, num_classes=10)
    assert "\n" not in str(info.value)
    out = tmp_path / "fixed.yaml"
    assert main(["space", "from-model", ref, "--input", "3x32x32", "--out", str(out)]) == 0
    db = tmp_path / "s.db"
    capsys.readouterr()
    for argv in (["search", "--space", str(out), "--trials", "2", "--inline", "--storage", f"sqlite:///{db}",
                  "--proxy", "grad_norm", "--no-latency", "--objectives", "accuracy,macs"],
                 ["evaluate", "--space", str(out), "--proxy", "grad_norm", "--no-latency"]):
        code = main([*argv, "--data", "synthetic"])
        err = capsys.readouterr().err.strip()
        assert code == 1 and "takes no num_classes keyword" in err and "\n" not in err and "Traceback" not in err
    assert not db.exists()


def test_a_search_on_other_data_trains_the_datas_head(tmp_path, capsys):
    out = tmp_path / "loop4.yaml"
    assert main(["space", "from-model", LOOP, "--kwargs", '{"width": 8, "num_classes": 4}', "--input", "3x32x32",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["search", "--space", str(out), "--trials", "1", "--inline", "--storage",
                 f"sqlite:///{tmp_path / 's.db'}", "--proxy", "grad_norm", "--no-latency", "--objectives",
                 "accuracy,macs", "--data", "synthetic",
                 "--sampler", "random", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["evaluated"] == 1 and result["failed"] == 0
    arch = result["front"][0]["arch"]
    assert arch["num_classes"] == 10 and arch["model_space"]["model"]["kwargs"]["num_classes"] == 10


def test_changed_weights_are_refused_on_resume_naming_the_file(tmp_path, capsys):
    src = space_from_model(LOOP, "3x32x32", kwargs={"width": 8})
    weights = tmp_path / "w.pt"
    torch.save(fresh_model(src).state_dict(), weights)
    out = tmp_path / "loop.yaml"
    assert main(["space", "from-model", LOOP, "--kwargs", '{"width": 8}', "--input", "3x32x32", "--out", str(out),
                 "--init-from", str(weights)]) == 0
    assert "init_sha256:" in out.read_text()
    argv = ["search", "--space", str(out), "--trials", "1", "--inline", "--storage", f"sqlite:///{tmp_path / 's.db'}",
            "--proxy", "grad_norm", "--no-latency", "--objectives", "accuracy,macs", "--data", "synthetic",
            "--sampler", "random", "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    trained = fresh_model(src)
    with torch.no_grad():
        trained.fc.bias.add_(1.0)
    torch.save(trained.state_dict(), weights)  # the same path, other weights
    assert main([*argv[:4], "2", *argv[5:]]) == 1
    err = capsys.readouterr().err.strip()
    assert f"the weights {weights} changed since the space was made: sha256" in err and "\n" not in err
