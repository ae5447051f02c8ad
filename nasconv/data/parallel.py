"""Running a function over chunks of files in worker processes, with a progress bar.

Workers are started with ``spawn``: the caller may be running torch threads or be a Ray worker,
and a forked copy of such a process can deadlock. They import only numpy and Pillow (the
functions they run live in :mod:`nasconv.data.decode`), and not the caller's main script, which
``spawn`` would otherwise run again in every worker (a script without an
``if __name__ == "__main__"`` guard would start over; ``python - < script`` cannot start
workers at all). Few files are read in this process instead, since starting workers costs more
than it saves.

The progress bar (tqdm, on stderr) shows only when stderr is a terminal and there are at least
:data:`PROGRESS_MIN_ITEMS` files: a log file or a test gets no bar, a small folder no flicker.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm import tqdm

from nasconv.errors import DataError, UsageError

WORKERS_ENV = "NASCONV_DECODE_WORKERS"
#: fewer files than this are read in the calling process: starting workers (a fresh interpreter
#: each, with numpy and Pillow) costs about what 2 cores save on a few thousand small images
PARALLEL_MIN_ITEMS = 4000
#: fewer files than this get no progress bar
PROGRESS_MIN_ITEMS = 2000
_CHUNKS_PER_WORKER = 8  # enough that a slow chunk does not leave the other workers idle at the end
_MAX_CHUNK = 1000

T = TypeVar("T")


def worker_count() -> int:
    """``$NASCONV_DECODE_WORKERS``, else the cores this process may run on."""
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise UsageError(f"{WORKERS_ENV} must be a positive integer, got {env!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def chunked(n: int, workers: int) -> list[range]:
    """``range(n)`` cut into chunks, several per worker (at most :data:`_MAX_CHUNK` files)."""
    size = max(1, min(_MAX_CHUNK, -(-n // (max(1, workers) * _CHUNKS_PER_WORKER))))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


class Workers:
    """Worker processes for one job's passes over its files (``with Workers(n) as w: w.map(...)``).

    Starts them on first use, only when ``n_items`` (the files of the whole job) is at least
    :data:`PARALLEL_MIN_ITEMS` and there is more than one worker; else every task runs here.
    """

    def __init__(self, n_items: int, workers: int | None = None) -> None:
        self.workers = worker_count() if workers is None else workers
        self.parallel = (self.workers > 1 and n_items >= PARALLEL_MIN_ITEMS
                         and not multiprocessing.current_process().daemon)  # a daemon may not have children
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def chunks(self, n: int) -> list[range]:
        """``range(n)`` cut into chunks, several per worker."""
        return chunked(n, self.workers if self.parallel else 1)

    def map(self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]], sizes: Sequence[int], *,
            desc: str) -> list[T]:
        """``[fn(*task) for task in tasks]``; ``sizes[i]`` is how many files task ``i`` reads (for
        the progress bar)."""
        total = sum(sizes)
        bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False, dynamic_ncols=True,
                   disable=total < PROGRESS_MIN_ITEMS or not sys.stderr.isatty())
        with bar:
            if not self.parallel or len(tasks) <= 1:
                results = []
                for task, n in zip(tasks, sizes):
                    results.append(fn(*task))
                    bar.update(n)
                return results
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                                 mp_context=multiprocessing.get_context("spawn"))
            out: list[Any] = [None] * len(tasks)
            futures = {}
            try:
                with _main_hidden():  # the pool starts its workers inside submit()
                    for i, task in enumerate(tasks):
                        futures[self._pool.submit(fn, *task)] = i
                for fut in as_completed(futures):
                    i = futures[fut]
                    out[i] = fut.result()
                    bar.update(sizes[i])
            except DataError as exc:
                raise DataError(str(exc)) from None  # without the worker's traceback
            except BrokenProcessPool:
                raise DataError(f"a worker process died while {desc} (out of memory?); "
                                f"{WORKERS_ENV}=1 reads the files in this process instead") from None
            finally:
                for fut in futures:
                    fut.cancel()
            return out


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Hide the main module's file and spec from ``spawn`` while workers start.

    ``spawn`` tells a new worker to import the parent's main script (by its ``__file__`` or
    ``__spec__``) so that functions defined there can be unpickled; the workers here run
    functions of :mod:`nasconv.data.decode` only, and need none of it.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: vars(main)[k] for k in ("__file__", "__spec__") if k in vars(main)}
    try:
        vars(main).pop("__file__", None)
        main.__spec__ = None
        yield
    finally:
        vars(main).pop("__spec__", None)
        vars(main).update(saved)
