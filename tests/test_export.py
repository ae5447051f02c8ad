"""Export: standalone source for every operator and shipped space, weights, load(), the CLI and its errors."""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
import textwrap

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from nasconv.arch import ArchSpec, OpChoice, StageSpec
from nasconv.build import build_model
from nasconv.checkpoint import weights_payload
from nasconv.cli import main
from nasconv.cost import estimate_cost
from nasconv.errors import HyperparameterError
from nasconv.evaluate import EvalConfig
from nasconv.export import (
    ExportError,
    export_model,
    export_space_arch,
    export_state_dict,
    fold_model,
    generate_source,
    import_source,
    inference_arch,
    load,
)
from nasconv.flops import measure_cost
from nasconv.ops import get_op, list_ops, set_temperature
from nasconv.outputs import OutputError
from nasconv.spaces import list_spaces, load_space
from nasconv.storage.weights import save_weights, weights_path
from nasconv.train import reduced_copy

#: random space architectures are drawn below this many parameters (or 1.5 x the space's smallest), to
#: keep the test light
MAX_SPACE_PARAMS = 6_000_000
OP_CASES = [f"op-{op}-{block}" for op in list_ops() for block in ("basic", "bottleneck")]
SPACE_CASES = [f"space-{space}-{i}" for space in list_spaces() for i in range(2)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small networks: on a busy 2-core machine, two threads spend more time waiting for each
    other at every operator than computing (10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- architectures and weights ----------------------------------------------------------------


def _op_arch(op: str, block: str) -> ArchSpec:
    """A small network with ``op`` in every stage, cycling through the operator's example settings."""
    examples = list(get_op(op).examples)
    if block == "basic":
        shape = [(16, 1, 1), (32, 2, 2), (64, 1, 2)]  # (width, depth, stride)
        expansion, stem = 1, "cifar"
    else:
        shape = [(16, 2, 1), (32, 1, 2)]
        expansion, stem = 2, "small"
    stages: list[StageSpec] = []
    for i, (width, depth, stride) in enumerate(shape):
        for k in range(len(examples)):
            st = StageSpec(block, depth, width, stride, OpChoice.make(op, examples[(i + k) % len(examples)]), expansion)
            trial = ArchSpec("t", 16, 3, 10, stem, 16, tuple(stages) + (st,))
            try:
                estimate_cost(trial)
            except HyperparameterError:
                continue
            stages.append(st)
            break
        else:
            stages.append(StageSpec(block, depth, width, stride, OpChoice.make(op), expansion))
    return ArchSpec("t", 16, 3, 10, stem, 16, tuple(stages))


def _space_arch(space_name: str, i: int) -> ArchSpec:
    space = load_space(space_name)
    rng = random.Random(f"{space_name}-{i}")
    limit = max(MAX_SPACE_PARAMS, 1.5 * space.cost_bounds()["min_params"])
    for _ in range(5000):
        arch = space.sample(rng)
        if estimate_cost(arch).params <= limit:
            return arch
    raise AssertionError(f"no architecture of {space_name} under {limit:.0f} params")


def _trained_like(model: nn.Module, res: int, seed: int = 0) -> nn.Module:
    """Weights that exercise every path: random BN affine parameters (no block left at zero-init
    identity), zero-initialised parameters (DO-Conv's D) made non-zero, then BN statistics from a
    forward pass, so that activations keep a sane scale (involution's output is quadratic in its input)."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration pass
        model.train()
        model(torch.randn(4, model.conv1.in_channels, res, res, generator=g))
        for bn in bns:
            bn.momentum = 0.1
    return model.eval()


def _resolution(arch: ArchSpec) -> int:
    return 16 if arch.space == "t" else 32  # an ImageNet stem leaves 1 x 1 maps in the last stage at 32 px


def _case_arch(case: str) -> ArchSpec:
    kind, rest = case.split("-", 1)
    if kind == "op":
        op, block = rest.rsplit("-", 1)
        return _op_arch(op, block)
    space, i = rest.rsplit("-", 1)
    return _space_arch(space, int(i))


def torchvision_resnet50_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision's ResNet-50 state dict: key -> shape, from its recipe (3-4-6-3, 64..512, expansion 4)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        shapes.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                       f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    bn("bn1", 64)
    c_in = 64
    for i, (depth, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for j in range(depth):
            p = f"layer{i + 1}.{j}"
            shapes[f"{p}.conv1.weight"] = (width, c_in, 1, 1)
            bn(f"{p}.bn1", width)
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{p}.bn2", width)
            shapes[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            bn(f"{p}.bn3", 4 * width)
            if j == 0:
                shapes[f"{p}.downsample.0.weight"] = (4 * width, c_in, 1, 1)
                bn(f"{p}.downsample.1", 4 * width)
            c_in = 4 * width
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


# --- one fresh process checks every exported file ------------------------------------------------

_CHECKER = textwrap.dedent("""
    import importlib.util, json, sys
    sys.modules["nasconv"] = None  # importing nasconv fails in this process
    import torch
    torch.set_num_threads(int(sys.argv[2]))
    results = {}
    for case in json.load(open(sys.argv[1])):
        try:
            spec = importlib.util.spec_from_file_location("m_" + str(len(results)), case["py"])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            model = module.build(**case["build"])
            out = {"params": sum(p.numel() for p in model.parameters()), "error": None}
            if case.get("weights"):
                model.load_state_dict(torch.load(case["weights"], weights_only=True), strict=True)
                data = torch.load(case["data"], weights_only=True)
                with torch.no_grad():
                    out["diff"] = float((model.eval()(data["x"]) - data["y"]).abs().max())
            if case.get("golden"):
                golden = json.load(open(case["golden"]))
                out["shapes"] = {k: list(v.shape) for k, v in model.state_dict().items()}
                model.load_state_dict({k: torch.zeros(s) for k, s in golden.items()}, strict=True)
            results[case["name"]] = out
        except Exception as exc:
            results[case["name"]] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every case exported with trained-like weights, plus nasconv's outputs, checked in one subprocess."""
    root = tmp_path_factory.mktemp("export")
    out = root / "models"
    cases, info = [], {}
    for case in OP_CASES + SPACE_CASES:
        arch = _case_arch(case)
        res = _resolution(arch)
        torch.manual_seed(0)
        model = _trained_like(build_model(arch), res)
        x = torch.randn(2, arch.in_channels, res, res, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            y = model(x)
        export_model(model, out, case, weights=True, force=True)
        torch.save({"x": x, "y": y}, root / f"{case}.data.pt")
        cases.append({"name": case, "py": str(out / f"{case}.py"), "build": {}, "weights": str(out / f"{case}.pt"),
                      "data": str(root / f"{case}.data.pt")})
        info[case] = {"arch": arch, "model": model, "x": x, "y": y,
                      "params": sum(p.numel() for p in fold_model(model).parameters())}
    export_space_arch(load_space("resnet50"), load_space("resnet50").baseline(), out)
    (root / "golden.json").write_text(json.dumps(torchvision_resnet50_shapes()))
    cases.append({"name": "resnet50-baseline", "py": str(out / "resnet50-baseline.py"), "build": {},
                  "golden": str(root / "golden.json")})
    (root / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, "-c", _CHECKER, str(root / "cases.json"), str(torch.get_num_threads())],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    yield {"dir": out, "results": json.loads(proc.stdout), "info": info}
    for p in out.glob("space-*.pt"):  # pytest keeps recent temporary folders: leave no large files there
        p.unlink()


@pytest.mark.parametrize("case", OP_CASES + SPACE_CASES)
def test_standalone_file_matches_nasconv_in_a_process_without_nasconv(exported, case):
    res, info = exported["results"][case], exported["info"][case]
    assert res["error"] is None, res["error"]
    assert res["params"] == info["params"]
    assert res["diff"] <= 1e-5
    meta = json.loads((exported["dir"] / f"{case}.json").read_text())
    assert meta["inference"]["params"] == res["params"]
    assert ArchSpec.from_json(json.dumps(meta)) == info["arch"]  # the metadata is a readable arch spec


@pytest.mark.parametrize("case", OP_CASES + SPACE_CASES)
def test_generated_source_imports_torch_only(exported, case):
    tree = ast.parse((exported["dir"] / f"{case}.py").read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert modules - {"torch"} <= set(sys.stdlib_module_names)


def test_resnet50_baseline_has_torchvisions_state_dict(exported):
    res = exported["results"]["resnet50-baseline"]
    assert res["error"] is None, res["error"]
    golden = torchvision_resnet50_shapes()
    assert len(golden) == 320
    assert {k: tuple(v) for k, v in res["shapes"].items()} == golden
    assert res["params"] == 25_557_032


@pytest.mark.parametrize("op", list_ops())
def test_inference_cost_equals_the_analytic_cost(exported, op):
    case = f"op-{op}-basic"
    arch, res = exported["info"][case]["arch"], 16
    module = import_source(exported["dir"] / f"{case}.py")
    measured = measure_cost(module.build(), (3, res, res))
    analytic = estimate_cost(inference_arch(arch), res)
    assert (measured.params, measured.macs) == (analytic.params, analytic.macs)
    searched = estimate_cost(arch, res)
    if op == "doconv":  # folded: a plain conv's parameters, the MACs it always had
        assert measured.params < searched.params and measured.macs == searched.macs
    else:
        assert (measured.params, measured.macs) == (searched.params, searched.macs)


@pytest.mark.parametrize("op", [o for o in list_ops() if o != "doconv"])
def test_state_dicts_load_both_ways(exported, op):
    info = exported["info"][f"op-{op}-basic"]
    module = import_source(exported["dir"] / f"op-{op}-basic.py")
    standalone = module.build()
    standalone.load_state_dict(export_state_dict(info["model"]), strict=True)
    fresh = build_model(info["arch"])
    result = fresh.load_state_dict(standalone.state_dict(), strict=False)
    # the same names both ways (only aliases such as a block's ``last_bn`` could be missing)
    assert not result.unexpected_keys and all(".last_bn." in k for k in result.missing_keys)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(info["x"]), info["y"], atol=1e-5)


def test_doconv_is_folded_into_a_plain_kernel(exported):
    info = exported["info"]["op-doconv-basic"]
    folded = fold_model(info["model"])
    convs = [m for m in folded.modules() if type(m) is nn.Conv2d and m.kernel_size == (3, 3)]
    assert len(convs) >= 6 and not any(type(m).__name__ == "DOConv2d" for m in folded.modules())
    assert any(type(m).__name__ == "DOConv2d" for m in info["model"].modules())  # not in place
    with torch.no_grad():
        assert torch.allclose(folded(info["x"]), info["y"], atol=1e-5)
    assert "layer1.0.conv1.weight" in export_state_dict(info["model"])
    assert "layer1.0.conv1.depthwise" not in export_state_dict(info["model"])


def test_load_returns_a_ready_model_with_weights(exported):
    d, info = exported["dir"], exported["info"]["op-splat-bottleneck"]
    for path in (d / "op-splat-bottleneck", d / "op-splat-bottleneck.py", str(d / "op-splat-bottleneck.json")):
        model = load(path)
        assert not model.training
        with torch.no_grad():
            assert torch.allclose(model(info["x"]), info["y"], atol=1e-5)
    untrained = load(d / "op-splat-bottleneck", weights=False)
    with torch.no_grad():
        assert not torch.allclose(untrained(info["x"]), info["y"], atol=1e-3)
    with pytest.raises(ExportError, match="no exported model"):
        load(d / "nothing-here")


def test_every_operator_fits_in_one_file():
    arch = ArchSpec("t", 16, 3, 10, "cifar", 16, tuple(
        StageSpec("basic", 1, 64, 1, OpChoice.make(op)) for op in list_ops()))
    source = generate_source(arch, name="all")
    namespace: dict = {}
    exec(compile(source, "all.py", "exec"), namespace)
    assert set(namespace["OPERATORS"]) == set(list_ops())
    assert "nasconv" not in "".join(line for line in source.splitlines() if "import" in line)


def test_dynconv_temperature_is_exported_as_it_was_trained(tmp_path):
    space = load_space("resnet20")
    ops = [next(o for o in st.ops if o.name == "dynconv") for st in space.stages]
    arch = space.make_arch((op, 2, st.width_default) for op, st in zip(ops, space.stages))
    model = _trained_like(build_model(arch), 16)
    set_temperature(model, 1.0)  # the end of training's annealing; not part of the state dict
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
    export_model(model, tmp_path, "dyn")
    assert '"temperature": 1' in (tmp_path / "dyn.py").read_text()
    with torch.no_grad():
        assert torch.allclose(load(tmp_path / "dyn")(x), y, atol=1e-5)


# --- writing: all or nothing -----------------------------------------------------------------------


def _tiny_arch() -> ArchSpec:
    return _op_arch("tbc", "basic")


def test_existing_files_are_refused_without_force(tmp_path):
    model = build_model(_tiny_arch())
    export_model(model, tmp_path, "m")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputError, match=r"m\.(py|json|pt)'?.* exists; pass --force"):
        export_model(build_model(_op_arch("gc", "basic")), tmp_path, "m")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    export_model(build_model(_op_arch("gc", "basic")), tmp_path, "m", weights=False, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.py"]  # the stale m.pt is gone
    assert "GroupConv2d" in (tmp_path / "m.py").read_text()


def test_a_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    (tmp_path / "keep.txt").write_text("x")

    def broken_trace(*args, **kwargs):
        raise RuntimeError("tracing failed")

    monkeypatch.setattr(torch.jit, "trace", broken_trace)
    for out in (tmp_path, tmp_path / "new" / "deeper"):
        with pytest.raises(RuntimeError, match="tracing failed"):
            export_model(build_model(_tiny_arch()), out, "m", torchscript=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_onnx_without_the_package_is_one_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(ExportError, match=r"pip install 'nasconv\[onnx\]'"):
        export_model(build_model(_tiny_arch()), tmp_path / "out", "m", onnx=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("op, any_batch", [("hetconv", True), ("condconv", False)])
def test_torchscript_is_a_traced_model(tmp_path, op, any_batch):
    model = _trained_like(build_model(_op_arch(op, "basic")), 16)
    export_model(model, tmp_path, "m", torchscript=True)
    traced = torch.jit.load(str(tmp_path / "m.torchscript.pt"))
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), atol=1e-5)
    meta = json.loads((tmp_path / "m.json").read_text())["torchscript"]
    assert meta["method"] == "trace" and meta["weights"] == "exported"
    assert meta["any_batch_size"] is any_batch  # per-sample kernels fix the traced batch size


@pytest.mark.parametrize("op", list_ops())
def test_onnx_export_runs_in_onnxruntime_like_pytorch(tmp_path, op):
    """The test extra installs onnx and onnxruntime: every operator's network exports, passes
    onnx's checker, and onnxruntime computes what PyTorch computes."""
    import numpy as np
    import onnxruntime

    torch.manual_seed(0)
    model = build_model(_op_arch(op, "basic")).eval()
    export_model(model, tmp_path, "m", onnx=True)
    meta = json.loads((tmp_path / "m.json").read_text())["onnx"]
    x = torch.randn(*meta["input_shape"])
    with torch.no_grad():
        ref = model(x).numpy()
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run([meta["output"]], {meta["input"]: x.numpy()})
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


# --- the command line --------------------------------------------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasconv: error:") and "\n" not in err, err
    return err


def test_cli_space_baseline_and_arch_file(tmp_path, capsys):
    assert main(["export", "--space", "resnet20", "--arch", "baseline", "--out", str(tmp_path / "o")]) == 0
    assert "resnet20-baseline" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["resnet20-baseline.json", "resnet20-baseline.py"]
    meta = json.loads((tmp_path / "o" / "resnet20-baseline.json").read_text())
    assert meta["source"] == {"space": "resnet20", "arch": "baseline"} and meta["evaluation"] is None
    # the metadata is an architecture file for the other commands
    assert main(["cost", "--space", "resnet20", "--arch", str(tmp_path / "o" / "resnet20-baseline.json"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == meta["metrics"]["params"]
    arch = load_space("resnet20").sample(random.Random(5))
    (tmp_path / "a.json").write_text(arch.to_json())
    assert main(["export", "--space", "resnet20", "--arch", str(tmp_path / "a.json"), "--out", str(tmp_path / "o"),
                 "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == f"resnet20-{arch.arch_hash}"


def test_cli_existing_output_is_refused_then_forced(tmp_path, capsys):
    argv = ["export", "--space", "resnet20", "--arch", "baseline", "--out", str(tmp_path)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 1
    assert "exists; pass --force" in _one_line_error(capsys)
    assert main(argv + ["--force"]) == 0


@pytest.mark.parametrize("argv, code, text", [
    (["--out", "o"], 2, "give --study NAME"),
    (["--study", "s", "--space", "resnet20", "--out", "o"], 2, "give --study NAME"),
    (["--study", "s", "--out", "o"], 2, "--study needs one of"),
    (["--study", "s", "--trial", "1", "--pareto", "--out", "o"], 2, "not allowed with"),
    (["--study", "s", "--trial", "-1", "--out", "o"], 2, "--trial: must be an integer in [0,"),
    (["--study", "s", "--arch", "baseline", "--trial", "0", "--out", "o"], 2, "--arch goes with --space"),
    (["--study", "s", "--best", "speed", "--out", "o"], 2, "invalid choice"),
    (["--space", "resnet20", "--out", "o"], 2, "--space needs --arch"),
    (["--space", "resnet20", "--arch", "baseline", "--trial", "1", "--out", "o"], 2, "--trial goes with --study"),
    (["--space", "resnet20", "--arch", "baseline", "--weights", "--out", "o"], 2, "never trained"),
    (["--space", "nope", "--arch", "baseline", "--out", "o"], 2, "unknown"),
    (["--space", "resnet20", "--arch", "missing.json", "--out", "o"], 1, "cannot read architecture file"),
    (["--space", "resnet20", "--arch", "baseline"], 2, "--out"),
    (["--study", "s", "--trial", "0", "--storage", "sqlite:///db/x.db", "--out", "o"], 1, "db/x.db does not exist"),
])
def test_cli_bad_input_is_one_line(tmp_path, monkeypatch, capsys, argv, code, text):
    monkeypatch.chdir(tmp_path)
    assert main(["export", *argv]) == code
    assert text in _one_line_error(capsys)
    assert not (tmp_path / "o").exists() and not (tmp_path / "db").exists()


def test_cli_onnx_missing_is_one_line(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["export", "--space", "resnet20", "--arch", "baseline", "--onnx", "--out", str(tmp_path / "o")]) == 1
    assert "nasconv[onnx]" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


# --- exporting from a study --------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A hand-made study as the search leaves it: evaluated, cached, rejected, failed and running trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path_factory.mktemp('study')}/s.db"
    s = optuna.create_study(study_name="s1", storage=url, directions=["maximize", "minimize"])
    cfg = EvalConfig()
    for key, value in {"space": "resnet20", "budget": "30mflops", "objectives": ["accuracy", "latency"],
                       "settings_key": cfg.settings_key(), "eval_config": cfg.to_dict()}.items():
        s.set_user_attr(key, value)
    space = load_space("resnet20")
    rng = random.Random(0)
    dyn = [next(o for o in st.ops if o.name == "dynconv") for st in space.stages]
    archs = [space.make_arch((op, 2, st.width_default) for op, st in zip(dyn, space.stages))]
    archs += [space.sample(rng) for _ in range(3)]
    for i, arch in enumerate(archs):
        t = s.ask()
        cost = estimate_cost(arch)
        acc, lat = 0.5 + 0.1 * i, 1.0 + i
        for k, v in {"arch": arch.to_dict(), "arch_hash": arch.arch_hash, "ops": arch.ops_label(), "macs": cost.macs,
                     "params": cost.params, "status": "evaluated" if i != 3 else "cached", "accuracy": acc,
                     "score": acc, "latency_ms": lat, "steps": 187}.items():
            t.set_user_attr(k, v)
        t.set_constraint("macs", -1.0)
        s.tell(t, [acc, lat])
    t = s.ask()  # over budget: never evaluated
    t.set_user_attr("arch", archs[0].to_dict())
    t.set_user_attr("status", "rejected")
    t.set_user_attr("reject_reason", "over budget: macs 41M > 30M")
    t.set_constraint("macs", 1.0)
    s.tell(t, [0.0, 99.0])
    t = s.ask()
    t.set_user_attr("fail_reason", "out of memory")
    s.tell(t, state=TrialState.FAIL)
    s.ask()  # still running
    return {"url": url, "archs": archs}


def _export(study, tmp_path, *extra):
    return main(["export", "--study", "s1", "--storage", study["url"], "--out", str(tmp_path / "o"), *extra])


def test_cli_study_trial_has_metrics_provenance_and_settings(study, tmp_path, capsys):
    assert _export(study, tmp_path, "--trial", "1") == 0
    meta = json.loads((tmp_path / "o" / "s1-trial1.json").read_text())
    assert meta["source"]["study"] == "s1" and meta["source"]["trial"] == 1
    assert meta["metrics"]["accuracy"] == pytest.approx(0.6) and meta["metrics"]["latency_ms"] == 2.0
    assert meta["evaluation"]["config"]["train"]["resolution"] == EvalConfig().train.resolution
    assert ArchSpec.from_dict(meta["arch"]) == study["archs"][1]
    assert "From study s1, trial 1." in (tmp_path / "o" / "s1-trial1.py").read_text()


def test_cli_study_pareto_and_best(study, tmp_path, capsys):
    assert _export(study, tmp_path, "--pareto") == 0
    # every evaluated trial is on the front here (accuracy and latency both rise with the number)
    assert sorted(p.name for p in (tmp_path / "o").glob("*.py")) == [f"s1-trial{i}.py" for i in range(4)]
    capsys.readouterr()
    for metric, trial in (("accuracy", 3), ("latency", 0)):
        assert _export(study, tmp_path, "--best", metric, "--force", "--json") == 0
        assert json.loads(capsys.readouterr().out)[0]["name"] == f"s1-trial{trial}"
    macs = [estimate_cost(a).macs for a in study["archs"]]
    assert _export(study, tmp_path, "--best", "macs", "--force", "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == f"s1-trial{macs.index(min(macs))}"


@pytest.mark.parametrize("argv, text", [
    (["--trial", "99"], "has no trial 99"),
    (["--trial", "4"], "was never evaluated (over budget"),
    (["--trial", "5"], "did not complete (state FAIL: out of memory)"),
    (["--trial", "6"], "did not complete (state RUNNING)"),
    (["--trial", "1", "--weights"], "no kept weights for trial 1"),
])
def test_cli_study_errors_are_one_line_and_write_nothing(study, tmp_path, capsys, argv, text):
    assert _export(study, tmp_path, *argv) == 1
    assert text in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_cli_unknown_study(study, tmp_path, capsys):
    assert main(["export", "--study", "nope", "--storage", study["url"], "--pareto", "--out", str(tmp_path)]) == 1
    assert "no study 'nope'" in _one_line_error(capsys)


def test_cli_study_weights_kept_by_the_search(study, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NASCONV_WEIGHTS_DIR", str(tmp_path / "weights"))
    arch = study["archs"][0]  # dynconv everywhere: the annealed temperature must travel too
    model = _trained_like(build_model(arch), 16)
    set_temperature(model, 1.0)
    path = save_weights(study["url"], "s1", arch.arch_hash, weights_payload(model))
    assert path == weights_path(study["url"], "s1", arch.arch_hash) and path.parent.name == "s1"
    assert _export(study, tmp_path, "--trial", "0", "--weights") == 0
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        assert torch.allclose(load(tmp_path / "o" / "s1-trial0")(x), model(x), atol=1e-5)
    meta = json.loads((tmp_path / "o" / "s1-trial0.json").read_text())
    assert meta["files"]["weights"] == "s1-trial0.pt" and meta["weights"]["num_classes"] == 10


def test_cli_study_weights_of_a_reduced_proxy_are_refused(study, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NASCONV_WEIGHTS_DIR", str(tmp_path / "weights"))
    arch = study["archs"][2]
    proxy = reduced_copy(arch, max_depth=1, width_factor=0.5, resolution=28, num_classes=10, in_channels=3)
    save_weights(study["url"], "s1", arch.arch_hash, weights_payload(build_model(proxy)))
    assert _export(study, tmp_path, "--trial", "2", "--weights") == 1
    assert "belong to the reduced proxy copy" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_weights_dir_follows_a_sqlite_storage(tmp_path, monkeypatch):
    monkeypatch.delenv("NASCONV_WEIGHTS_DIR", raising=False)
    path = weights_path(f"sqlite:///{tmp_path}/db/s.db", "a/b", "0123")
    # "a/b" no longer shares the folder "a_b" of the study a_b: a slug plus a hash of the name
    assert path.parent.parent == tmp_path / "db" / "weights" and path.name == "0123.pt"
    assert path.parent.name.startswith("a_b-") and len(path.parent.name) == len("a_b-") + 8
