"""Errors raised by nasconv.

Every error a user can cause derives from :class:`NasconvError`; the CLI prints its
message on one line and exits with :attr:`NasconvError.exit_code`.
"""

from __future__ import annotations

import signal


class NasconvError(Exception):
    """Base of every nasconv error. The CLI exits with ``exit_code`` (1)."""

    exit_code = 1


class UsageError(NasconvError, ValueError):
    """A malformed command-line value (budget, shape, flag combination). Exit code 2."""

    exit_code = 2


class UnknownNameError(NasconvError, ValueError):
    """A name (operator, space, sampler, proxy...) that nasconv does not know."""

    exit_code = 2

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.known = list(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")


class HyperparameterError(NasconvError, ValueError):
    """An operator hyperparameter that breaks the operator's rule for the given shape."""


class SpaceError(NasconvError, ValueError):
    """A search-space file or an architecture that does not fit its space."""


class BudgetError(NasconvError, ValueError):
    """A budget that cannot be met or a candidate that is over budget."""


class DataError(NasconvError):
    """Missing, unreadable or corrupt data."""


class DeviceError(NasconvError):
    """A device that is not available (e.g. ``cuda`` without a GPU)."""


class StorageError(NasconvError):
    """A study storage that cannot be opened or that holds something unexpected."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler, ``kill``, a closed terminal), stopping like Ctrl-C.

    A ``KeyboardInterrupt``, so that whatever cleans up after Ctrl-C cleans up after these too.
    The CLI exits with :attr:`exit_code` (128 + the signal number, as a shell reports a process
    the signal killed). ``note`` is what the stopped work leaves behind, for that one line.
    """

    def __init__(self, signum: int, note: str = "") -> None:
        self.signum = int(signum)
        self.note = note
        super().__init__(self.signame)

    @property
    def signame(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
