"""The ``nasconv`` command line: a thin layer over the library API.

One module per command (:data:`TABLE`), each with ``add_parser(sub)`` and ``run(args) -> int``;
``_common`` holds what several share. Commands map flags to library calls and print the
results; the rules themselves live in the library.

Errors a user can cause end in one line on stderr and a non-zero exit: 2 for usage errors
(unknown names, malformed values), 1 for the rest, 130 for Ctrl-C, 143 for SIGTERM and 129 for
SIGHUP (128 + the signal number; both stop as Ctrl-C does).

May import: any nasconv package (heavy ones inside ``run()``, so that ``nasconv --help`` starts
fast). The command modules load inside :func:`main`, so that a Ctrl-C while torch loads ends
in the same one line as any other. Nothing in the library imports the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any, Sequence

from nasconv._version import __version__
from nasconv.cli._common import BUDGET_HELP, Parser, results_only_on_stdout
from nasconv.errors import NasconvError, Terminated

#: the commands, in the order ``nasconv --help`` lists them (module ``nasconv.cli.<name>`` each)
COMMANDS = ("ops", "space", "cost", "sample", "evaluate", "search", "pareto", "report", "dashboard", "export",
            "latency", "doctor", "supernet")

if TYPE_CHECKING:  # at run time TABLE loads on first use (module __getattr__)
    TABLE: dict[str, ModuleType]


def _table() -> dict[str, ModuleType]:
    """Command -> its module. Some import torch at their top: loaded here, inside main()."""
    table = globals().get("TABLE")
    if table is None:
        table = globals()["TABLE"] = {name: importlib.import_module(f"nasconv.cli.{name}") for name in COMMANDS}
    return table


def __getattr__(name: str) -> Any:
    if name == "TABLE":
        return _table()
    raise AttributeError(f"module 'nasconv.cli' has no attribute {name!r}")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="nasconv", description="Neural architecture search over efficient convolution operators.",
               epilog=f"Budgets: {BUDGET_HELP}.")
    p.add_argument("--version", action="version", version=f"nasconv {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in _table().values():
        module.add_parser(sub)
    return p


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def _stop_on_signals() -> dict[int, Any]:
    """SIGTERM and SIGHUP raise Terminated, as SIGINT raises KeyboardInterrupt, unless ignored
    (``nohup``); returns the handlers to restore. A search refines this (deferred while a trial
    is told)."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            current = signal.getsignal(signum)
            if current is not signal.SIG_IGN:
                previous[signum] = signal.SIG_DFL if current is None else current
                signal.signal(signum, _raise_terminated)
    return previous


#: what str.splitlines() breaks a line at: in a message (a user's file name, say) each is shown
#: escaped, so that an error stays one line whatever the input held
_LINE_BREAKS = {c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def _one_line(text: str) -> str:
    return text.strip().translate(str.maketrans(_LINE_BREAKS))


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--budget -1gflops`` -> ``--budget=-1gflops``, so the value is validated (and refused
    with the accepted forms) instead of argparse taking it for an unknown option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in ("--budget", "--trials", "--workers", "--seed", "--epochs", "--lr", "--time") \
                and len(arg) > 1 and arg[0] == "-" and (arg[1].isdigit() or arg[1] == "."):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


#: commands that run for long and load torch
_HEAVY = {"search", "evaluate"}


def _holding_signals(fn: Any) -> Any:
    """``fn()`` with SIGINT, SIGTERM and SIGHUP held back, then honoured: an interrupt that lands
    inside numpy's or torch's C initialisation (parsing the arguments imports them) left a
    half-imported module behind, and the next import failed with an internal error."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    got: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {s: signal.getsignal(s) for s in held}
    for s in held:
        if before[s] is not signal.SIG_IGN:
            signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        out = fn()
    finally:
        for s, h in before.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)
    if got:
        if got[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(got[0])
    return out


def _parse(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(_join_negative_values(argv))
    if args.command in _HEAVY:
        for m in ("numpy", "torch"):
            importlib.import_module(m)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    previous = _stop_on_signals()
    try:
        args = _holding_signals(lambda: _parse(list(sys.argv[1:] if argv is None else argv)))
        if getattr(args, "json", False):
            with results_only_on_stdout():
                return int(_table()[args.command].run(args) or 0)
        return int(_table()[args.command].run(args) or 0)
    except NasconvError as exc:
        print(f"nasconv: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Terminated as exc:
        print(f"nasconv: interrupted by {exc.signame}" + (f": {_one_line(exc.note)}" if exc.note else ""),
              file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nasconv: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # never a traceback for users; NASCONV_DEBUG=1 shows it
        if os.environ.get("NASCONV_DEBUG"):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"nasconv: internal error: {type(exc).__name__}: {msg} (NASCONV_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


__all__ = ["COMMANDS", "TABLE", "build_parser", "main"]
