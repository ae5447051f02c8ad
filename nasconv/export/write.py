"""Writing exports: all files or none, each checked against nasconv's model; loading one back.

For each architecture, ``<name>.py`` is the standalone module (:mod:`nasconv.export.module`),
``<name>.json`` holds the architecture spec (``ArchSpec.from_json`` reads it), the measured
metrics, where it came from and the evaluation settings; ``<name>.pt`` the state dict that the
standalone module loads, and optionally a TorchScript trace and an ONNX file. Every export is
checked before it is committed: the standalone module, loaded with the exported state dict, must
give nasconv's outputs. Files are written to a temporary folder beside the output folder and
moved into place at the end; existing files are refused unless ``force``, and anything but a
regular file or a symbolic link (a folder, FIFO, socket, device) always (:mod:`nasconv.outputs`).
A temporary folder left by an export that was killed is removed by the next export beside it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import os
import secrets
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from nasconv._version import __version__
from nasconv.arch import ArchSpec
from nasconv.build import build_model
from nasconv.checkpoint import runtime_arch
from nasconv.cost import estimate_cost
from nasconv.errors import NasconvError
from nasconv.export.errors import ExportError, one_line
from nasconv.export.fold import FOLDS, export_state_dict, inference_arch
from nasconv.export.module import generate_source
from nasconv.outputs import check_replaceable, path_kind, remove_stale_temps, temp_path
from nasconv.paths import file_stem, os_problem, safe_name

#: version of the ``<name>.json`` layout (its ``format`` field)
FORMAT_VERSION = 1
#: every file an export of ``<name>`` may write, by role
SUFFIXES = {"source": ".py", "metadata": ".json", "weights": ".pt", "torchscript": ".torchscript.pt",
            "onnx": ".onnx"}
#: outputs of nasconv and the standalone module must agree this closely (float32, eval mode)
CHECK_ATOL = 1e-4
#: the export-time check runs at most at this input size (the network is size-agnostic)
CHECK_RESOLUTION = 64


@dataclass
class ExportItem:
    """One architecture to export.

    ``model`` (or what ``load_model`` returns) is a nasconv network (``build_model``) whose state
    becomes ``<name>.pt`` when ``weights``; None builds a fresh one (for the export-time check
    only). ``info`` adds fields to ``<name>.json`` (source, metrics, evaluation).
    """

    name: str
    arch: ArchSpec
    info: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None
    weights: bool = False
    provenance: str = ""
    #: builds ``model`` when it is written (instead of ``model``)
    load_model: Callable[[], nn.Module] | None = None


def _paths(out: Path, name: str) -> dict[str, Path]:
    return {role: out / f"{name}{suffix}" for role, suffix in SUFFIXES.items()}


@contextlib.contextmanager
def _no_bytecode() -> Iterator[None]:
    old = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # importing the generated file must not leave __pycache__ behind
    try:
        yield
    finally:
        sys.dont_write_bytecode = old


def import_source(path: Path, module_name: str | None = None) -> Any:
    """Import a generated ``.py`` as a module (registered in ``sys.modules`` under a unique name)."""
    module_name = module_name or f"nasconv_export_{safe_name(path.stem).replace('-', '_').replace('.', '_')}_" \
                                 f"{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ExportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with _no_bytecode():
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def check_onnx_available() -> None:
    if importlib.util.find_spec("onnx") is None:
        raise ExportError("--onnx needs the onnx package, which is not installed: pip install 'nasconv[onnx]'")


def _write_item(tmp: Path, item: ExportItem, *, torchscript: bool, onnx: bool) -> list[str]:
    """Write one architecture's files into ``tmp``; returns their roles."""
    arch = item.arch
    if getattr(arch, "kind", None) is not None:  # a candidate of a user's own model
        from nasconv.export.own_model import write_model_files

        return write_model_files(tmp, item, _paths(tmp, item.name), torchscript=torchscript, onnx=onnx,
                                 import_source=import_source, write_onnx=_write_onnx, save_bytes=_save_bytes,
                                 atol=CHECK_ATOL)
    model = item.model if item.model is not None else item.load_model() if item.load_model else None
    if model is None:
        with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
            model = build_model(arch)
    else:
        arch = runtime_arch(model)  # e.g. an annealed dynconv temperature
    num_classes, in_channels = model.fc.out_features, model.conv1.in_channels
    was_training = model.training
    try:
        model.eval()
        return _write_files(tmp, item, arch, model, num_classes, in_channels, torchscript=torchscript, onnx=onnx)
    finally:
        model.train(was_training)


