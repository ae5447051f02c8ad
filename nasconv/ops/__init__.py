"""Drop-in replacements for ``nn.Conv2d``, each with an exact analytic cost.

>>> from nasconv.ops import create_op, op_cost, list_ops
>>> layer = create_op("tbc", 256, 256, 3, blocks=4)
>>> op_cost("tbc", 256, 256, 3, 14, 14, blocks=4).params
36864

Layer: above ``errors`` only (operators import torch, the registry and the cost primitives of
:mod:`nasconv.ops.complexity`, nothing else of nasconv). An operator's class is also exported as
standalone source (:mod:`nasconv.export`): outside its ``validate`` method it may use only torch,
the standard library and :func:`~nasconv.ops._registry.require`.
"""

from nasconv.ops._registry import (
    Hyper,
    OpSpec,
    clear_op_cost_cache,
    create_op,
    get_op,
    list_ops,
    op_cost,
    register_op,
    validate_op,
)
from nasconv.ops.complexity import Cost, bn_cost, conv_cost, linear_cost, out_size

# Each import registers one operator family; the order is the order of `list_ops()`.
# isort: off
from nasconv.ops import standard  # noqa: F401,E402  (standard, gc)
from nasconv.ops import tied  # noqa: F401,E402  (tbc, tgc)
from nasconv.ops import hetconv  # noqa: F401,E402  (hetconv)
from nasconv.ops import igc  # noqa: F401,E402  (igc)
from nasconv.ops import spconv  # noqa: F401,E402
from nasconv.ops import dynamic  # noqa: F401,E402  (condconv, dynconv)
from nasconv.ops.dynamic import set_temperature  # noqa: E402
from nasconv.ops import ghost  # noqa: F401,E402  (ghost)
from nasconv.ops import doconv  # noqa: F401,E402  (doconv)
from nasconv.ops import scconv  # noqa: F401,E402  (scconv)
from nasconv.ops import involution  # noqa: F401,E402  (involution)
from nasconv.ops import splat  # noqa: F401,E402  (splat)
from nasconv.ops import igcv3  # noqa: F401,E402  (igcv3)
# isort: on

__all__ = ["Cost", "Hyper", "OpSpec", "bn_cost", "clear_op_cost_cache", "conv_cost", "create_op", "get_op",
           "linear_cost", "list_ops", "op_cost", "out_size", "register_op", "set_temperature", "validate_op"]
