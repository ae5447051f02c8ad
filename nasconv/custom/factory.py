"""``MODULE:FACTORY``: the user's model factory, from a dotted module or a ``.py`` path.

The user's code stays theirs: it is imported, never copied. A relative ``.py`` path is read
against the working directory, then against the directory of the space file that names it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from nasconv.custom.errors import ModelError, ModelUsageError, first_line


def parse_ref(ref: str) -> tuple[str, str]:
    """``("examples/vgg.py", "vgg16_cifar")`` from ``examples/vgg.py:vgg16_cifar``."""
    if not isinstance(ref, str) or ref.count(":") < 1:
        raise ModelUsageError(f"a model factory is MODULE:FACTORY (a dotted module or a .py path), got {ref!r}")
    module, _, name = ref.rpartition(":")
    if not module or not name.isidentifier():
        raise ModelUsageError(f"a model factory is MODULE:FACTORY (a dotted module or a .py path), got {ref!r}")
    return module, name


def _import_path(path: Path) -> Any:
    # One module object per file and content: a second space naming the same file reuses it,
    # and its name says where it came from (pickling a model built from it needs the name).
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    mod_name = f"nasconv_user_{path.stem.replace('-', '_')}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ModelUsageError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(mod_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ModelUsageError(f"importing {path} failed: {first_line(exc)}") from None
    return module


def _import_dotted(module_ref: str, base_dir: str | Path | None, extra_dirs: tuple[str, ...] = ()) -> Any:
    """``import module_ref``; where it is not found on the path, also from the current folder,
    ``base_dir`` and ``extra_dirs``, as ``python -m`` finds a module in the folder it is started from."""
    try:
        return importlib.import_module(module_ref)
    except ModuleNotFoundError as exc:
        top = module_ref.split(".")[0]
        if exc.name not in (top, module_ref) and not module_ref.startswith(f"{exc.name}."):
            raise  # a module the user's code imports is missing: that is the error to show
        extra = [str(Path(d).resolve()) for d in (Path.cwd(), base_dir, *extra_dirs) if d]
        extra = [d for d in dict.fromkeys(extra) if d not in sys.path]
        if not extra:
            raise
        sys.path[:0] = extra
        try:
            return importlib.import_module(module_ref)
        finally:
            for d in extra:
                if d in sys.path:
                    sys.path.remove(d)


def load_factory(ref: str, *, base_dir: str | Path | None = None,
                 extra_dirs: tuple[str, ...] = ()) -> Callable[..., Any]:
    """The callable ``ref`` names; every failure (import error, missing name) in one line.
    ``extra_dirs``: where else a dotted module may be found (a worker's: :func:`module_root`)."""
    module_ref, name = parse_ref(ref)
    if module_ref.endswith(".py") or "/" in module_ref:
        path = Path(module_ref)
        if not path.is_file() and base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / module_ref
        if not path.is_file():
            raise ModelUsageError(f"model file {module_ref} not found")
        module = _import_path(path)
    else:
        try:
            module = _import_dotted(module_ref, base_dir, extra_dirs)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ModelUsageError(f"importing {module_ref} failed: {first_line(exc)}") from None
    factory = getattr(module, name, None)
    if factory is None:
        raise ModelUsageError(f"{module_ref} has no {name!r}")
    if not callable(factory):
        raise ModelUsageError(f"{module_ref}:{name} is not callable")
    return factory


def call_factory(factory: Callable[..., Any], kwargs: dict[str, Any], ref: str = "the factory") -> Any:
    """``factory(**kwargs)``, which must return an ``nn.Module``; a raise or a memory error in one line."""
    from torch import nn

    try:
        model = factory(**kwargs)
    except MemoryError:
        raise ModelError(f"{ref} ran out of memory building the model") from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        if "out of memory" in str(exc).lower():
            raise ModelError(f"{ref} ran out of memory building the model") from None
        raise ModelError(f"{ref} raised {first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{ref} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def space_factory(space: Any) -> Callable[..., Any]:
    """The factory of a :class:`~nasconv.custom.space.ModelSpace`, found as the space says."""
    return load_factory(space.factory, base_dir=space.base_dir or None,
                        extra_dirs=(space.module_dir,) if space.module_dir else ())


def module_root(space: Any) -> str:
    """The folder a dotted factory module was imported from (``""`` for a ``.py`` path, or where
    it cannot be told): it travels with a candidate, so that a worker started elsewhere (Ray)
    imports the same module."""
    module_ref, _ = parse_ref(space.factory)
    if module_ref.endswith(".py") or "/" in module_ref:
        return ""
    if space.module_dir:
        return str(space.module_dir)
    try:
        space_factory(space)
    except ModelUsageError:
        return ""
    file = getattr(sys.modules.get(module_ref), "__file__", None)
    if not file:
        return ""
    path = Path(file).resolve()
    if path.name == "__init__.py":
        path = path.parent
    return str(path.parents[module_ref.count(".")])
