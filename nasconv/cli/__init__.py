"""The ``nasconv`` command line: a thin layer over the library API.

One module per command (:data:`TABLE`), each with ``add_parser(sub)`` and ``run(args) -> int``;
``_common`` holds what several share. Commands map flags to library calls and print the
results; the rules themselves live in the library.

Errors a user can cause end in one line on stderr and a non-zero exit: 2 for usage errors
(unknown names, malformed values), 1 for the rest, 130 for Ctrl-C.

May import: any nasconv package (heavy ones inside ``run()``, so that ``nasconv --help`` starts
fast). Nothing in the library imports the CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType
from typing import Sequence

from nasconv._version import __version__
from nasconv.cli import cost, dashboard, evaluate, export, ops, pareto, sample, search, space
from nasconv.cli._common import BUDGET_HELP, Parser
from nasconv.errors import NasconvError

#: command -> its module, in the order ``nasconv --help`` lists them
TABLE: dict[str, ModuleType] = {
    "ops": ops, "space": space, "cost": cost, "sample": sample, "evaluate": evaluate, "search": search,
    "pareto": pareto, "dashboard": dashboard, "export": export,
}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="nasconv", description="Neural architecture search over efficient convolution operators.",
               epilog=f"Budgets: {BUDGET_HELP}.")
    p.add_argument("--version", action="version", version=f"nasconv {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in TABLE.values():
        module.add_parser(sub)
    return p


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--budget -1gflops`` -> ``--budget=-1gflops``, so the value is validated (and refused
    with the accepted forms) instead of argparse taking it for an unknown option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in ("--budget", "--trials", "--workers", "--seed", "--epochs", "--lr") \
                and len(arg) > 1 and arg[0] == "-" and (arg[1].isdigit() or arg[1] == "."):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
        return int(TABLE[args.command].run(args) or 0)
    except NasconvError as exc:
        print(f"nasconv: error: {exc}", file=sys.stderr)
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


__all__ = ["TABLE", "build_parser", "main"]