def _write_files(tmp: Path, item: ExportItem, arch: ArchSpec, model: nn.Module, num_classes: int, in_channels: int,
                 *, torchscript: bool, onnx: bool) -> list[str]:
    state = export_state_dict(model)
    paths = _paths(tmp, item.name)
    source = generate_source(arch, name=item.name, num_classes=num_classes, in_channels=in_channels,
                             provenance=item.provenance)
    paths["source"].write_text(source)
    roles = ["source"]

    module = import_source(paths["source"])
    try:
        net = module.build(num_classes=num_classes, in_channels=in_channels)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ExportError(f"internal error: the standalone {item.name} does not load nasconv's state dict: "
                              f"{one_line(exc)}") from None
        net.eval()
        res = min(arch.resolution, CHECK_RESOLUTION)
        x = torch.randn(1, in_channels, res, res, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected, got = model(x), net(x)
        # equal_nan: random weights can overflow; the two must then overflow alike
        if not torch.allclose(got, expected, rtol=CHECK_ATOL, atol=CHECK_ATOL, equal_nan=True):
            diff = float((expected - got).abs().max())
            raise ExportError(f"internal error: the standalone {item.name} differs from nasconv's model "
                              f"(max abs diff {diff:.3g})")
        params = sum(p.numel() for p in net.parameters())  # == cost.params: the tests check it
        cost = estimate_cost(inference_arch(arch), num_classes=num_classes, in_channels=in_channels)
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION, "name": item.name,
            "arch": item.arch.to_dict(), "arch_hash": item.arch.arch_hash, "ops": item.arch.ops_label(),
            **item.info,
            "inference": {"params": params, "macs": cost.macs,
                          "resolution": arch.resolution, "num_classes": num_classes, "in_channels": in_channels,
                          "folded": [{"stage": i, "op": s.op.name, "into": FOLDS[s.op.name].note}
                                     for i, s in enumerate(arch.stages) if s.op.name in FOLDS]},
            "build": {"num_classes": num_classes, "in_channels": in_channels},
            "files": {},
            "exported_by": {"nasconv_version": __version__, "torch_version": torch.__version__},
        }
        if arch != item.arch:
            meta["inference"]["arch"] = arch.to_dict()  # the settings the weights were trained to
        if item.weights:
            _save_bytes(paths["weights"], lambda f: torch.save(state, f))
            roles.append("weights")
        weights_note = "exported" if item.weights else "untrained (fresh initialisation)"
        example = torch.randn(1, in_channels, arch.resolution, arch.resolution,
                              generator=torch.Generator().manual_seed(1))
        if torchscript:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(net, example, check_trace=False)
                same = torch.allclose(traced(example), net(example), rtol=CHECK_ATOL, atol=CHECK_ATOL, equal_nan=True)
            if not same:
                raise ExportError(f"the traced {item.name} differs from the module")
            _save_bytes(paths["torchscript"], lambda f: torch.jit.save(traced, f))
            meta["torchscript"] = {"method": "trace", "input_shape": list(example.shape), "weights": weights_note,
                                   "any_batch_size": _works_batched(traced, net, example)}
            roles.append("torchscript")
        if onnx:
            _write_onnx(net, example, paths["onnx"], item.name)
            meta["onnx"] = {"input_shape": list(example.shape), "input": "input", "output": "logits",
                            "weights": weights_note}
            roles.append("onnx")
    finally:
        sys.modules.pop(module.__name__, None)
    return write_metadata(meta, paths, roles)


