"""Image datasets held in memory as uint8 tensors, for brief training of CNN candidates.

``load_dataset(spec)`` names a dataset by a short string (``fashion-mnist``, ``cifar10:DIR``,
``imagefolder:DIR``, ``synthetic[:N]``; see :mod:`nasconv.data.registry`). Images stay uint8 (a
quarter of the memory of float32) until :func:`prepare_batch` turns a batch into the float
tensor a model expects; :func:`subset` picks a stratified random part of a dataset.

Modules: ``dataset`` (the :class:`Dataset` type), ``transforms`` (batch preparation),
``splits`` (subsets and held-out splits), ``cache`` (the process cache), one module per format
(``fashion_mnist``, ``cifar10``, ``imagefolder``, ``synthetic``) and ``registry`` (spec name ->
loader). The package may import only ``nasconv.errors``, numpy, torch, PIL and the standard
library: no other nasconv module.
"""

from __future__ import annotations

from nasconv.data.cache import clear_cache
from nasconv.data.dataset import Dataset
from nasconv.data.registry import KNOWN_SPECS, load_dataset
from nasconv.data.splits import subset
from nasconv.data.transforms import prepare_batch

__all__ = [
    "Dataset",
    "KNOWN_SPECS",
    "clear_cache",
    "load_dataset",
    "prepare_batch",
    "subset",
]
