"""Export architectures: standalone PyTorch source (torch only), metadata, weights, TorchScript, ONNX.

For each architecture, ``<name>.py`` holds the operators it uses (their classes, taken from
nasconv's operator modules without the hyperparameter validation), the architecture as plain
Python data, the network (taken from :mod:`nasconv.build`, the network nasconv itself builds) and
``build(num_classes=..., in_channels=...)``; it imports torch alone. ``<name>.json`` holds the
architecture spec, the measured metrics, where it came from and the evaluation settings;
``<name>.pt`` the state dict that the standalone module loads. :func:`load` gives the ready
model back. Training-time structure is folded where the operator allows it (:data:`FOLDS`).

Modules, bottom to top: ``errors``; ``fold`` (inference form of trained operators); ``source``
(operator and network source copied out of nasconv's modules); ``module`` (the standalone
file); ``write`` (checked, all-or-nothing writing; ``load``); ``study`` (trials of a study, with
the weights a search kept).

May import: every layer below it (ops, arch, cost, build, checkpoint, storage, results, paths);
never search or the CLI.
"""

from nasconv.export.errors import ExportError
from nasconv.export.fold import FOLDS, Fold, export_state_dict, fold_model, inference_arch
from nasconv.export.module import generate_source
from nasconv.export.source import EXTRAS, NETWORK, network_source, operator_source
from nasconv.export.study import BEST_METRICS, export_study, select_trials
from nasconv.export.write import (
    CHECK_ATOL,
    CHECK_RESOLUTION,
    FORMAT_VERSION,
    SUFFIXES,
    ExportItem,
    export_model,
    export_space_arch,
    import_source,
    load,
    write_exports,
)

__all__ = [
    "BEST_METRICS", "CHECK_ATOL", "CHECK_RESOLUTION", "EXTRAS", "FOLDS", "FORMAT_VERSION", "NETWORK", "SUFFIXES",
    "ExportError", "ExportItem", "Fold", "export_model", "export_space_arch", "export_state_dict",
    "export_study", "fold_model", "generate_source", "import_source", "inference_arch", "load",
    "network_source", "operator_source", "select_trials",
    "write_exports",
]
