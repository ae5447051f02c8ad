"""nasconv: neural architecture search over efficient convolution operators."""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting make multi-threaded timings meaningless on a shared
# machine (2-40x slower forward passes measured beside another job); sleeping waiters cost a
# few percent at most. Set before torch loads its OpenMP runtime; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
