"""Drop-in replacements for ``nn.Conv2d``, each with an exact analytic cost.

>>> from nasconv.ops import create_op, op_cost, list_ops
>>> layer = create_op("tbc", 256, 256, 3, blocks=4)
>>> op_cost("tbc", 256, 256, 3, 14, 14, blocks=4).params
36864
"""

from nasconv.ops._registry import (
    Cost,
    Hyper,
    OpSpec,
    create_op,
    get_op,
    list_ops,
    op_cost,
    register_op,
    validate_op,
)

# Each import registers one operator family; the order is the order of `list_ops()`.
from nasconv.ops import standard  # noqa: F401,E402  (standard, gc)

__all__ = ["Cost", "Hyper", "OpSpec", "create_op", "get_op", "list_ops", "op_cost", "register_op", "validate_op"]
