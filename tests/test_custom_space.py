"""nasconv.custom: a user's own model as a space (trace, stages, file round trip, key-path errors)."""

from __future__ import annotations

import functools
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from nasconv.custom import ModelError, ModelUsageError, space_from_model, space_yaml, write_space
from nasconv.custom.factory import load_factory
from nasconv.errors import SpaceError
from nasconv.spaces import load_space

ROOT = Path(__file__).resolve().parents[1]
#: each shipped example, narrowed so that the tests stay fast (the structure is the example's own)
EXAMPLES = {
    "vgg": ("examples/vgg.py:vgg16_cifar", {"width": 0.125}),
    "mobilenetv2": ("examples/mobilenetv2.py:mobilenetv2_cifar", {"width": 0.5}),
    "unet": ("examples/unet.py:small_unet", {"base": 8}),
    "densenet": ("examples/densenet.py:densenet_small", {"growth": 8, "layers": 3}),
    "reuse": ("examples/reuse.py:loop_net", {"width": 16}),
}


@functools.lru_cache(maxsize=None)  # spaces are immutable: the test modules share them
def make(name: str, **kw):
    ref, kwargs = EXAMPLES[name]
    return space_from_model(str(ROOT / ref), (3, 32, 32), kwargs=kwargs, **kw)


@pytest.fixture(scope="module")
def spaces():
    return {name: make(name) for name in EXAMPLES}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_space_round_trips_through_its_file(name, spaces, tmp_path):
    space = spaces[name]
    assert space.slots and space.stages and space.num_classes == 10
    # every slot sits in exactly one stage, and a stage's choices fit all of its slots
    owned = [n for st in space.stages for n in st.slots]
    assert sorted(owned) == sorted(s.name for s in space.slots)
    for st in space.stages:
        assert st.ops[0].label() == "standard" and len(st.ops) > 1
    path = write_space(space, tmp_path / f"{name}.yaml")
    loaded = load_space(str(path))
    assert loaded.kind == "model" and loaded.content_hash == space.content_hash
    assert [st.ops for st in loaded.stages] == [st.ops for st in space.stages]


def test_default_stages_are_runs_of_one_output_size(spaces):
    vgg = spaces["vgg"]
    # features.0 reads the image: fixed with the reason; 12 slots in the five 32..2 px blocks
    assert [n for n, _ in vgg.fixed] == ["features.0"] and "reads the image" in vgg.fixed[0][1]
    assert [len(st.slots) for st in vgg.stages] == [1, 2, 3, 3, 3]
    assert [st.name for st in vgg.stages] == ["s0-32px", "s1-16px", "s2-8px", "s3-4px", "s4-2px"]
    # U-Net: the decoder returns to 16 and 32 px: new stages, not the encoder's
    assert [st.name for st in spaces["unet"].stages] == ["s0-32px", "s1-16px", "s2-8px", "s3-16px", "s4-32px"]
    assert spaces["unet"].slot_by_name["dec2.0"].in_channels == 8 * 4 + 8 * 2  # reads the concatenation


def test_depthwise_and_pointwise_are_fixed_with_the_reason(spaces):
    mb = spaces["mobilenetv2"]
    reasons = dict(mb.fixed)
    assert reasons["blocks.0.depthwise.0"].startswith("depthwise")
    assert reasons["blocks.0.expand.0"].startswith("pointwise 1x1")
    assert reasons["head.0"].startswith("pointwise 1x1")
    assert {s.name for s in mb.slots} == {"fused.0.0", "fused.1.0"}
    text = space_yaml(mb)
    assert "depthwise (groups = channels)" in text and "fixed:" in text


def test_densenet_choices_fit_every_concatenated_input(spaces):
    dn = spaces["densenet"]
    st = dn.stages[0]
    ins = {dn.slot_by_name[n].in_channels for n in st.slots}
    assert ins == {16, 24, 32}
    for op in st.ops:
        if op.name == "gc":
            assert all(c % op.kwargs["groups"] == 0 for c in ins | {8})


def test_reused_module_is_one_slot_with_every_call_and_name(spaces):
    slot = spaces["reuse"].slot_by_name["shared"]
    assert slot.calls == ((32, 32),) * 3 and slot.aliases == ("alias",)


def test_reused_module_refused_when_asked():
    with pytest.raises(ModelError, match=r"shared is called 3 times in one forward pass"):
        make("reuse", shared="refuse")