def write_metadata(meta: dict[str, Any], paths: dict[str, Path], roles: list[str]) -> list[str]:
    """The export's metadata file, naming the files written (``roles``); the roles, metadata last."""
    meta["files"] = {role: paths[role].name for role in roles} | {"metadata": paths["metadata"].name}
    paths["metadata"].write_text(json.dumps(meta, indent=2) + "\n")
    roles.append("metadata")
    return roles


def _save_bytes(path: Path, save: Callable[[io.BytesIO], None]) -> None:
    """Serialise in memory, write with Python's I/O: torch's own file writer aborts the process
    (a C++ exception) on a full disk, where Python's raises an OSError naming the errno."""
    buf = io.BytesIO()
    save(buf)
    path.write_bytes(buf.getvalue())


def _works_batched(traced: Any, net: nn.Module, example: torch.Tensor) -> bool:
    """Whether a model traced at batch 1 also serves batch 2 (per-sample kernels such as condconv's
    turn the batch size into a constant of the trace)."""
    x = torch.cat([example, example.flip(-1)])
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.allclose(traced(x), net(x), rtol=CHECK_ATOL, atol=CHECK_ATOL, equal_nan=True)
    except Exception:
        return False


def _write_onnx(net: nn.Module, example: torch.Tensor, path: Path, name: str) -> None:
    check_onnx_available()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            _save_bytes(path, lambda f: torch.onnx.export(net, (example,), f, input_names=["input"],
                                                          output_names=["logits"], opset_version=17, dynamo=False))
        import onnx

        onnx.checker.check_model(str(path))
    except (NasconvError, OSError):
        raise
    except Exception as exc:
        raise ExportError(f"ONNX export of {name} failed: {one_line(exc)}") from None


def write_exports(items: list[ExportItem], out: str | Path, *, torchscript: bool = False, onnx: bool = False,
                  force: bool = False) -> list[Path]:
    """Export ``items`` into folder ``out``: all files or none.

    Refuses (:class:`~nasconv.outputs.OutputError`) when a file of one of the names exists, unless ``force``,
    which also removes such files that this export does not write again (a stale ``.pt`` would
    not fit the new ``.py``). A symbolic link of one of the names counts as a file (``force``
    replaces the link itself, not its target); a folder, FIFO, socket or device of one of the
    names is never replaced. ``out`` may be a symbolic link to a folder (the files go there).
    """
    out = Path(os.path.abspath(out))  # "." and "a/.." have a real name and parent
    if onnx:
        check_onnx_available()
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise ExportError(f"two architectures would be exported under one name: {', '.join(names)}")
    kind = path_kind(out)
    if kind is not None and not out.is_dir():
        if kind == "a symbolic link":
            kind += f" to {path_kind(out.resolve()) or 'nothing'}"
        raise ExportError(f"cannot export to {out}: it is {kind}, not a folder")
    existing = _existing(out, names, force) if kind is not None else []
    created = _make_parents(out.parent)
    remove_stale_temps(out.parent)  # those of exports that were killed (kill -9 skips every clean-up)
    # A new folder is written beside and renamed into place; files into an existing folder (or the
    # folder a link names) from a temporary folder inside it, on its file system whatever its parent's
    home = Path(os.path.realpath(out)) if kind is not None else out
    if kind is not None:
        remove_stale_temps(home)
    tmp = temp_path(home / home.name if kind is not None else out, "export")
    try:
        tmp.mkdir()
        written: list[tuple[str, str]] = []
        for item in items:
            written += [(item.name, role) for role in _write_item(tmp, item, torchscript=torchscript, onnx=onnx)]
        files = [_paths(tmp, n)[role].name for n, role in written]
        if path_kind(out) is None:
            os.rename(tmp, out)
        else:
            existing = _existing(out, names, force)  # again: what is there now, right before replacing
            for p in existing:
                if p.name not in files:
                    p.unlink()
            for f in files:
                os.replace(tmp / f, home / f)
            tmp.rmdir()
    except OSError as exc:
        _cleanup(tmp, created)
        raise ExportError(f"cannot write to {out}: {os_problem(exc, out.parent)}; nothing was written") from None
    except BaseException:
        _cleanup(tmp, created)
        raise
    return [out / f for f in files]


