"""Standalone source of operators and of the network, copied out of nasconv's own modules.

Each exported file holds the classes of the operators it uses, taken from their operator
modules (:mod:`nasconv.ops`) without the hyperparameter validation, and the network, taken from
:mod:`nasconv.build` (:data:`NETWORK`): one source for the network nasconv trains and the one
it exports. The copies are checked: a copied definition may use only torch, the standard
library, the other copied definitions and the shims of :data:`_SHIMS`.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import textwrap
from dataclasses import dataclass, field

from nasconv.export.errors import ExportError
from nasconv.export.fold import FOLDS
from nasconv.ops import get_op, list_ops


@dataclass(frozen=True)
class _ModuleIndex:
    name: str
    lines: tuple[str, ...]
    defs: dict[str, ast.stmt]
    imports: dict[str, str]  # bound name -> what it is ("torch.nn.functional", "nasconv.ops._registry.require")


@functools.lru_cache(maxsize=None)
def _module_index(module_name: str) -> _ModuleIndex:
    text = inspect.getsource(importlib.import_module(module_name))
    defs: dict[str, ast.stmt] = {}
    imports: dict[str, str] = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    defs[t.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defs[node.target.id] = node
        elif isinstance(node, ast.Import):
            for a in node.names:
                imports[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = "." * node.level + (node.module or "")
            for a in node.names:
                imports[a.asname or a.name] = f"{base}.{a.name}"
    return _ModuleIndex(module_name, tuple(text.splitlines()), defs, imports)


def _is_validate_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "validate"
            and isinstance(node.value.func.value, ast.Name) and node.value.func.value.id == "self")


def _snippet(index: _ModuleIndex, name: str) -> str:
    """The source of one top-level definition, with the comment lines right above it, minus the
    hyperparameter validation (nasconv's registry checks arguments; the exported file is built
    from an architecture that passed them)."""
    node = index.defs[name]
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    while start > 1 and index.lines[start - 2].lstrip().startswith("#"):
        start -= 1
    cut: set[int] = set()
    if isinstance(node, ast.ClassDef):
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "validate":
                first = min([item.lineno] + [d.lineno for d in item.decorator_list])
                cut.update(range(first, item.end_lineno + 1))
        for sub in ast.walk(node):
            if _is_validate_call(sub):
                cut.update(range(sub.lineno, sub.end_lineno + 1))
    kept: list[str] = []
    for i in range(start, node.end_lineno + 1):
        line = index.lines[i - 1]
        if i in cut or (not line.strip() and kept and not kept[-1].strip()):
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    # the standalone helpers raise ValueError where nasconv raises its HyperparameterError
    return "\n".join(kept).replace("HyperparameterError", "ValueError")


class _FreeNames(ast.NodeVisitor):
    """Names a definition reads at run time (annotations are skipped: they are never evaluated)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.names.append(node.id)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for sub in [*node.decorator_list, *node.args.defaults, *[d for d in node.args.kw_defaults if d], *node.body]:
            self.visit(sub)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)


def _free_names(source: str) -> list[str]:
    v = _FreeNames()
    v.visit(ast.parse(source))
    return v.names


#: nasconv helpers that operator code may call outside validation, as standalone source
_SHIMS = {
    "require": '''\
def require(op: str, ok: bool, key: str, rule: str, **values) -> None:
    """Raise ``ValueError`` naming the hyperparameter and the rule it breaks."""
    if not ok:
        got = ", ".join(f"{k}={v!r}" for k, v in values.items())
        raise ValueError(f"{op}: {key}: {rule}, but got {got}")''',
}
#: helpers exported with an operator because training it needs them (not only its forward)
EXTRAS = {"dynconv": ("set_temperature",)}
#: imports the standalone module always has (the network code uses them)
_BASE_IMPORTS = {"torch": "torch", "nn": "torch.nn"}


def import_line(bound: str, target: str) -> str:
    if "." not in target:
        return f"import {target}" + (f" as {bound}" if bound != target else "")
    parent, _, last = target.rpartition(".")
    return f"from {parent} import {last}" + (f" as {bound}" if bound != last else "")


