"""Hostile inputs to the space YAML loader and to the command line's argument handling.

A space file either loads as a space whose checks hold (its baseline is one of its architectures,
what it samples lies in it and within its exact cost bounds, its content hash is stable) or is refused with a one-line
:class:`NasconvError`; never another exception, and each example in bounded time and memory.

Command lines drawn from each command's own flags, with values from near-valid to hostile, end
in exit 0, 1 or 2; a non-zero exit is one line on stderr, never a traceback or an "internal
error"; ``--json`` output is strict JSON. ``search`` and ``evaluate`` stop where the work would
begin (the storage opened, the evaluation started): everything before, which is where the
arguments are handled, runs for real. Derandomized, as in test_fuzz_inputs.
"""

from __future__ import annotations

import copy
import io
import json
import random
import tempfile
import time
import tracemalloc
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nasconv.cli import build_parser, main
from nasconv.cli._common import FloatRange, IntRange
from nasconv.cost import estimate_cost
from nasconv.errors import NasconvError
from nasconv.spaces import SearchSpace, load_space

FUZZ = settings(max_examples=200, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
ROOT = Path(__file__).resolve().parents[1] / "search_spaces"
DATA = {name: yaml.safe_load((ROOT / f"{name}.yaml").read_text()) for name in ("resnet20", "resnet50", "resnet18")}
SCRATCH = Path(tempfile.mkdtemp(prefix="nasconv-fuzz-"))


def _one_line(exc: NasconvError) -> None:
    msg = str(exc)
    assert msg and len(msg.splitlines()) == 1 and len(msg) < 600, repr(msg)


#: per space file loaded: peak Python allocations (tracemalloc) and CPU seconds of this process
#: (a shipped space loads in about 0.1 s: a bound that catches work growing with a value, not a
#: busy machine)
LOAD_PEAK_MB = 256
LOAD_CPU_S = 10.0


def check_space_text(text: str) -> SearchSpace | None:
    f = SCRATCH / "fuzz.yaml"
    f.write_text(text)
    tracemalloc.start()
    cpu = time.process_time()
    try:
        space = load_space(f)
    except NasconvError as exc:
        _one_line(exc)
        return None
    finally:
        cpu = time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < LOAD_PEAK_MB * 2**20, f"loading took {peak / 2**20:.0f} MiB"
        assert cpu < LOAD_CPU_S, f"loading took {cpu:.1f} s of CPU"
    assert isinstance(space, SearchSpace)
    arch = space.sample(random.Random(0))
    space.check_arch(arch)  # what it samples is in it
    bounds = space.cost_bounds()
    cost = estimate_cost(arch)  # and within its exact cost bounds
    assert bounds["min_macs"] <= cost.macs <= bounds["max_macs"]
    assert bounds["min_params"] <= cost.params <= bounds["max_params"]
    assert space.size >= 1
    assert load_space(f).content_hash == space.content_hash
    return space


# --- the space YAML loader --------------------------------------------------------------------

@FUZZ
@given(st.text(max_size=400))
def test_space_from_arbitrary_text(text):
    check_space_text(text)


HOSTILE = st.one_of(
    st.integers(-10**12, 10**12), st.sampled_from([0, -1, 1, 2, 3, 10**9, 2**63, 1.5, float("nan"), float("inf")]),
    st.none(), st.booleans(), st.text(max_size=12), st.lists(st.integers(-3, 300), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(-3, 99), max_size=3),
)


def _leaves(x: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(x, dict):
        return [path] + [p for k, v in x.items() for p in _leaves(v, path + (k,))]
    if isinstance(x, list):
        return [path] + [p for i, v in enumerate(x) for p in _leaves(v, path + (i,))]
    return [path]


@st.composite
def mutated_spaces(draw) -> str:
    """A shipped space with a few values replaced, keys dropped or added, or lists duplicated."""
    data = copy.deepcopy(DATA[draw(st.sampled_from(sorted(DATA)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _leaves(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "drop", "add", "repeat"]))
        if action == "replace":
            parent[path[-1]] = draw(HOSTILE)
        elif action == "drop":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "depth", "width", "groups", "choices", "stride"]))] = draw(HOSTILE)
        elif action == "repeat" and isinstance(parent, list):
            parent.extend([copy.deepcopy(parent[path[-1]])] * draw(st.integers(1, 40)))
    return yaml.safe_dump(data, sort_keys=False)


@FUZZ
@given(mutated_spaces())
def test_space_from_mutated_shipped_spaces(text):
    check_space_text(text)


@pytest.mark.parametrize("name", sorted(DATA))
def test_shipped_spaces_pass_the_same_checks(name):
    assert check_space_text((ROOT / f"{name}.yaml").read_text()) is not None


# --- the command line -------------------------------------------------------------------------


class _Reached(BaseException):
    """Raised where the work would begin: the arguments were all accepted."""


