"""The class count an architecture is costed and built with, from ``--num-classes`` or ``--data``
(``sample``, ``cost``) or the data an evaluation reads (``evaluate``): the head is not a search
choice, so an architecture file of any class count belongs to its space."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from nasconv.cli._common import int_in
from nasconv.errors import UsageError

MAX_CLASSES_FLAG = 10_000_000


def add_task_args(q: argparse.ArgumentParser) -> None:
    q.add_argument("--num-classes", type=int_in(1, MAX_CLASSES_FLAG), default=None, metavar="N",
                   help="classes of the network's head (default: --data's, else the space's)")
    q.add_argument("--data", default=None, metavar="SPEC",
                   help="take the class count from this dataset (as search's --data: cifar100, imagefolder:DIR...)")
    q.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)


def task_classes(args: argparse.Namespace) -> int | None:
    """``--num-classes``, or ``--data``'s class count (both given: they must agree), else None."""
    n = args.num_classes
    if args.data is None:
        return n
    from nasconv.data import load_dataset

    ds = load_dataset(args.data, data_dir=args.data_dir)
    check_classes(n, ds.num_classes, args.data)
    return ds.num_classes


def check_classes(asked: int | None, data_classes: int, data: str) -> None:
    if asked is not None and asked != data_classes:
        raise UsageError(f"--num-classes {asked} contradicts the data: {data} has {data_classes} classes")


def with_classes(space: Any, num_classes: int | None) -> Any:
    """``space`` whose architectures have a ``num_classes``-way head (unchanged for None)."""
    if num_classes is None or num_classes == space.num_classes:
        return space
    return replace(space, num_classes=num_classes)


def load_task_arch(space: Any, arg: str, num_classes: int | None) -> tuple[Any, str | None]:
    """``baseline`` or an architecture file, checked against ``space`` whatever its head, with a
    ``num_classes``-way head when given; and a note when a file's head was replaced."""
    from nasconv.arch import MAX_JSON_CHARS, ArchSpec
    from nasconv.spaces.files import read_text_file

    if arg == "baseline":
        return with_classes(space, num_classes).baseline(), None
    arch = ArchSpec.from_json(read_text_file(arg, "architecture file", MAX_JSON_CHARS))
    with_classes(space, arch.num_classes).check_arch(arch)
    if num_classes is None or num_classes == arch.num_classes:
        return arch, None
    note = f"note: {arg} has a {arch.num_classes}-class head; costed and built with {num_classes} classes"
    return replace(arch, num_classes=num_classes), note


def class_recall_table(study: Any, rungs: Any) -> tuple[list[dict[str, Any]], str]:
    """Per-class recall of the study's front members: rows for the JSON, and a table (classes as
    rows, one column per member) with each recall's binomial SE."""
    import math

    from nasconv._table import render_table
    from nasconv.results import study_front

    front = study_front(study, rungs)
    names = list((study.user_attrs.get("data") or {}).get("classes") or [])
    rows, cols = [], []
    for t in sorted(front, key=lambda t: t.number):
        recall, images = t.user_attrs.get("class_recall"), t.user_attrs.get("class_images")
        if not recall or not images:
            continue
        rows.append({"trial": t.number, "class_recall": recall, "class_images": images})
        cols.append((t.number, recall, images))
    if not cols:
        return rows, ("no front member has per-class recall (evaluated before it was recorded, or by a zero-cost "
                      "proxy)")
    k = len(cols[0][1])
    names = names if len(names) == k else [str(i) for i in range(k)]
    body = []
    for i in range(k):
        cells = []
        for _, recall, images in cols:
            r, n = recall[i], images[i]
            cells.append("-" if r is None or not n else f"{r:.3f} +- {math.sqrt(r * (1 - r) / n):.3f}")
        body.append([names[i], f"{cols[0][2][i]:,}", *cells])
    table = render_table(["class", "held out", *[f"trial {n}" for n, _, _ in cols]], body)
    return rows, "per-class recall of the front (+- its binomial SE):\n" + table
