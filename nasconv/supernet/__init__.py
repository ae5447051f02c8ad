"""One-shot screening: a weight-sharing supernet per search space, trained once by single-path
sampling (:func:`train_supernet`, checkpointed and resumable), whose subnetworks are evaluated by
inheriting its weights (:meth:`TrainedSupernet.evaluate_subnet`: load once, score many).

Layer: above ``evaluate`` (its settings and metrics), below ``storage``; the CLI picks the folder.
"""

from nasconv.supernet.evaluate import FIDELITY, TrainedSupernet
from nasconv.supernet.memory import MemoryEstimate, SupernetMemoryError, estimate_memory
from nasconv.supernet.model import ProxySettings, Supernet, proxy_arch
from nasconv.supernet.store import SupernetCheckpointError, list_checkpoints
from nasconv.supernet.train import SupernetConfig, SupernetDivergedError, sample_arch, train_supernet

__all__ = ["FIDELITY", "MemoryEstimate", "ProxySettings", "Supernet", "SupernetCheckpointError", "SupernetConfig",
           "SupernetDivergedError", "SupernetMemoryError", "TrainedSupernet", "estimate_memory", "list_checkpoints",
           "proxy_arch", "sample_arch", "train_supernet"]
