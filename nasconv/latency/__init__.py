"""A per-device latency model: predicted network latency from a lookup table of measured parts.

Profiling a device once (:func:`profile_space`) measures every distinct part a search space can
produce (stem, each block as operator choice x shape x stride, head) on that device, each in three
passes at different moments, and stores the middle medians in nasconv's own table in the study
database, keyed by device name, torch version, threads, batch and precision (:mod:`.table`); a few
whole networks calibrate the block sum. A search re-times a few of those networks to scale the
table to the device's speed today (:mod:`.drift`), then predicts a candidate's latency in
microseconds (:class:`LatencyModel`), checks a latency budget before anything is built or trained,
and measures only where it matters. The table alone gives each stage x family latency effect
with its interval, without training (:mod:`.effects`).

A user's own network (``kind: model``) has its slots and the rest as parts (:mod:`.model_parts`).

May import: storage, profile, build, spaces, custom, cost, arch, stats, errors (never search, runners or
the CLI; never Ray).
"""

from nasconv.latency.blocks import Part, arch_key_counts, arch_parts, build_part, space_parts
from nasconv.latency.drift import DRIFT_NETWORKS, DRIFT_TOLERANCE, corrected, drift_factor
from nasconv.latency.effects import TableEffects, effects_dict, table_effects
from nasconv.latency.model import Calibration, LatencyModel, LatencyPrediction, fit_calibration, load_model
from nasconv.latency.paired import PairedTiming, time_interleaved, time_together
from nasconv.latency.profiler import (
    CALIBRATION_NETWORKS,
    NETWORK_REPEATS,
    NETWORK_ROUNDS,
    PART_ROUNDS,
    ProfileReport,
    Repeats,
    calibration_archs,
    measure_network,
    network_key,
    profile_space,
    round_key,
)
from nasconv.latency.table import (
    PRECISION,
    DeviceSetting,
    LatencyTable,
    LatencyTableError,
    current_setting,
    open_tables,
    require_calibration,
)

__all__ = [
    "CALIBRATION_NETWORKS", "DRIFT_NETWORKS", "DRIFT_TOLERANCE", "NETWORK_REPEATS", "NETWORK_ROUNDS", "PART_ROUNDS",
    "PRECISION", "Calibration", "DeviceSetting", "LatencyModel", "LatencyPrediction", "LatencyTable",
    "LatencyTableError", "PairedTiming", "Part", "ProfileReport", "Repeats", "arch_key_counts", "arch_parts",
    "build_part",
    "calibration_archs", "corrected", "current_setting", "drift_factor", "fit_calibration", "load_model",
    "measure_network", "network_key", "open_tables", "profile_space", "require_calibration", "round_key",
    "space_parts", "table_effects", "effects_dict", "TableEffects", "time_interleaved", "time_together",
]
