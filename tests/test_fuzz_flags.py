"""The command line's numeric flags under any value, in process (nasconv.cli.main).

For every integer and number flag of every command (found from the parser, so a flag added
tomorrow is fuzzed the day it is added) and any text as its value: a value outside the flag's
stated range, not a number or not finite ends in exit 2 and one line naming the flag, before
anything is read or written; a value inside reaches the point where the work would begin (the
storage opened, the evaluation or the export started: stubbed here), or ends in exit 0, 1 or 2
and one line. Each example within :data:`EXAMPLE_CPU_S` seconds of this process's CPU time and
:data:`EXAMPLE_PEAK_MB` of Python allocations (tracemalloc): bounds some 40x above what an
example takes, so that they catch a value that makes the parser (or what runs before the work)
loop or allocate with the value, not a busy machine; each example runs once unmeasured first
(a first run imports modules). Derandomized, as the other fuzz tests.
"""

from __future__ import annotations

import gc
import io
import math
import time
import tracemalloc
from contextlib import redirect_stderr, redirect_stdout

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from nasconv.cli import build_parser, main
from nasconv.cli._common import FloatRange, IntRange
from tests.cli_helpers import walk_options

#: per example: CPU seconds of this process, and peak MiB allocated by Python while main() runs
EXAMPLE_CPU_S = 2.0
EXAMPLE_PEAK_MB = 64

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


FLAGS = list(walk_options(build_parser()))
#: (command path, flag, range) of every bounded numeric flag
NUMERIC = [(p, a.option_strings[-1], a.type) for p, a in FLAGS if isinstance(a.type, (IntRange, FloatRange))]
#: the commands whose work is stubbed below (where it would begin) and what they are given besides
#: the flags drawn; any other command (one added tomorrow) gets out-of-range values only, which
#: never reach its work
STUBBED = {("ops",): [], ("cost",): ["--space", "resnet20"], ("sample",): ["--space", "resnet20"],
           ("evaluate",): ["--space", "resnet20", "--data", "synthetic", "--proxy", "synflow"],
           ("search",): ["--space", "resnet20", "--data", "synthetic", "--inline", "--proxy", "train"],
           ("latency", "profile"): ["--space", "resnet20"], ("latency", "predict"): ["--space", "resnet20"],
           ("export",): ["--study", "s", "--out", "o"], ("dashboard",): []}
REQUIRED = dict(STUBBED)
for _path, _a in FLAGS:
    if _path not in STUBBED and _a.required:
        REQUIRED.setdefault(_path, [])
        REQUIRED[_path] += [_a.option_strings[-1], {"--space": "resnet20", "--study": "s"}.get(_a.option_strings[-1],
                                                                                                   "x")]
STORAGE = "sqlite:////no/such/folder/fuzz.db"  # never the user's default database; never created


def in_range(t: IntRange | FloatRange, text: str) -> bool:
    """The documented rule, stated independently of the parser: an integer flag takes a decimal
    integer within its range, a number flag a finite number within its range."""
    try:
        v = int(text) if isinstance(t, IntRange) else float(text)
    except ValueError:
        return False
    if isinstance(t, IntRange):
        return t.low <= v <= t.high
    return math.isfinite(v) and (v > t.low if t.low_open else v >= t.low) and (v < t.high if t.high_open
                                                                               else v <= t.high)


def _values(t: IntRange | FloatRange) -> st.SearchStrategy[str]:
    edges = [t.low, t.high]
    near = [str(v + d) if isinstance(t, IntRange) else repr(v + d) for v in edges for d in (-1, 0, 1)]
    return st.one_of(st.sampled_from(near), st.integers(-2**80, 2**80).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr),
                     st.sampled_from(["", " ", "1e3", "0x10", "1_000", "٣", "nan", "-inf", "9" * 5000, "1" * 4300]),
                     st.text(max_size=12))


