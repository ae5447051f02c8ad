"""What a search is asked to do: :class:`SearchConfig` (frozen, checked when made) and what it returns."""

from __future__ import annotations

import dataclasses
import math
import socket
from dataclasses import dataclass, field
from typing import Any

from nasconv.errors import NasconvError, UnknownNameError, UsageError
from nasconv.evaluate import EvalConfig
from nasconv.search.deadline import check_time_s
from nasconv.search.fidelity import Fidelity
from nasconv.storage import DEFAULT_STORAGE

SAMPLERS = ("nsga2", "tpe", "gp", "random")
#: objective name -> (metric key, direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("score", "maximize"),
    "latency": ("latency_ms", "minimize"),
    "macs": ("macs", "minimize"),
    "params": ("params", "minimize"),
}
RUNNERS = ("ray", "inline")
#: where a search's latency objective comes from (nasconv.search.latency_gate)
LATENCY_MODES = ("measure", "predict", "predict+remeasure")
#: ``--screen``: how candidates are screened before stand-alone training (:mod:`nasconv.search.screen`)
SCREENS = ("oneshot",)
#: candidates screened by default (why: :mod:`nasconv.search.screen`)
DEFAULT_SCREEN_COUNT = 100


@dataclass(frozen=True)
class SearchConfig:
    space: str
    budget: str | None = None
    trials: int = 20
    #: None: the sampler the study began with, or :data:`DEFAULT_SAMPLER` for a new study
    sampler: str | None = None
    objectives: tuple[str, ...] = ("accuracy", "latency")
    seed: int = 0
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    workers: int = 1
    cpus_per_worker: int | None = None
    address: str | None = None
    #: GPUs per evaluation; with any, evaluations run on CUDA (an EvalConfig left on "auto" or "cpu"
    #: is moved there)
    gpus_per_trial: float = 0.0
    eval: EvalConfig = field(default_factory=EvalConfig)
    evaluate_baseline: bool = True
    runner: str = "ray"
    max_failures: int | None = None
    max_rejections: int | None = None
    progress: bool = True
    #: keep the trained weights of every evaluated candidate (needs a proxy that trains the
    #: architecture itself: --full-proxy), for `nasconv export --weights`
    keep_weights: bool = False
    #: multi-fidelity (:class:`~nasconv.search.fidelity.Fidelity`): rung r trains on
    #: eta**r x eval.train.train_images; 1 rung is a flat search
    rungs: int = 1
    eta: float = 3.0
    #: front members at the top rung are evaluated again with this many further seeds
    repeats: int = 0
    #: why the evaluation data was chosen when the user named none (stamped on a new study)
    data_choice: str | None = None
    #: measure | predict | predict+remeasure: where the latency objective comes from (the
    #: per-device table of :mod:`nasconv.latency`; :mod:`nasconv.search.latency_gate`)
    latency: str = "measure"
    #: choose ``eval.metric`` from the data (balanced accuracy where held-out classes differ by
    #: more than 2x) and the proxy's length by :func:`nasconv.search.task.proxy_length` (the CLI
    #: sets both for a new study where the user named neither; :mod:`nasconv.search.task`)
    choose_metric: bool = False
    size_proxy: bool = False
    #: wall-clock budget of this run in seconds (``--time``; :mod:`nasconv.search.deadline`): after
    #: it nothing new starts; what runs may finish within ``time_grace_s`` (None: the default grace)
    time_s: float | None = None
    time_grace_s: float | None = None
    #: ``--screen oneshot``: before the loop, ``screen_count`` candidates are scored by a weight-sharing
    #: supernet (trained for ``supernet_steps``, None: its default) and the best by non-dominated rank
    #: are trained stand-alone (:mod:`nasconv.search.screen`)
    screen: str | None = None
    screen_count: int = DEFAULT_SCREEN_COUNT
    supernet_steps: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", tuple(self.objectives))
        if self.trials < 1:
            raise UsageError(f"--trials must be >= 1, got {self.trials}")
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        if not (math.isfinite(self.gpus_per_trial) and self.gpus_per_trial >= 0):
            raise UsageError(f"--gpus-per-trial must be a finite number >= 0, got {self.gpus_per_trial}")
        if self.cpus_per_worker is not None and self.cpus_per_worker < 1:
            raise UsageError(f"--cpus-per-worker must be >= 1, got {self.cpus_per_worker}")
        if not 0 <= self.seed < 2**32:  # what every sampler's (numpy's) random state accepts
            raise UsageError(f"--seed must be in [0, 2**32), got {self.seed}")
        for flag, limit in (("max_failures", self.max_failures), ("max_rejections", self.max_rejections)):
            if limit is not None and limit < 0:
                raise UsageError(f"{flag} must be >= 0, got {limit}")
        if self.time_s is not None:
            check_time_s(self.time_s)
        if self.time_grace_s is not None and not self.time_grace_s >= 0:
            raise UsageError(f"the grace period after --time must be >= 0 s, got {self.time_grace_s}")
        if self.address is not None and not self.address.strip():
            raise UsageError("--address must be HOST:PORT, got an empty string")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise UnknownNameError("sampler", self.sampler, SAMPLERS)
        if not self.objectives:
            raise UsageError("at least one objective is needed")
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise UnknownNameError("objective", o, list(OBJECTIVES))
        if len(set(self.objectives)) != len(self.objectives):
            raise UsageError(f"objectives must be distinct, got {','.join(self.objectives)}")
        if self.runner not in RUNNERS:
            raise UsageError(f"runner must be ray or inline, got {self.runner!r}")
        if self.gpus_per_trial and self.eval.device in ("auto", "cpu"):
            # A GPU task evaluates on its GPU: that is what the GPUs were asked for.
            object.__setattr__(self, "eval", dataclasses.replace(self.eval, device="cuda"))
        if self.latency not in LATENCY_MODES:
            raise UsageError(f"--latency must be one of {', '.join(LATENCY_MODES)}, got {self.latency!r}")
        if self.latency != "measure":  # predicted: timed only where the gate asks (near a latency budget)
            object.__setattr__(self, "eval", dataclasses.replace(self.eval, latency=False))
        self.eval.check()
        # "auto" resolved here, on the driver: the study stores, keys and sends its workers what it means
        object.__setattr__(self, "eval", self.eval.resolved())
        self.fidelity.check()
        if self.screen is not None:
            if self.screen not in SCREENS:
                raise UnknownNameError("screen", self.screen, SCREENS)
            if self.eval.proxy != "train":
                raise UsageError(f"--screen {self.screen} screens for the stand-alone training proxy; a zero-cost "
                                 f"score (--proxy {self.eval.proxy}) trains nothing to screen for: drop one of them")
            if self.screen_count < 1:
                raise UsageError(f"--screen-count must be >= 1, got {self.screen_count}")
            if self.supernet_steps is not None and self.supernet_steps < 1:
                raise UsageError(f"--supernet-steps must be >= 1, got {self.supernet_steps}")
        if self.fidelity.tracked and self.eval.proxy != "train":
            raise UsageError(f"--rungs and --repeats need the training proxy: a zero-cost score ({self.eval.proxy}) "
                             "has no fidelity to raise and gives the same value for every seed")

    @property
    def fidelity(self) -> Fidelity:
        return Fidelity(self.rungs, self.eta, self.repeats)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o][1] for o in self.objectives]


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Raise unless something listens at a Ray ``HOST:PORT`` (or ``ray://HOST:PORT``) address:
    checked before the study is written, where Ray's own connect comes only with the runner.
    Other forms (``auto``, ``local``) are left to Ray."""
    rest = address.strip().removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise NasconvError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}; start one with "
                           "`ray start --head` there, or drop --address for a local one") from None


@dataclass
class SearchResult:
    study_name: str
    storage: str
    evaluated: int
    failed: int
    rejected: int
    cached: int
    front: list[dict[str, Any]]
    hypervolume: float
    baseline: dict[str, Any] | None
    interrupted: bool = False
    #: per noisy objective, what the intervals resolve (:func:`nasconv.results.resolution`)
    noise: dict[str, Any] = field(default_factory=dict)
    #: the rung the front was built at, of how many; promotions made; candidates per highest rung
    rung: int = 0
    rungs: int = 1
    promoted: int = 0
    per_rung: dict[int, int] = field(default_factory=dict)
    #: predict+remeasure: front members re-measured, and those the measurement put over budget
    #: (left off the front)
    remeasured: int = 0
    remeasured_over_budget: int = 0
    #: what was read (:meth:`nasconv.data.task.TaskSummary.to_dict`; None where the data was not
    #: read on the driver) and the one-line notes said about it (test split, proxy too short...)
    data: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: ``--time``: the run stopped at its deadline (the study may hold fewer than --trials), its
    #: budget in seconds, and the in-flight trials failed and queued again when the grace ran out
    stopped_on_time: bool = False
    time_s: float | None = None
    requeued: int = 0
    #: ``--screen oneshot``: the screening study, candidates screened, promoted, the supernet's state
    #: (:meth:`nasconv.search.screen.Screening.summary`); None without screening
    screen: dict[str, Any] | None = None
