"""``nasconv dashboard``: optuna-dashboard over a study database."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nasconv.errors import NasconvError


def add_parser(sub: Any) -> None:
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser("dashboard", help="optuna-dashboard on the study database")
    q.add_argument("--storage", default=DEFAULT_STORAGE)
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--port", type=int, default=8080)


def run(args: argparse.Namespace) -> int:
    from nasconv.storage import open_storage, safe_url

    storage, tables = open_storage(args.storage, heartbeat=False)
    tables.dispose()
    try:
        import optuna_dashboard
    except ImportError:
        raise NasconvError("optuna-dashboard is not installed; pip install optuna-dashboard") from None
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {safe_url(args.storage)} (Ctrl-C stops)",
          file=sys.stderr)
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    except OSError as exc:
        raise NasconvError(f"cannot serve on {args.host}:{args.port}: {exc.strerror}") from None
    return 0
