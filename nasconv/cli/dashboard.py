"""``nasconv dashboard``: optuna-dashboard over a study database."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from nasconv.cli._common import int_in, study_name
from nasconv.errors import NasconvError, Terminated, UsageError
from nasconv.outputs import check_folder_arg


def _bind(host: str, port: int, app: Any) -> Any:
    """The dashboard's WSGI server (the standard library's, as optuna-dashboard's own ``run_server``),
    bound and listening before anything is printed: a failure to bind is one line, and the port
    that ``--port 0`` got is known for the banner."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise NasconvError(f"cannot serve on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None

    class Server(WSGIServer):
        address_family = infos[0][0]  # an IPv6 host too

    try:
        server = Server(infos[0][4][:2], WSGIRequestHandler)  # binds with SO_REUSEADDR, listens
    except OSError as exc:
        hint = "; choose another --port" if exc.errno == errno.EADDRINUSE else \
            " (ports below 1024 need root)" if exc.errno == errno.EACCES and port < 1024 else ""
        raise NasconvError(f"cannot serve on {host}:{port}: {exc.strerror or exc}{hint}") from None
    except OverflowError as exc:
        raise UsageError(f"cannot serve on {host}:{port}: {exc}") from None
    server.set_app(app)
    return server


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
    q.add_argument("--port", type=int_in(0, 65535), default=8080, help="TCP port, 0..65535 (default 8080)")
    q.add_argument("--study", type=study_name, default=None, help="print the URL of this study's page")
    q.add_argument("--artifacts", default=None, metavar="DIR",
                   help="artifact store folder (where nasconv report attaches reports; default: artifacts/ "
                        "beside a SQLite database, else $NASCONV_ARTIFACTS_DIR or studies/artifacts)")


def run(args: argparse.Namespace) -> int:
    from nasconv.storage import open_storage, parse_url, safe_url
    from nasconv.storage.artifacts import artifact_store, artifacts_dir
    from nasconv.storage.database import sqlite_file

    check_folder_arg("--artifacts", args.artifacts)  # a folder (or none yet): a file there is a usage error
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
    server = _bind(args.host, args.port, optuna_dashboard.wsgi(storage, artifact_store=store))
    try:
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"optuna-dashboard on http://{host}:{server.server_address[1]}/{page} for {safe_url(args.storage)}"
              + (f", artifacts in {artifacts_dir(args.storage, args.artifacts)}" if store is not None else "")
              + " (Ctrl-C stops)", file=sys.stderr, flush=True)
        stopped_by = _serve(server)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            raise  # SIGTERM, SIGHUP: said as for every command (exit 128 + the signal)
        return 0  # Ctrl-C: stopped as asked
    finally:
        server.server_close()
    if stopped_by not in (None, signal.SIGINT):
        raise Terminated(stopped_by)
    return 0


def _serve(server: Any) -> int | None:
    """Serve until Ctrl-C, SIGTERM or SIGHUP; returns the signal. The signals only set a flag
    while the server runs: raised in the middle of a request, their exception would be taken
    for the request's error (wsgiref answers 500 and serves on)."""
    if threading.current_thread() is not threading.main_thread():  # signals are the main thread's
        server.serve_forever()
        return None
    got: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        current = signal.getsignal(signum)
        if current is not signal.SIG_IGN:  # nohup, a background job: stays ignored
            previous[signum] = signal.SIG_DFL if current is None else current
            signal.signal(signum, lambda n, frame: got.append(n))
    server.timeout = 0.5  # how soon a signal is seen between requests
    try:
        while not got:
            server.handle_request()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return got[0]