@dataclass
class _OperatorSource:
    imports: dict[str, str] = field(default_factory=lambda: dict(_BASE_IMPORTS))
    blocks: list[tuple[str, list[str]]] = field(default_factory=list)  # (header comment, definitions)
    classes: dict[str, str] = field(default_factory=dict)  # op -> class name
    defined: dict[str, str] = field(default_factory=dict)  # name -> source (for duplicate checks)

    def add_import(self, bound: str, target: str, op: str) -> None:
        if self.imports.setdefault(bound, target) != target:
            raise ExportError(f"operator {op}: {bound} means {target} in its module but {self.imports[bound]} "
                              "elsewhere; the exporter cannot write both into one file")

    def define(self, name: str, source: str, op: str) -> bool:
        """Record a definition; False when an identical one is already there."""
        if name in self.defined:
            if self.defined[name] != source:
                raise ExportError(f"operator {op}: {name} is defined differently by another operator's module; "
                                  "the exporter cannot write both into one file")
            return False
        self.defined[name] = source
        return True


def operator_source(ops: list[str]) -> _OperatorSource:
    """Standalone source of the operators ``ops`` (registry names), with their helpers and imports."""
    out = _OperatorSource()
    shims: list[str] = []
    for op in [o for o in list_ops() if o in set(ops)]:
        spec = get_op(op)
        header = f"--- {op}: {spec.summary}" + (f" ({spec.paper})" if spec.paper else "")
        if op in FOLDS:
            header += f"; exported folded: {FOLDS[op].note}"
        header = "\n".join(textwrap.wrap(header, 100, initial_indent="# ", subsequent_indent="#     "))
        if op in FOLDS:
            f = FOLDS[op]
            for name in _free_names(f.source):
                if name in ("math", "F"):
                    out.add_import(name, {"math": "math", "F": "torch.nn.functional"}[name], op)
            out.define(f.class_name, f.source, op)
            out.blocks.append((header, [f.source]))
            out.classes[op] = f.class_name
            continue
        index = _module_index(spec.cls.__module__)
        needed: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            if name in index.defs:
                needed.append(name)
                for ref in _free_names(_snippet(index, name)):
                    visit(ref)
            elif name in index.imports:
                target = index.imports[name]
                if target.startswith(("nasconv", ".")):
                    if name not in _SHIMS:
                        raise ExportError(f"operator {op} uses nasconv's {name} outside its validation; "
                                          "the exporter cannot write it standalone")
                    if name not in shims:
                        shims.append(name)
                else:
                    out.add_import(name, target, op)

        for name in (spec.cls.__name__, *EXTRAS.get(op, ())):
            visit(name)
        order = sorted(needed, key=lambda n: index.defs[n].lineno)  # the module's own order is valid
        block = [s for n in order if out.define(n, s := _snippet(index, n), op)]
        out.blocks.append((header, block))
        out.classes[op] = spec.cls.__name__
    if shims:
        out.blocks.insert(0, ("# --- helpers shared by the operators", [_SHIMS[n] for n in shims]))
    return out



# --- the network ------------------------------------------------------------------------------

#: nasconv.build's definitions that make up the exported network, in the file's order
NETWORK = ("make_op", "shortcut", "BasicBlock", "Bottleneck", "ConvNet", "build")
#: what the exported file defines for them above the network: the operator table, the architecture
NETWORK_NEEDS = ("OPERATORS", "NUM_CLASSES", "IN_CHANNELS", "STEM", "STEM_WIDTH", "STAGES")


@functools.lru_cache(maxsize=None)
def network_source() -> str:
    """The network part of the standalone file: :data:`NETWORK`'s source in :mod:`nasconv.build`."""
    index = _module_index("nasconv.build")
    snippets = [_snippet(index, name) for name in NETWORK]
    for name in sorted(set(_free_names("\n\n".join(snippets)))):
        if name in NETWORK or name in NETWORK_NEEDS:
            continue
        # anything else of build.py's (other than the file's own imports) is not in the file
        if name in index.defs or (name in index.imports and index.imports[name] != _BASE_IMPORTS.get(name)):
            raise ExportError(f"internal error: nasconv.build's network uses {name}, which the standalone file "
                              "does not define")
    return "\n\n\n".join(snippets)
