"""Where evaluations run. The only module that imports Ray.

A runner takes ``(key, fn, arch_dict, config_dict)`` jobs and hands back finished ones as
``(key, result_dict | None, error_text | None)``. ``RayRunner`` runs them as Ray tasks (a local
instance by default, or a cluster via ``address``); system failures (a worker process killed,
OOM, a lost node) are retried by Ray, errors raised by the evaluation are not. ``InlineRunner``
runs them in-process, one at a time (tests, benchmarks, debugging). ``runner.actor(cls, *args)``
makes one object that many calls use (one-shot screening's loaded supernet), on a Ray worker or here.

A job's ``fn`` is handed in (``nasconv.evaluate.EvaluationJob`` in a search) and called as
``fn(arch_dict, config_dict)``: this module imports no evaluation code. May import: errors, Ray, torch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, Hashable

from nasconv.errors import NasconvError, Terminated

Job = tuple[Hashable, Callable[..., dict[str, Any]], dict[str, Any], dict[str, Any]]
Done = tuple[Hashable, "dict[str, Any] | None", "str | None"]


def run_job(fn: Callable[..., dict[str, Any]], arch_dict: dict[str, Any], config_dict: dict[str, Any],
            threads: int | None = None) -> dict[str, Any]:
    """What a worker runs: ``fn(arch_dict, config_dict)``, plain data in, plain data out (plus
    where it ran and how long it took)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    t0, started = time.perf_counter(), time.time()
    result = dict(fn(arch_dict, config_dict))
    result.setdefault("node", socket.gethostname())
    result["worker_pid"] = os.getpid()
    result["worker_wall_s"] = time.perf_counter() - t0
    result["worker_span"] = [started, time.time()]  # wall-clock seconds: when it ran, for timelines
    try:
        import ray

        if ray.is_initialized():
            result["ray_node_id"] = ray.get_runtime_context().get_node_id()
            result["node_ip"] = ray.util.get_node_ip_address()
            gpus = ray.get_gpu_ids()
            if gpus:  # the GPU(s) Ray assigned this task, as it set them in CUDA_VISIBLE_DEVICES
                result["gpu_ids"] = [str(g) for g in gpus]
    except Exception:  # not under Ray
        pass
    return result


def _error_text(exc: BaseException) -> str:
    """One line: the innermost exception type and message."""
    cause = getattr(exc, "cause", None) or exc
    msg = str(cause).strip().splitlines()
    # Ray wraps the worker's traceback into the message; keep its last line.
    lines = [ln for ln in msg if ln.strip()]
    text = lines[-1] if lines else ""
    return f"{type(cause).__name__}: {text}"[:500]


def _signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}


def _restore_signal_handlers(handlers: dict[int, Any]) -> None:
    for signum, handler in handlers.items():
        # None: a handler set outside Python; the default is the nearest Python can restore.
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


