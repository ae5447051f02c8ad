"""nasconv: neural architecture search over efficient convolution operators."""

from __future__ import annotations

__version__ = "0.1.0"

from nasconv.arch import ArchSpec, OpChoice, StageSpec  # noqa: E402
from nasconv.build import build_model  # noqa: E402
from nasconv.budget import Budget, parse_budget  # noqa: E402
from nasconv.cost import NetworkCost, estimate_cost  # noqa: E402
from nasconv.errors import NasconvError  # noqa: E402
from nasconv.spaces import SearchSpace, list_spaces, load_space  # noqa: E402

__all__ = [
    "ArchSpec", "Budget", "NasconvError", "NetworkCost", "OpChoice", "SearchSpace", "StageSpec", "build_model",
    "estimate_cost", "list_spaces", "load_space", "parse_budget",
]
