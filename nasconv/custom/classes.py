"""The model's class count follows the data.

A search or an evaluation on data with K classes gives the user's factory ``num_classes=K`` when
it takes that keyword (a parameter of that name, or ``**kwargs``), and checks that the model then
outputs K logits with the same convolutions; a model that cannot follow is refused in one line
before anything is stored. Where the code asks for a K-class space, ``dataclasses.replace(space,
num_classes=K)``, this is what :meth:`ModelSpace.__post_init__` runs.
"""

from __future__ import annotations

import functools
import inspect
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from nasconv.custom.errors import ModelError
from nasconv.custom.factory import call_factory, space_factory
from nasconv.custom.trace import fingerprint, trace_model

if TYPE_CHECKING:
    from nasconv.custom.space import ModelSpace


def accepts_num_classes(factory: Callable[..., Any]) -> bool:
    """Whether ``factory`` takes a ``num_classes`` keyword (by name, or through ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin, a C extension): try it
        return True
    return any(p.kind is p.VAR_KEYWORD or (p.name == "num_classes" and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                 p.KEYWORD_ONLY)) for p in params)


@functools.lru_cache(maxsize=32)
def head_for(space: ModelSpace, num_classes: int) -> tuple[str, str]:
    """``(kwargs JSON, fingerprint)`` of the space's model built with ``num_classes`` classes;
    :class:`ModelError` (one line) when the factory cannot give that many, or changes its
    convolutions doing so, or no longer builds the model the space was made from."""
    from nasconv.custom.cost import changes  # cost builds candidates: imported when needed

    have = space.model_classes
    ref = space.factory
    factory = space_factory(space)
    if not accepts_num_classes(factory):
        raise ModelError(f"the model of space {space.name!r} outputs {have} classes, the data has {num_classes}, "
                         f"and its factory {ref} takes no num_classes keyword to follow the data; give it one, or "
                         f"make the space with the data's class count in --kwargs")
    base = json.loads(space.kwargs_json)
    if fingerprint(call_factory(factory, base, ref)) != space.fingerprint:
        raise ModelError(f"the model {ref} changed under space {space.name!r} (module names or parameter shapes); "
                         "make the space again with `nasconv space from-model`")
    kwargs = {**base, "num_classes": num_classes}
    try:
        model = call_factory(factory, kwargs, ref)
        tr = trace_model(model, space.input_shape, include_first=space.include_first)
    except ModelError as exc:
        raise ModelError(f"space {space.name!r}: its factory given num_classes={num_classes} (the data's class "
                         f"count): {exc}") from None
    if tr.output_shape != (num_classes,):
        raise ModelError(f"space {space.name!r}: its factory {ref} given num_classes={num_classes} (the data's class "
                         f"count) still outputs shape {tr.output_shape}; the model must follow num_classes, or be "
                         "made with the data's class count")
    diff = changes(space, tr.convs)
    if diff:
        raise ModelError(f"space {space.name!r}: giving its factory num_classes={num_classes} changes its "
                         f"convolutions ({'; '.join(diff[:3])}); make the space with the data's class count in "
                         "--kwargs")
    return json.dumps(kwargs, sort_keys=True, allow_nan=False), tr.fingerprint


def for_classes(arch: Any, num_classes: int | None) -> Any:
    """``arch`` (a model candidate) with the data's ``num_classes``-way head: the same choices on
    the space whose factory is given that count (unchanged for None or the same count)."""
    if num_classes is None or num_classes == arch.model_space.num_classes:
        return arch
    return type(arch)(replace(arch.model_space, num_classes=num_classes), arch.ops)