def _existing(out: Path, names: list[str], force: bool) -> list[Path]:
    """The files of ``names`` already in ``out``; OutputError unless each may be replaced."""
    existing = [p for n in names for p in _paths(out, n).values() if path_kind(p) is not None]
    for p in existing:
        check_replaceable(p, force=force, what="the export")
    return existing


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns what was created (deepest first)."""
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {folder}: {os_problem(exc, exc.filename or folder)}") from None
    return missing


def _cleanup(tmp: Path, created: list[Path]) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    for p in created:  # deepest first
        with contextlib.suppress(OSError):
            p.rmdir()


# --- sources of architectures -----------------------------------------------------------------


def export_model(model: nn.Module, out: str | Path, name: str | None = None, *, weights: bool = True,
                 info: Mapping[str, Any] | None = None, torchscript: bool = False, onnx: bool = False,
                 force: bool = False) -> list[Path]:
    """Export a nasconv network (``build_model``), with its current weights when ``weights``."""
    arch: ArchSpec = model.arch
    item = ExportItem(name or f"{file_stem(arch.space)}-{arch.arch_hash}", arch, dict(info or {}), model, weights)
    return write_exports([item], out, torchscript=torchscript, onnx=onnx, force=force)


def export_space_arch(space: Any, arch: ArchSpec, out: str | Path, *, arch_source: str = "", torchscript: bool = False,
                      onnx: bool = False, force: bool = False) -> list[Path]:
    """Export one architecture of a search space, untrained (no study: nothing was measured)."""
    is_baseline = arch == space.baseline()
    name = f"{file_stem(space.name)}-{'baseline' if is_baseline else arch.arch_hash}"
    cost = estimate_cost(arch)
    info = {"source": {"space": space.name, "arch": arch_source or ("baseline" if is_baseline else None)},
            "metrics": {"params": cost.params, "macs": cost.macs, "measured": False}, "evaluation": None}
    prov = f"From search space {space.name} ({'its all-standard baseline' if is_baseline else 'untrained'})."
    item = ExportItem(name, arch, info, provenance=prov)
    return write_exports([item], out, torchscript=torchscript, onnx=onnx, force=force)


# --- loading an export ------------------------------------------------------------------------


def load(path: str | Path, *, weights: bool = True, map_location: str | torch.device = "cpu") -> nn.Module:
    """The exported network at ``path`` (``DIR/<name>``, or any of its files), in eval mode, with
    the exported weights when there are some."""
    text = str(path)
    for suffix in sorted(SUFFIXES.values(), key=len, reverse=True):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    paths = {role: Path(text + suffix) for role, suffix in SUFFIXES.items()}
    if not paths["source"].is_file():
        raise ExportError(f"no exported model at {text} ({paths['source']} is missing)")
    kwargs: dict[str, Any] = {}
    if paths["metadata"].is_file():
        try:
            kwargs = dict(json.loads(paths["metadata"].read_text()).get("build") or {})
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"cannot read {paths['metadata']}: {exc}") from None
    module = import_source(paths["source"])
    model = module.build(**kwargs)
    if weights and paths["weights"].is_file():
        try:
            state = torch.load(paths["weights"], map_location=map_location, weights_only=True)
            model.load_state_dict(state)
        except (OSError, RuntimeError, EOFError, ValueError) as exc:
            raise ExportError(f"cannot load the weights {paths['weights']}: {one_line(exc)}") from None
    return model.to(map_location).eval()

