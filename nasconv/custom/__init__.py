"""Bring your own network: a user's own PyTorch model as a search space (``kind: model``).

>>> space = space_from_model("examples/vgg.py:vgg16_cifar", "3x32x32")   # doctest: +SKIP
>>> arch = space.sample(random.Random(0)); model = build_model(arch)    # doctest: +SKIP

The model runs once (forward hooks); every ``nn.Conv2d`` a registered operator can replace is a
slot, every other one is fixed with the reason; slots form stages, each with the operators valid
for all of its slots. A candidate is a fresh instance from the factory with the chosen slots
swapped by :func:`nasconv.ops.create_op`; its cost is exact (replaced convolutions analytic,
the rest measured once with ``FlopCounterMode``).

Layer: below ``spaces`` (whose loader reads ``kind: model`` files with it); imports ``ops``,
``arch``, ``cost``, ``flops`` and ``errors``.
"""

from nasconv.custom.arch import ModelArch, model_arch_from_dict
from nasconv.custom.build import build_candidate, fresh_model
from nasconv.custom.cost import cost_bounds, model_cost, profile
from nasconv.custom.errors import ModelError, ModelUsageError
from nasconv.custom.generate import parse_input, space_from_model, space_yaml, write_space
from nasconv.custom.space import KIND, ModelSpace, ModelStage, Slot, parse_model_space
from nasconv.custom.trace import ConvInfo, Trace, trace_model

__all__ = ["KIND", "ConvInfo", "ModelArch", "ModelError", "ModelSpace", "ModelStage", "ModelUsageError", "Slot",
           "Trace", "build_candidate", "cost_bounds", "fresh_model", "model_arch_from_dict", "model_cost",
           "parse_input", "parse_model_space", "profile", "space_from_model", "space_yaml", "trace_model",
           "write_space"]