def test_globs_regroup_slots_and_errors_name_the_key_path(spaces, tmp_path):
    data = yaml.safe_load(space_yaml(spaces["vgg"]))
    data["stages"] = [{"name": "all", "convs": ["features.*"],
                       "choices": ["standard", {"op": "hetconv", "part": [2, 4]}]}]
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(data))
    one = load_space(str(path))
    assert len(one.stages) == 1 and len(one.stages[0].slots) == 12 and one.size == 3

    def refused(stages, match):
        bad = dict(data, stages=stages)
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(SpaceError, match=match):
            load_space(str(path))

    refused([{"name": "a", "convs": ["features.3"], "choices": [{"op": "gc", "groups": 3}]}],
            r"one.yaml: stages\[0\].choices\[0\]: gc\(groups=3\) cannot replace features.3 .*G must divide")
    refused([{"name": "a", "convs": ["features.0"], "choices": ["standard"]}],
            r"stages\[0\].convs\[0\]: 'features.0' matches no replaceable convolution \(features.0 is fixed: the first")
    refused([{"name": "a", "convs": ["features.3"], "choices": ["standard"]},
             {"name": "b", "convs": ["features.*"], "choices": ["standard"]}],
            r"stages\[1\].convs\[0\]: features.3 is already in stages\[0\]")
    refused([{"name": "a", "convs": ["features.3"], "choices": ["standard"], "depth": 2}],
            r"stages\[0\].depth: unknown key")
    bad = dict(data, kind="resnet")
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(SpaceError, match="kind: must be 'model'"):
        load_space(str(path))


def _module(tmp_path: Path, body: str, name: str = "usernet.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent("""
        import torch
        from torch import nn
    """) + textwrap.dedent(body))
    return str(path)


@pytest.mark.parametrize("body, error, match", [
    ("import no_such_module_xyz\ndef make(): pass\n", ModelUsageError, r"importing .* failed: ModuleNotFoundError"),
    ("def make():\n    raise RuntimeError('no GPU here')\n", ModelError, r"raised RuntimeError: no GPU here"),
    ("def make():\n    raise MemoryError()\n", ModelError, r"ran out of memory building the model"),
    ("def make():\n    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.Flatten(), nn.LazyLinear(10))\n", ModelError,
     r"no convolution a registered operator can replace \(0: the first|no convolution a registered operator"),
    ("def make():\n    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1),"
     " nn.Flatten(), nn.Linear(8 * 16 * 16, 10))\n", ModelError, r"the model rejects a 3x32x32 input: RuntimeError"),
    ("def make():\n    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))\n",
     ModelError, r"must output class logits .* got a tensor of shape \(1, 8, 32, 32\)"),
    ("import random\ndef make():\n    c = random.choice([8, 16, 24, 32])\n"
     "    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1),"
     " nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))\n", ModelError,
     r"builds a different structure on a second call"),
])
def test_bad_models_are_refused_in_one_line(tmp_path, body, error, match):
    if "random" in body:
        import random
        random.seed(1)  # two different widths on the first two calls with this seed
    ref = _module(tmp_path, body, f"bad_{abs(hash(body))}.py") + ":make"
    with pytest.raises(error, match=match) as info:
        space_from_model(ref, "3x32x32")
    assert "\n" not in str(info.value)


def test_bad_references_and_inputs(tmp_path):
    with pytest.raises(ModelUsageError, match="MODULE:FACTORY"):
        space_from_model("examples/vgg.py", "3x32x32")
    with pytest.raises(ModelUsageError, match="not found"):
        space_from_model(str(tmp_path / "nope.py") + ":make", "3x32x32")
    with pytest.raises(ModelUsageError, match="--input must be CxHxW"):
        space_from_model(str(ROOT / EXAMPLES["vgg"][0]), "3x32")
    with pytest.raises(ModelUsageError, match="has no 'nope'"):
        space_from_model(str(ROOT / "examples/vgg.py") + ":nope", "3x32x32")


def test_dotted_module_reference(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    space = space_from_model("examples.reuse:loop_net", "3x32x32", kwargs={"width": 8})
    assert space.factory == "examples.reuse:loop_net" and [s.name for s in space.slots] == ["shared", "down"]


def test_model_changed_under_a_stored_space_is_refused_with_what_changed(tmp_path):
    ref = _module(tmp_path, """
        WIDTH = 8
        def make():
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, WIDTH, 3, padding=1),
                                 nn.Conv2d(WIDTH, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(8, 10))
    """, "changing_net.py") + ":make"
    space = space_from_model(ref, "3x32x32")
    arch = space.baseline()
    arch.build()  # unchanged: builds
    sys.modules[load_factory(ref).__module__].WIDTH = 16
    with pytest.raises(ModelError, match=r"changed under space 'make': 1 was 8->8 3x3/1 at 32x32, is now "
                                         r"8->16 3x3/1 at 32x32; 2 was .*fingerprint"):
        arch.build()
