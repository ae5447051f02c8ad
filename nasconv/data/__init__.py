"""Image datasets as uint8 tensors, for brief training of CNN candidates.

``load_dataset(spec)`` names a dataset by a short string (``fashion-mnist``, ``cifar10``,
``cifar100``, ``cifar10:DIR``, ``imagefolder:DIR``, ``synthetic[:N]``; see
:mod:`nasconv.data.registry`). A dataset is decoded once into the data cache (``cache_dir``,
``$NASCONV_CACHE_DIR`` or the user cache; :mod:`nasconv.data.store`) and memory-mapped by every
later load, in any process. Images stay uint8 (a quarter of the memory of float32) until
:func:`prepare_batch` turns a batch into the float tensor a model expects; :func:`subset` picks a
stratified random part of a dataset; :func:`choose_default_data` picks CIFAR-10 when it can be
had, else Fashion-MNIST.

Modules: ``dataset`` (the :class:`Dataset` type), ``transforms`` (batch preparation),
``splits`` (subsets and held-out splits), ``cache`` (the process cache), ``store`` (the on-disk
data cache), ``decode`` and ``parallel`` (reading image files in worker processes), ``download``
(checked downloads, safe tarballs), one module per format (``fashion_mnist``, ``cifar`` with
``cifar_sources``, ``imagefolder``, ``synthetic``) and ``registry`` (spec name -> loader). The
package may import only ``nasconv.errors``, numpy, torch, PIL, tqdm and the standard library:
no other nasconv module.

The public names load on first use, so that a decoding worker process, which imports
:mod:`nasconv.data.decode`, does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasconv.data.cache import clear_cache
    from nasconv.data.cifar_sources import choose_default_data
    from nasconv.data.dataset import Dataset
    from nasconv.data.registry import KNOWN_SPECS, check_spec, load_dataset
    from nasconv.data.splits import subset
    from nasconv.data.store import cache_root
    from nasconv.data.transforms import prepare_batch

#: public name -> the module that defines it
_LAZY = {
    "Dataset": "nasconv.data.dataset",
    "KNOWN_SPECS": "nasconv.data.registry",
    "cache_root": "nasconv.data.store",
    "check_spec": "nasconv.data.registry",
    "choose_default_data": "nasconv.data.cifar_sources",
    "clear_cache": "nasconv.data.cache",
    "load_dataset": "nasconv.data.registry",
    "prepare_batch": "nasconv.data.transforms",
    "subset": "nasconv.data.splits",
}

__all__ = [
    "Dataset",
    "KNOWN_SPECS",
    "cache_root",
    "check_spec",
    "choose_default_data",
    "clear_cache",
    "load_dataset",
    "prepare_batch",
    "subset",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
