"""``nasconv report``: which convolution where, as one self-contained HTML file (and JSON)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from nasconv.cli._common import open_nasconv_study, print_json, study_name
from nasconv.errors import NasconvError, UsageError
from nasconv.outputs import check_folder_arg, check_output_file
from nasconv.paths import file_stem


def add_parser(sub: Any) -> None:
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser("report", help="the study report: which convolution where, with evidence (HTML, JSON)")
    q.add_argument("--study", type=study_name, required=True)
    q.add_argument("--storage", default=DEFAULT_STORAGE)
    q.add_argument("--out", default=None, metavar="REPORT.html",
                   help="write the HTML report here (plots embedded; no network needed to view it)")
    q.add_argument("--json", action="store_true", help="print the report's content as JSON")
    q.add_argument("--force", action="store_true",
                   help="overwrite an existing report file (a symbolic link there is replaced itself, its target "
                        "untouched; a folder, FIFO, socket or device never)")
    q.add_argument("--artifacts", default=None, metavar="DIR",
                   help="Optuna artifact store folder the report and front plot are attached to (default: "
                        "artifacts/ beside a SQLite database, else $NASCONV_ARTIFACTS_DIR or studies/artifacts)")
    q.add_argument("--no-attach", action="store_true", help="do not attach the report to the study")
    q.add_argument("--class-recall", action="store_true",
                   help="also print each front member's recall per class (held-out images predicted right, per "
                        "class; in the JSON as class_recall)")


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.json and not args.class_recall:
        raise UsageError("nothing to do: give --out REPORT.html, --json and/or --class-recall")
    out = Path(args.out).expanduser() if args.out else None
    if out is not None:  # refused before anything is read (nasconv.outputs: what may be replaced)
        check_output_file(out, force=args.force, what="the report")
        if not args.no_attach:
            check_folder_arg("--artifacts", args.artifacts)
    from nasconv.results.html import render_html, svg_of
    from nasconv.results.plot import front_figure, save_figure, write_whole
    from nasconv.results.report import build_report
    from nasconv.storage import safe_url

    study, tables = open_nasconv_study(args.study, args.storage)
    try:
        report = build_report(study, tables, storage=safe_url(args.storage))
        rows = tables.rung_results(study.study_name)
    finally:
        tables.dispose()
    if out is not None:
        page = render_html(report, svg_of(front_figure(study, rows)))
        write_whole(out, page.encode(), "the report", force=args.force)
        print(f"report written to {out}", file=sys.stderr)
        if not args.no_attach:
            _attach(args, out, lambda path: save_figure(front_figure(study, rows), path))
    if args.class_recall:
        from nasconv.cli._task import class_recall_table

        report["class_recall"], table = class_recall_table(study, rows)
        print(table, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json(report)
    return 0


def _attach(args: argparse.Namespace, report_path: Path, write_plot: Any) -> None:
    """The report and the front plot as artifacts of the study (for optuna-dashboard); a database
    that cannot be written is a note, not a failure: the report is written."""
    from nasconv.results.notes import refresh_notes
    from nasconv.storage import open_study
    from nasconv.storage.artifacts import artifacts_dir, attach

    folder = artifacts_dir(args.storage, args.artifacts)
    try:
        study, tables = open_study(args.study, args.storage, readonly=False)
        try:
            refresh_notes(study, tables.rung_results(study.study_name))
        finally:
            tables.dispose()
        with tempfile.TemporaryDirectory() as tmp:
            plot = Path(tmp) / f"front-{file_stem(study.study_name)}.png"  # a name may hold "/"
            write_plot(str(plot))
            attach(study, folder, [(str(report_path), "text/html"), (str(plot), "image/png")])
    except NasconvError as exc:
        print(f"note: the report is not attached to the study: {exc}", file=sys.stderr)
        return
    print(f"attached to study {args.study} in {folder} (nasconv dashboard --artifacts {folder})", file=sys.stderr)