@st.composite
def flag_values(draw) -> tuple[tuple[str, ...], list[tuple[str, IntRange | FloatRange, str]]]:
    path = draw(st.sampled_from(sorted({p for p, _, _ in NUMERIC})))
    mine = [(f, t) for p, f, t in NUMERIC if p == path]
    chosen = draw(st.permutations(mine))[:draw(st.integers(1, min(2, len(mine))))]
    if path in STUBBED:
        return path, [(f, t, draw(_values(t))) for f, t in chosen]
    return path, [(f, t, draw(_values(t).filter(lambda v, t=t: not in_range(t, v)))) for f, t in chosen]


class _Reached(BaseException):
    """Raised where the work would begin: the arguments were all accepted."""


def _stop(*args, **kwargs):
    raise _Reached


def _run(argv: list[str]) -> int | None:
    """``main(argv)``'s exit code, None where the work would begin."""
    try:
        return main(argv)
    except _Reached:
        return None


def _case(path: tuple[str, ...], *pairs: str):
    """An explicit example: (flag, value) pairs of ``path`` with their ranges."""
    ranges = {f: t for p, f, t in NUMERIC if p == path}
    return path, [(f, ranges[f], v) for f, v in zip(pairs[::2], pairs[1::2])]


@FUZZ
@given(flag_values())
@example(_case(("search",), "--epochs", "99999999999999999999"))  # the cases
@example(_case(("search",), "--train-images", "99999999999"))
@example(_case(("search",), "--train-images", "10000000", "--rungs", "1"))
@example(_case(("search",), "--eta", "1e309", "--rungs", "10"))
@example(_case(("evaluate",), "--batch-size", "65536", "--resolution", "4096"))
@example(_case(("sample",), "--tries", "100000", "--seed", "4294967295"))
def test_any_value_of_a_numeric_flag_is_a_result_or_one_usage_line(monkeypatch, case):
    import nasconv.evaluate
    import nasconv.export
    import nasconv.latency
    import nasconv.search.driver
    import nasconv.search.estimate
    import nasconv.storage

    for module, name in ((nasconv.search.driver, "open_storage"), (nasconv.evaluate, "evaluate"),
                         (nasconv.latency, "open_tables"), (nasconv.export, "export_study"),
                         (nasconv.storage, "open_storage")):
        monkeypatch.setattr(module, name, _stop)
    # the start line's estimate times a real training step: the search's work, a moment early
    monkeypatch.setattr(nasconv.search.estimate, "measure_train_step", lambda *a, **k: 0.01)
    path, flags = case
    argv = [*path, *REQUIRED.get(path, [])]
    if any(a.dest == "storage" for p, a in FLAGS if p == path):
        argv += ["--storage", STORAGE]
    argv += [f"{flag}={value}" for flag, _, value in flags]
    refused = [flag for flag, t, value in flags if not in_range(t, value)]
    # Run once unmeasured: a first run imports the modules a flag needs (seconds under tracemalloc),
    # which is not what is measured; the second, the same work again, is.
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        _run(argv)
    gc.collect()
    out, err = io.StringIO(), io.StringIO()
    tracemalloc.start()
    cpu = time.process_time()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = _run(argv)
    finally:
        cpu = time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert cpu < EXAMPLE_CPU_S, (argv, f"{cpu:.2f} s of CPU")
    assert peak < EXAMPLE_PEAK_MB * 2**20, (argv, f"{peak / 2**20:.0f} MiB")
    text = err.getvalue()
    assert "Traceback" not in text and "internal error" not in text, (argv, text)
    event(f"{' '.join(path)}: {'work reached' if code is None else f'exit {code}'}")
    if refused:
        assert code == 2, (argv, code, text)
        line = text.strip()
        assert len(line.splitlines()) == 1 and any(f in line for f in refused), (argv, text)
        assert len(line) < 400, line  # a huge value is shown shortened
        return
    assert code in (None, 0, 1, 2), (argv, code, text)
    if code:
        lines = text.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nasconv: error: "), (argv, text)
