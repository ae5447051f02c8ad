"""The cost of the network trained, for any class count: the head follows the data (issue #34)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import sys

import optuna
import pytest
import torch

from nasconv.arch import ArchSpec
from nasconv.build import build_model
from nasconv.cli import main
from nasconv.cost import estimate_cost
from nasconv.export.module import generate_source
from nasconv.flops import measure_cost
from nasconv.search.task import keep_stored_head
from nasconv.spaces import load_space
from tests.test_data import save_image

CLASS_COUNTS = (2, 10, 43, 100)


def folder(root, classes: int, train: int = 2, held_out: int = 1):
    """A tiny image folder with ``train/`` and ``val/`` (synthetic PNGs: for layout and shape only)."""
    for split, n in (("train", train), ("val", held_out)):
        for c in range(classes):
            for i in range(n):
                save_image(root / split / f"class{c:03d}" / f"{i}.png", (7 * c + i) % 256)
    return root


@pytest.mark.parametrize("classes", CLASS_COUNTS)
@pytest.mark.parametrize("space_name", ["resnet20", "resnet50"])
def test_analytic_cost_equals_flop_counter_for_any_class_count(space_name, classes):
    space = dataclasses.replace(load_space(space_name), num_classes=classes)
    for arch in (space.baseline(), space.sample(random.Random(classes))):
        assert arch.num_classes == classes
        with torch.device("meta"):  # counted without arithmetic: resnet50 at 224 px in milliseconds
            model = build_model(arch)
        assert model.fc.out_features == classes
        measured = measure_cost(model, (arch.in_channels, arch.resolution, arch.resolution))
        cost = estimate_cost(arch)
        assert (cost.params, cost.macs) == (measured.params, measured.macs)


def test_sample_and_cost_take_the_class_count(tmp_path, capsys):
    assert main(["sample", "--space", "resnet20", "--seed", "3", "--num-classes", "43", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch"]["num_classes"] == 43
    (tmp_path / "a.json").write_text(json.dumps(out))
    assert main(["cost", "--space", "resnet20", "--arch", str(tmp_path / "a.json"), "--measure", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)
    assert cost["num_classes"] == 43 and (cost["params"], cost["macs"]) == (out["params"], out["macs"])
    assert cost["measured"] == {"params": cost["params"], "macs": cost["macs"]}
    # the same file costed with another head: the head's linear layer, exactly
    assert main(["cost", "--space", "resnet20", "--arch", str(tmp_path / "a.json"), "--num-classes", "100",
                 "--json"]) == 0
    wider = json.loads(capsys.readouterr().out)
    last = out["arch"]["stages"][-1]
    assert wider["params"] - cost["params"] == (100 - 43) * (last["width"] * last["expansion"] + 1)

    data = folder(tmp_path / "f", 7)
    assert main(["sample", "--space", "resnet20", "--seed", "3", "--data", f"imagefolder:{data}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arch"]["num_classes"] == 7


def test_a_class_count_that_contradicts_the_data_is_one_line_exit_2(tmp_path, capsys):
    data = folder(tmp_path / "f", 3)
    assert main(["cost", "--space", "resnet20", "--num-classes", "10", "--data", f"imagefolder:{data}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nasconv: error: --num-classes 10 contradicts the data: imagefolder:{data} has 3 classes"]


def test_the_standalone_export_has_the_head_of_its_class_count(tmp_path):
    arch = dataclasses.replace(load_space("resnet20"), num_classes=43).sample(random.Random(0))
    path = tmp_path / "net43.py"
    path.write_text(generate_source(arch, name="net43"))
    spec = importlib.util.spec_from_file_location("net43", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["net43"] = module
    try:
        spec.loader.exec_module(module)
        assert module.NUM_CLASSES == 43
        net = module.build().eval()
        assert net(torch.zeros(10, 3, 32, 32)).shape == (10, 43)
    finally:
        del sys.modules["net43"]


def test_a_study_made_with_a_10_class_head_keeps_it_with_a_note():
    unbound = load_space("resnet20")
    bound = dataclasses.replace(unbound, num_classes=43)
    space, note = keep_stored_head({"space_hash": unbound.content_hash}, unbound, bound)
    assert space is unbound and "10-class head" in note and "43 classes" in note
    assert keep_stored_head({"space_hash": bound.content_hash}, unbound, bound) == (bound, None)
    assert keep_stored_head({}, unbound, bound) == (bound, None)  # a new study


@pytest.mark.slow
def test_a_search_on_a_43_class_folder_costs_and_exports_43_logits(tmp_path, capsys):
    data = folder(tmp_path / "f43", 43)
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["search", "--space", "resnet20", "--data", f"imagefolder:{data}", "--trials", "1", "--inline",
                 "--no-latency", "--no-baseline", "--objectives", "accuracy,params", "--storage", db, "--study", "s",
                 "--train-images", "64", "--val-images", "43", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["data"]["num_classes"] == 43
    trial = optuna.load_study(study_name="s", storage=db).trials[0]
    arch = ArchSpec.from_dict(trial.user_attrs["arch"])
    assert arch.num_classes == 43
    with torch.device("meta"):
        measured = measure_cost(build_model(arch), (3, 32, 32))
    assert (trial.user_attrs["params"], trial.user_attrs["macs"]) == (measured.params, measured.macs)
    assert main(["export", "--study", "s", "--storage", db, "--best", "accuracy", "--out", str(tmp_path / "x")]) == 0
    py = next((tmp_path / "x").glob("*.py"))
    spec = importlib.util.spec_from_file_location(py.stem.replace("-", "_"), py)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        assert module.build().eval()(torch.zeros(10, 3, 32, 32)).shape == (10, 43)
    finally:
        del sys.modules[spec.name]