def _flags(command: str) -> list[tuple[str, Any]]:
    """(flag, the value strategy) for every option of ``nasconv <command>``, from its parser: None
    for a switch, numbers (mostly edge cases) for an int or float option, else :data:`VALUES`."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]
    out = []
    for action in parser._actions:
        for opt in action.option_strings:
            # --measure runs the network (seconds at a large --resolution): real work, not argument handling
            if opt.startswith("--") and opt not in ("--help", "--measure"):
                kind = None if action.nargs == 0 else INTS if action.type is int or isinstance(action.type, IntRange) \
                    else FLOATS if action.type is float or isinstance(action.type, FloatRange) else VALUES
                out.append((opt, kind))
    return out


NEAR = st.sampled_from(["resnet20", "resnet50", "resnet18", "baseline", "standard", "group", "ghost", "4gflops",
                     "30mflops", "20mparams", "15ms", "1e309", "nan", "inf", "-inf", "-1", "0", "1", "3", "7",
                     "64", "99999999999", "1.5", "", " ", "synthetic", "fashion-mnist", "cifar10:/no/such",
                     "imagefolder:/no/such", "cpu", "cuda", "cuda:7", "train", "synflow", "naswot", "random",
                     "nsga2", "tpe", "accuracy,macs", "accuracy,latency", "macs,params,accuracy", "adamw", "sgd",
                     "8,16,16", "3,32,32", "a.json", "/dev/zero", "sqlite:////no/such/folder/x.db",
                     "nosuchdb://x", "x" * 300, "../../etc", "s\nt", "127.0.0.1:1", "x"])
#: mostly near-valid values (so that many command lines get far), the rest anything
VALUES = st.one_of(NEAR, NEAR, NEAR, NEAR, st.integers(-2**40, 2**40).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=20))
EDGE_INTS = st.sampled_from(["0", "1", "2", "3", "4", "16", "64", "-1", "-5", "2147483648", "99999999999", "1e3",
                             "", "x"])
INTS = st.one_of(EDGE_INTS, EDGE_INTS, st.integers(-2**40, 2**40).map(str))
FLOATS = st.one_of(st.sampled_from(["0", "0.25", "1", "-1", "nan", "inf", "1e-300", "1e309", ""]),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))
COMMANDS = {c: _flags(c) for c in ("ops", "cost", "sample", "evaluate", "search", "pareto")}


#: a valid value per option, drawn half the time, so that many command lines get far
VALID = {"--space": "resnet20", "--budget": "30mflops", "--proxy": "synflow", "--data": "synthetic",
         "--sampler": "random", "--objectives": "accuracy,macs", "--device": "cpu", "--resolution": "16",
         "--arch": "baseline", "--op": "group", "--shape": "8,16,16", "--kernel": "3", "--seed": "0",
         "--trials": "2", "--workers": "1", "--epochs": "1", "--train-images": "64", "--batch-size": "8",
         "--optimizer": "sgd", "--lr": "0.1", "--latency-batch": "1", "--latency-threads": "1",
         "--cpus-per-worker": "1", "--gpus-per-trial": "0", "--study": "s"}


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(COMMANDS)))
    argv = [command]
    if command in ("cost", "sample", "evaluate", "search"):
        argv += ["--space", draw(st.sampled_from(["resnet20", "resnet20", "resnet50", "nope", "/dev/zero", ""]))]
    if command == "pareto":
        argv += ["--study", draw(VALUES)]
    for flag, values in draw(st.lists(st.sampled_from(COMMANDS[command]), max_size=5)):
        argv.append(flag)
        if values is not None:
            argv.append(VALID[flag] if flag in VALID and draw(st.booleans()) else draw(values))
    if command == "pareto" and "--storage" not in argv:  # never the user's default database
        argv += ["--storage", "sqlite:////no/such/folder/x.db"]
    if command in ("search", "evaluate") and "--data" not in argv:
        argv += ["--data", "synthetic"]
    if draw(st.integers(0, 7)) == 0:
        argv.append(draw(st.sampled_from(["--unknown", "-x", "--", "extra"])))
    return argv


def _stop(*args, **kwargs):
    raise _Reached


@settings(FUZZ, max_examples=400)
@given(command_lines())
def test_command_lines_end_in_an_exit_code_and_at_most_one_line(monkeypatch, argv):
    import nasconv.evaluate
    import nasconv.search.driver
    import nasconv.search.estimate

    monkeypatch.setattr(nasconv.search.driver, "open_storage", _stop)
    monkeypatch.setattr(nasconv.evaluate, "evaluate", _stop)
    # the start line's estimate times a real training step: the search's work, a moment early
    monkeypatch.setattr(nasconv.search.estimate, "measure_train_step", lambda *a, **k: 0.01)
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
    except _Reached:
        event(f"{argv[0]}: accepted")
        return  # accepted: the work would begin here
    except SystemExit as exc:  # --version only
        code = exc.code
    text = err.getvalue()
    event(f"{argv[0]}: exit {code}")
    assert "Traceback" not in text and "internal error" not in text, (argv, text)
    assert code in (0, 1, 2), (argv, code, text)
    if code:
        lines = text.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nasconv: error: "), (argv, text)
    elif "--json" in argv:
        json.loads(out.getvalue())