class InlineRunner:
    """Runs each job in the calling process when it is collected."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._queue: list[Job] = []
        self.capacity = 1
        self.description = "in-process"

    def submit(self, key: Hashable, fn: Callable[..., dict[str, Any]], arch_dict: dict, config_dict: dict) -> None:
        self._queue.append((key, fn, arch_dict, config_dict))

    def wait(self, timeout: float = 0.0) -> list[Done]:
        if not self._queue:
            return []
        # The job leaves the queue only once it is done: interrupted (Ctrl-C), it is still in
        # flight and cancel_all() reports it.
        key, fn, arch_dict, config_dict = self._queue[0]
        try:
            done = [(key, run_job(fn, arch_dict, config_dict, self.threads), None)]
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            done = [(key, None, _error_text(exc))]
        self._queue.pop(0)
        return done

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def cancel_all(self) -> list[Hashable]:
        keys = [j[0] for j in self._queue]
        self._queue.clear()
        return keys

    def actor(self, cls: type, *args: Any) -> "InProcessActor":
        """``cls(*args)`` made once in this process (as :meth:`RayRunner.actor` makes it on a worker)."""
        return InProcessActor(cls, args, self.threads)

    def shutdown(self) -> None:
        pass


class InProcessActor:
    """An object made once, whose methods :meth:`call` runs many times, here."""

    def __init__(self, cls: type, args: tuple[Any, ...], threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.obj: Any = cls(*args)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.obj, method)(*args)

    def close(self) -> None:
        self.obj = None


class RayActor:
    """An object made once on a Ray worker (a Ray actor holding its CPUs and GPUs), whose methods
    :meth:`call` runs there: what is expensive to make (a trained supernet) is made once, not per call."""

    def __init__(self, ray: Any, cls: type, args: tuple[Any, ...], num_cpus: int, num_gpus: float) -> None:
        self.ray = ray
        self.handle = ray.remote(cls).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0).remote(*args)

    def call(self, method: str, *args: Any) -> Any:
        try:
            return self.ray.get(getattr(self.handle, method).remote(*args))
        except self.ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, NasconvError):  # the one line the object raised, as in process
                raise cause from None
            raise NasconvError(f"the Ray actor failed: {_error_text(exc)}") from None

    def close(self) -> None:
        try:
            self.ray.kill(self.handle)
        except Exception:
            pass


#: Ray system setting (read from the environment when Ray starts): workers' niceness over the driver's
WORKER_NICENESS_ENV = "RAY_worker_niceness"


class RayRunner:
    """Evaluations as Ray tasks: ``workers`` at a time, each with ``cpus_per_worker`` CPUs.

    Without ``address`` a private local Ray instance is started (no dashboard, small object
    store) with ``workers * cpus_per_worker`` CPUs; with one, the driver joins that cluster.
    """

    def __init__(self, *, address: str | None = None, workers: int = 1, cpus_per_worker: int = 2,
                 gpus_per_trial: float = 0.0, max_retries: int = 2) -> None:
        try:
            import ray
        except ImportError:  # pragma: no cover - ray is a dependency
            raise NasconvError("Ray is not installed; pip install ray") from None
        self.ray = ray
        self.workers = max(1, workers)
        self.cpus_per_worker = max(1, cpus_per_worker)
        self.gpus_per_trial = gpus_per_trial
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        # The driver's modules must be importable by workers started from another directory.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray starts its workers at niceness 15 on top of the driver's: under `nice` (19 at most)
        # an evaluation then starved on a busy machine (23 s of CPU in 9.5 min). A worker runs
        # at the driver's niceness (the setting a local instance's raylet reads at start).
        os.environ.setdefault(WORKER_NICENESS_ENV, "0")
        handlers = _signal_handlers()
        try:
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="error",
                         ignore_reinit_error=True, configure_logging=True)
            else:
                ray.init(num_cpus=self.workers * self.cpus_per_worker,
                         num_gpus=None if gpus_per_trial else 0,
                         include_dashboard=False, object_store_memory=200 * 1024 * 1024,
                         log_to_driver=False, logging_level="error", ignore_reinit_error=True)
        except ConnectionError as exc:
            hint = ""
            if not os.environ.get("RAY_AUTH_MODE"):
                # Ray enables token authentication on a head that finds ~/.ray/auth_token, but a
                # driver given an explicit address only sends the token when told to.
                hint = ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token (and the head's "
                        "token in ~/.ray/auth_token or RAY_AUTH_TOKEN)")
            raise NasconvError(f"cannot reach a Ray cluster at {address}: {str(exc).splitlines()[0]}{hint}") from None
        except Exception as exc:
            where = f"at {address}" if address else "locally"
            raise NasconvError(f"cannot start Ray {where}: {type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
        except SystemExit as exc:
            # SIGTERM while ray.init runs meets the handler Ray sets for its duration, which
            # exits with the signal number: it is a SIGTERM like any other.
            self.shutdown()
            if exc.code == signal.SIGTERM:
                raise Terminated(signal.SIGTERM) from None
            raise
        except BaseException:  # Ctrl-C, SIGTERM, SIGHUP while Ray starts: stop what it started
            self.shutdown()
            raise
        finally:
            # ray.init sets SIGTERM handlers of its own (one that exits at once, and a crash
            # report with a native stack trace that then aborts): the caller's stay in force, and
            # a driver that stops calls shutdown(), which ends what Ray started.
            _restore_signal_handlers(handlers)
        if gpus_per_trial:
            total = ray.cluster_resources().get("GPU", 0)
            if total < gpus_per_trial:
                self.shutdown()
                raise NasconvError(f"--gpus-per-trial {gpus_per_trial}: the Ray cluster has {total:g} GPUs")
        self._remote = ray.remote(run_job).options(
            num_cpus=self.cpus_per_worker, num_gpus=gpus_per_trial, max_retries=max_retries,
            retry_exceptions=False)
        self._pending: dict[Any, Hashable] = {}
        self._shared: dict[Any, tuple[Any, Any]] = {}  # evaluator / settings -> (object, its ObjectRef)
        self.capacity = self.workers
        self.description = (f"Ray cluster at {address}" if address else "local Ray") + \
            f", {self.workers} worker(s) x {self.cpus_per_worker} CPU" + \
            (f" + {gpus_per_trial:g} GPU" if gpus_per_trial else "")

    def submit(self, key: Hashable, fn: Callable[..., dict[str, Any]], arch_dict: dict, config_dict: dict) -> None:
        user_fn = getattr(fn, "__wrapped__", fn)  # a job wrapping a user's evaluator
        mod = sys.modules.get(getattr(user_fn, "__module__", ""), None)
        if mod is not None and not user_fn.__module__.startswith("nasconv."):
            # A user's evaluator from a script or test module: ship it by value, since workers
            # may not be able to import that module.
            self.ray.cloudpickle.register_pickle_by_value(mod)
        # The evaluator and its settings are the same for every job of a search: put them in
        # the object store once instead of serialising them into every task.
        fn_ref = self._shared.get(id(fn))
        if fn_ref is None or fn_ref[0] is not fn:
            fn_ref = self._shared[id(fn)] = (fn, self.ray.put(fn))
        cfg_key = json.dumps(config_dict, sort_keys=True, default=str)
        cfg_ref = self._shared.get(cfg_key)
        if cfg_ref is None:
            cfg_ref = self._shared[cfg_key] = (config_dict, self.ray.put(config_dict))
        ref = self._remote.remote(fn_ref[1], arch_dict, cfg_ref[1], self.cpus_per_worker)
        self._pending[ref] = key

    def wait(self, timeout: float = 0.5) -> list[Done]:
        if not self._pending:
            return []
        ready, _ = self.ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        if ready:  # collect everything else that is done too, without waiting
            more, _ = self.ray.wait([r for r in self._pending if r not in ready],
                                    num_returns=len(self._pending) - len(ready), timeout=0)
            ready = ready + more
        out: list[Done] = []
        for ref in ready:
            key = self._pending.pop(ref)
            try:
                out.append((key, self.ray.get(ref), None))
            except self.ray.exceptions.RayTaskError as exc:
                out.append((key, None, _error_text(exc)))
            except self.ray.exceptions.RayError as exc:  # worker crash, OOM, node died after retries
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out.append((key, None, f"{type(exc).__name__}: {first}"[:500]))
        return out

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def cancel_all(self) -> list[Hashable]:
        keys = list(self._pending.values())
        for ref in list(self._pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        self._pending.clear()
        return keys

    def actor(self, cls: type, *args: Any) -> RayActor:
        """``cls(*args)`` made once on a worker with one evaluation's CPUs and GPUs."""
        return RayActor(self.ray, cls, args, self.cpus_per_worker, self.gpus_per_trial)

    def shutdown(self) -> None:
        try:
            self.ray.shutdown()
        except Exception:
            pass
