"""Several drivers, and drivers that die: who holds which trial, heartbeats, recovering orphaned
trials, and Ctrl-C (SIGTERM, SIGHUP) deferred while a trial is being told."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import threading
from typing import Any

import optuna
from optuna.trial import TrialState

import nasconv._optuna as _optuna
from nasconv.errors import Terminated
from nasconv.outputs import pid_alive
from nasconv.storage import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S

#: tokens of the drivers running in this process (a notebook may run several in turn)
_LIVE_DRIVERS: set[str] = set()


def new_driver_id() -> str:
    """``host:pid:token``; the token tells a live driver of this process from one that ended."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def driver_dead(driver: str) -> bool:
    """Whether a driver of this host is known to be gone (never True for another host's)."""
    host, _, rest = driver.partition(":")
    pid, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return token not in _LIVE_DRIVERS
    return not pid_alive(int(pid))


class Heartbeat(threading.Thread):
    """Records Optuna heartbeats for this driver's running trials, so that a driver that dies
    leaves trials another driver can fail after the grace period."""

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        super().__init__(daemon=True, name="nasconv-heartbeat")
        self.storage = storage
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def add(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.add(trial_id)
        try:
            self.storage.record_heartbeat(trial_id)
        except Exception:
            pass

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_INTERVAL_S / 2):
            with self.lock:
                ids = list(self.trial_ids)
            for tid in ids:
                try:
                    self.storage.record_heartbeat(tid)
                except Exception:
                    pass


#: the signals that stop a search as Ctrl-C does: a scheduler's or `kill`'s, a closed terminal's
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """What a stop signal raises: KeyboardInterrupt for SIGINT (as Python's own), else Terminated."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


class DeferredInterrupt:
    """Ctrl-C (and SIGTERM, SIGHUP) between storage writes, never in the middle of a group of them.

    Inside ``critical()`` a first stop signal is held until the block ends (a second one
    interrupts at once), so that a trial is never left half-told; elsewhere, e.g. during an
    evaluation running in this process, it raises at once: KeyboardInterrupt for SIGINT,
    :class:`~nasconv.errors.Terminated` for the others. A signal that was ignored when the
    search started (``nohup``, a background job) stays ignored.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None  # the signal held until the critical block ends
        self.received: int | None = None  # the last one raised
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            if current is signal.SIG_IGN:
                continue
            # None: a handler set outside Python (Ray's crash reporter): SIG_DFL is restored.
            self.previous[signum] = signal.SIG_DFL if current is None else current
            signal.signal(signum, self._handler)

    def uninstall(self) -> None:
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        self.previous = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.depth and self.pending is None:
            self.pending = signum
            return
        self.received = signum
        raise interrupt_for(signum)

    def identify(self, exc: BaseException) -> BaseException:
        """The interrupt as raised: Ray turns one raised while it waits into a bare
        KeyboardInterrupt, which would read as Ctrl-C."""
        received = self.received
        if type(exc) is KeyboardInterrupt and received is not None and received != signal.SIGINT:
            return Terminated(received)
        return exc

    @contextlib.contextmanager
    def critical(self):  # type: ignore[no-untyped-def]
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending is not None:
            signum, self.pending = self.pending, None
            self.received = signum
            raise interrupt_for(signum)


def trial_finished(storage: optuna.storages.BaseStorage, trial: optuna.trial.Trial) -> bool:
    """Whether a trial this driver holds was finished by someone else (another driver that
    took this one for dead failed it and queued its parameters again)."""
    try:
        return storage.get_trial(_optuna.trial_id(trial)).state.is_finished()
    except Exception:
        return False


def mark_live(driver_id: str) -> None:
    _LIVE_DRIVERS.add(driver_id.rpartition(":")[2])


def mark_gone(driver_id: str) -> None:
    _LIVE_DRIVERS.discard(driver_id.rpartition(":")[2])


def recover(study: optuna.Study, storage: optuna.storages.BaseStorage) -> int:
    """Fail the RUNNING trials of drivers that died and queue their parameters again.

    Dead means: on this host, the driver's process is gone (known at once); anywhere, no
    heartbeat for GRACE_PERIOD_S; or a trial its driver never marked (it died right after
    asking) that is older than that. Each trial is failed once, with its reason, and queued
    once, even with several drivers recovering at the same time.
    """
    now = dt.datetime.now()
    try:
        stale = _optuna.stale_trial_ids(storage, study)
    except Exception:  # pragma: no cover - a storage without Optuna's heartbeat internals
        stale = set()
    recovered = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        driver = str(t.user_attrs.get("driver", ""))
        if driver_dead(driver):
            reason = f"its driver ({driver}) died"
        elif _optuna.trial_id(t) in stale:
            reason = f"its driver ({driver or 'unknown'}) sent no heartbeat for over {GRACE_PERIOD_S} s"
        elif not driver and t.datetime_start and (now - t.datetime_start).total_seconds() > GRACE_PERIOD_S:
            reason = "its driver died before marking it"
        else:
            continue
        if fail_and_requeue(study, storage, t, reason):
            recovered += 1
    return recovered


def fail_and_requeue(study: optuna.Study, storage: optuna.storages.BaseStorage, t: optuna.trial.FrozenTrial,
                     reason: str) -> bool:
    try:
        storage.set_trial_user_attr(_optuna.trial_id(t), "fail_reason", reason)
        # Row-locked check-and-set: of several drivers recovering this trial, one succeeds.
        ok = storage.set_trial_state_values(_optuna.trial_id(t), state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    if ok and t.params:
        study.enqueue_trial(t.params, skip_if_exists=False, user_attrs=carried_attrs(t.user_attrs))
    return ok


#: what a trial queued again keeps of the failed one: where it came from (one-shot screening,
#: :mod:`nasconv.search.screen`)
CARRIED_ATTRS = ("oneshot_accuracy", "oneshot_accuracy_ci", "screen_trial")


def carried_attrs(user_attrs: dict[str, Any]) -> dict[str, Any] | None:
    kept = {k: user_attrs[k] for k in CARRIED_ATTRS if k in user_attrs}
    return kept or None
