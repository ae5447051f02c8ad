"""nasconv: neural architecture search over efficient convolution operators.

The public API a Python user needs, by task::

    space = nasconv.load_space("resnet50")                 # search spaces (YAML data)
    arch = space.baseline()                                # an ArchSpec (JSON round trip, stable hash)
    nasconv.estimate_cost(arch)                            # exact params / MACs, no model built
    model = nasconv.build_model(arch)                      # torch.nn.Module
    metrics = nasconv.evaluate(arch, nasconv.EvalConfig()) # brief training + latency
    result = nasconv.run_search(nasconv.SearchConfig(space="resnet50", budget="4gflops"))
    model = nasconv.load_exported("exported/<name>")       # an exported architecture, ready to run

Subpackages: ``ops`` (operators), ``data``, ``storage``, ``results``, ``search``, ``export``,
``cli`` (the command line, which nothing in the library imports). The public names load on
first use, so that ``import nasconv`` stays light (no torch).
"""

from __future__ import annotations

import importlib as _importlib
import os as _os
from typing import TYPE_CHECKING, Any

from nasconv._version import __version__

# OpenMP threads that spin while waiting make multi-threaded timings meaningless on a shared
# machine; sleeping waiters cost a few percent at most. Set before torch loads its OpenMP
# runtime; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from nasconv.errors import NasconvError  # noqa: E402

#: public name -> (module, attribute), imported on first access: most import torch, which
#: ``nasconv --help`` does not need, and which the CLI loads inside its Ctrl-C handling
_LAZY = {
    "ArchSpec": ("nasconv.arch", "ArchSpec"),
    "OpChoice": ("nasconv.arch", "OpChoice"),
    "StageSpec": ("nasconv.arch", "StageSpec"),
    "Budget": ("nasconv.budget", "Budget"),
    "parse_budget": ("nasconv.budget", "parse_budget"),
    "build_model": ("nasconv.build", "build_model"),
    "NetworkCost": ("nasconv.cost", "NetworkCost"),
    "estimate_cost": ("nasconv.cost", "estimate_cost"),
    "SearchSpace": ("nasconv.spaces", "SearchSpace"),
    "list_spaces": ("nasconv.spaces", "list_spaces"),
    "load_arch": ("nasconv.spaces", "load_arch"),
    "load_space": ("nasconv.spaces", "load_space"),
    "space_from_model": ("nasconv.custom", "space_from_model"),
    "EvalConfig": ("nasconv.evaluate", "EvalConfig"),
    "evaluate": ("nasconv.evaluate", "evaluate"),
    "SearchConfig": ("nasconv.search", "SearchConfig"),
    "SearchResult": ("nasconv.search", "SearchResult"),
    "run_search": ("nasconv.search", "run_search"),
    "load_exported": ("nasconv.export", "load"),
    "export_space_arch": ("nasconv.export", "export_space_arch"),
    "export_study": ("nasconv.export", "export_study"),
}

if TYPE_CHECKING:
    from nasconv.arch import ArchSpec, OpChoice, StageSpec
    from nasconv.budget import Budget, parse_budget
    from nasconv.build import build_model
    from nasconv.cost import NetworkCost, estimate_cost
    from nasconv.custom import space_from_model
    from nasconv.evaluate import EvalConfig, evaluate
    from nasconv.export import export_space_arch, export_study
    from nasconv.export import load as load_exported
    from nasconv.search import SearchConfig, SearchResult, run_search
    from nasconv.spaces import SearchSpace, list_spaces, load_arch, load_space


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(_importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nasconv' has no attribute {name!r}")


__all__ = [
    "ArchSpec", "Budget", "EvalConfig", "NasconvError", "NetworkCost", "OpChoice", "SearchConfig", "SearchResult",
    "SearchSpace", "StageSpec", "__version__", "build_model", "estimate_cost", "evaluate", "export_space_arch",
    "export_study", "list_spaces", "load_arch", "load_exported", "load_space", "parse_budget", "run_search",
    "space_from_model",
]
