"""``nasconv dashboard``: optuna-dashboard over a study database."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from pathlib import Path
from typing import Any

from nasconv.errors import NasconvError, UsageError


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0..65535, got {text!r}")
    return port


def _check_bindable(host: str, port: int) -> None:
    """The server's own failure to bind comes after its start-up banner: checked first, in one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise NasconvError(f"cannot serve on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            s.bind(address)
        except OSError as exc:
            hint = "; choose another --port" if exc.errno == errno.EADDRINUSE else \
                " (ports below 1024 need root)" if exc.errno == errno.EACCES and port < 1024 else ""
            raise NasconvError(f"cannot serve on {host}:{port}: {exc.strerror or exc}{hint}") from None


def _writable(db: Path) -> bool:
    try:
        read_only_fs = bool(os.statvfs(db.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    return not read_only_fs and os.access(db, os.W_OK) and os.access(db.parent, os.W_OK)


def add_parser(sub: Any) -> None:
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser("dashboard", help="optuna-dashboard on the study database")
    q.add_argument("--storage", default=DEFAULT_STORAGE)
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--port", type=_port, default=8080)
    q.add_argument("--study", default=None, help="print the URL of this study's page")
    q.add_argument("--artifacts", default=None, metavar="DIR",
                   help="artifact store folder (where nasconv report attaches reports; default: artifacts/ "
                        "beside a SQLite database, else $NASCONV_ARTIFACTS_DIR or studies/artifacts)")


def run(args: argparse.Namespace) -> int:
    from nasconv.storage import open_storage, parse_url, safe_url
    from nasconv.storage.artifacts import artifact_store, artifacts_dir
    from nasconv.storage.database import sqlite_file

    # Read-only first: a mistyped path is reported instead of becoming a new empty database, and
    # a database on read-only media can be looked at. Where the file can be written, it is
    # opened for writing, so that the dashboard's notes and trial edits work.
    storage, tables = open_storage(args.storage, heartbeat=False, readonly=True)
    tables.dispose()
    db = sqlite_file(parse_url(args.storage))
    if db is not None and _writable(Path(db).expanduser()):
        storage, tables = open_storage(args.storage, heartbeat=False)
        tables.dispose()
    try:
        import optuna_dashboard
    except ImportError:
        raise NasconvError("optuna-dashboard is not installed; pip install optuna-dashboard") from None
    page = ""
    if args.study is not None:
        names = sorted(s.study_name for s in storage.get_all_studies())
        if args.study not in names:
            raise NasconvError(f"no study {args.study!r} in {safe_url(args.storage)}; studies there: "
                               f"{', '.join(names) or 'none'}")
        page = f"dashboard/studies/{storage.get_study_id_from_name(args.study)}"
    store = artifact_store(artifacts_dir(args.storage, args.artifacts))
    _check_bindable(args.host, args.port)
    print(f"optuna-dashboard on http://{args.host}:{args.port}/{page} for {safe_url(args.storage)}"
          + (f", artifacts in {artifacts_dir(args.storage, args.artifacts)}" if store is not None else "")
          + " (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port, artifact_store=store)
    except OSError as exc:
        raise NasconvError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except OverflowError as exc:
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {exc}") from None
    return 0
