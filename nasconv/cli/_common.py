"""What several commands share: the one-line-error parser, JSON output, ``--shape``, the budget
help and the evaluation arguments of ``evaluate`` and ``search``."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, TextIO

from nasconv.errors import UsageError

if TYPE_CHECKING:
    from nasconv.evaluate import EvalConfig

BUDGET_HELP = ("cost limits, comma-separated: 4gflops, 800mflops, 4gmacs, 20mparams, 15ms. "
               "1 FLOP = 1 multiply-add (the papers' convention: ResNet-50 = 4.1 GFLOPs), "
               "so 4gflops = 4gmacs = 4e9 MACs per image")


#: The numeric flags' upper bounds: beyond any real use, low enough that no accepted value
#: overflows a computation, fills a disk or runs for years. A value outside is a usage error at
#: parse time (exit 2, one line), before anything is read or a study is created. The library
#: checks what it needs again (its callers are not only this command line).
MAX_IMAGES = 10_000_000  # training or held-out images (ImageNet-1k has 1.28 M)
MAX_EPOCHS = 1_000
MAX_TRAIN_BATCH = 65_536
MAX_TRIALS = 1_000_000
MAX_WORKERS = 1_024  # also CPUs per worker and torch threads
MAX_GPUS_PER_TRIAL = 64.0
MAX_LR = 100.0
MAX_ETA = 100.0
MAX_KERNEL = 99
MAX_TRIES = 100_000
SEED_LIMIT = 2**32  # numpy's random state takes [0, 2**32)
MAX_TRIAL_NUMBER = 2**31 - 1


def _shown(text: str) -> str:
    """A user's value in a message: quoted, escaped, and short (argv may hold 100 kB)."""
    r = repr(text)
    return r if len(r) <= 40 else r[:30] + "..." + r[-6:]


@dataclass(frozen=True)
class IntRange:
    """An argparse ``type``: an integer in ``[low, high]``, else the flag's usage error (exit 2):
    ``argument --epochs: must be an integer in [1, 1000], got '0'``."""

    low: int
    high: int

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # also a string of more than 4300 digits (Python's own limit)
            value = None
        if value is None or not self.low <= value <= self.high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{self.low}, {self.high}], got {_shown(text)}")
        return value


@dataclass(frozen=True)
class FloatRange:
    """An argparse ``type``: a finite number in ``[low, high]`` (``(low, ...`` with ``low_open``,
    ``..., high)`` with ``high_open``), else the flag's usage error (exit 2)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (self.low < value if self.low_open else self.low <= value)
                and (value < self.high if self.high_open else value <= self.high)):
            shown = f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be a number in {shown}, got {_shown(text)}")
        return value


def int_in(low: int, high: int) -> IntRange:
    """The ``type=`` of an integer flag: ``q.add_argument("--epochs", type=int_in(1, MAX_EPOCHS))``."""
    return IntRange(low, high)


def float_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> FloatRange:
    """The ``type=`` of a number flag: ``type=float_in(0, MAX_LR, low_open=True)`` for (0, 100]."""
    return FloatRange(float(low), float(high), low_open, high_open)


def study_name(text: str) -> str:
    """An argparse ``type`` for ``--study``: any name but an empty or blank one (which would
    otherwise stand for the default name, or for no study, without a word)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"a study name must not be empty or blank, got {_shown(text)}")
    return text


def nonblank(text: str) -> str:
    """An argparse ``type`` for a flag whose empty value would otherwise mean "not given" without a
    word (``--budget ''``: no budget; ``--data-dir ''``: not looked in)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must not be empty or blank (leave the flag out instead), got {_shown(text)}")
    return text


_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]{1,4})?")


def device_flag(text: str) -> str:
    """An argparse ``type`` for ``--device``: auto, cpu, cuda or cuda:N (what
    :func:`nasconv.profile.pick_device` accepts; whether it is there is checked later)."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {_shown(text)}; accepted: auto, cpu, cuda, cuda:N")
    return text


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the whole usage)
        raise UsageError(f"{message} (see '{self.prog} --help')")


_result_stream: list[TextIO] = []  # where print_json writes while results_only_on_stdout() holds


@contextlib.contextmanager
def results_only_on_stdout() -> Iterator[None]:
    """While a ``--json`` command runs, anything else written to ``sys.stdout`` (Ray's
    "(raylet) A worker died ..." lines, a library's print) goes to stderr: stdout carries the
    JSON document only, so that ``nasconv ... --json | jq`` holds whatever happens meanwhile."""
    real = sys.stdout
    _result_stream.append(real)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = real
        _result_stream.pop()


def print_json(obj: Any) -> None:
    """Strict JSON (RFC 8259): a NaN or infinite number (a diverged loss) is written as null,
    which every parser reads, where Python's default ``NaN`` is refused by most."""
    out = _result_stream[-1] if _result_stream else sys.stdout
    print(json.dumps(_finite(obj), indent=2, sort_keys=False, allow_nan=False), file=out, flush=True)


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def open_nasconv_study(name: str, url: str) -> tuple[Any, Any]:
    """(study, tables) of the stored study ``name``, read-only, as
    :func:`nasconv.storage.open_study`; a study nasconv did not make (plain Optuna's, none of
    nasconv's settings stamped on it) is refused in one line (exit 1), as ``search`` refuses it:
    it has no space, budget or architectures to show."""
    from nasconv.errors import StorageError
    from nasconv.search.study import NASCONV_ATTRS
    from nasconv.storage import open_study, safe_url

    study, tables = open_study(name, url, readonly=True)  # read-only media too
    if not any(k in study.user_attrs for k in NASCONV_ATTRS):
        n = len(study.get_trials(deepcopy=False))
        tables.dispose()
        raise StorageError(f"study {name!r} in {safe_url(url)} was not made by nasconv ({n} trial(s), none of its "
                           "settings stamped): it has no space, budget or architectures to show; optuna-dashboard "
                           "shows any Optuna study")
    return study, tables


def parse_shape(text: str) -> tuple[int, int, int, int]:
    from nasconv.arch import MAX_RESOLUTION, MAX_WIDTH

    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4 or min(parts) < 1 or max(parts[:2]) > MAX_WIDTH or max(parts[2:]) > MAX_RESOLUTION:
        raise UsageError(f"--shape must be C_IN,C_OUT,H,W (four positive integers, channels at most {MAX_WIDTH}, "
                         f"H and W at most {MAX_RESOLUTION}), got {_shown(text)}")
    return parts  # type: ignore[return-value]


def add_eval_args(q: argparse.ArgumentParser) -> None:
    """Evaluation settings shared by ``evaluate`` and ``search``."""
    from nasconv.evaluate import MAX_BATCH, PROXIES
    from nasconv.precision import PRECISIONS
    from nasconv.spaces import MAX_RESOLUTION

    g = q.add_argument_group("evaluation")
    g.add_argument("--data", default=None,
                   help="cifar10, cifar100 (found in --data-dir, $NASCONV_DATA or the cache, else downloaded and "
                        "checksummed), cifar10:DIR, cifar100:DIR, fashion-mnist, "
                        "imagefolder:DIR (DIR/train/<class>/ images, "
                        "DIR/val/<class>/ held out, else DIR/test/<class>/; or DIR/<class>/ with a fraction held "
                        "out), synthetic (smoke "
                        "tests only); default: a stored study's own data, else CIFAR-10 where it is found or can be "
                        "downloaded, else Fashion-MNIST (said in one line)")
    g.add_argument("--data-dir", type=nonblank, default=None,
                   help="where to look for a dataset first (then $NASCONV_DATA, the cache; Fashion-MNIST also "
                        "Debian's dataset-fashion-mnist)")
    g.add_argument("--cache-dir", type=nonblank, default=None,
                   help="where decoded datasets are cached as memory-mapped uint8 files (default: "
                        "$NASCONV_CACHE_DIR, else ~/.cache/nasconv)")
    g.add_argument("--proxy", default="train", help=f"accuracy objective: {', '.join(PROXIES)} (default: train)")
    g.add_argument("--device", type=device_flag, default=None,
                   help="auto (default: CUDA where available, else the CPU; a stored study keeps its own), cpu, cuda "
                        "or cuda:N: where the candidate is trained and its latency measured")
    g.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="proxy training precision (autocast): auto (default: bf16 where the device has it natively, "
                        "else fp32), fp32, bf16 or fp16")
    g.add_argument("--channels-last", action="store_true", help="proxy training in channels-last memory order")
    g.add_argument("--augment", action="store_true",
                   help="proxy training with random crops (4 px padding) and horizontal flips")
    g.add_argument("--seed", type=int_in(0, SEED_LIMIT - 1), default=0, help=f"in [0, {SEED_LIMIT - 1}] (default 0)")
    g.add_argument("--train-images", type=int_in(1, MAX_IMAGES), default=None,
                   help="training images of the proxy (default 8000, 12000 where the CPU trains in bf16; on a "
                        f"GPU the space's proxy_gpu: 40000; a stored study keeps its own; at most {MAX_IMAGES:,})")
    g.add_argument("--val-images", type=int_in(1, MAX_IMAGES), default=None,
                   help="held-out images an accuracy is measured on (default 2000; on a GPU the space's proxy_gpu: "
                        f"10000; at most {MAX_IMAGES:,}): its standard error is about sqrt(p(1-p)/N), 0.9 points at "
                        "2000")
    g.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=None,
                   help=f"proxy training epochs (default 1; on a GPU the space's proxy_gpu; at most {MAX_EPOCHS})")
    g.add_argument("--batch-size", type=int_in(1, MAX_TRAIN_BATCH), default=None,
                   help=f"proxy training batch size (default 64; 256 on a GPU; at most {MAX_TRAIN_BATCH})")
    g.add_argument("--resolution", type=int_in(1, MAX_RESOLUTION), default=None,
                   help=f"proxy training resolution (default 28; 32 on a GPU; at most {MAX_RESOLUTION})")
    g.add_argument("--optimizer", default=None, help="adamw (default) or sgd")
    g.add_argument("--lr", type=float_in(0, MAX_LR, low_open=True), default=None,
                   help=f"peak learning rate, in (0, {MAX_LR:g}]")
    g.add_argument("--full-proxy", action="store_true",
                   help="train the full candidate, not the reduced copy (1 block per stage, half width)")
    g.add_argument("--latency-batch", type=int_in(1, MAX_BATCH), default=1,
                   help=f"batch size of the latency measurement (default 1, at most {MAX_BATCH})")
    g.add_argument("--latency-threads", type=int_in(1, MAX_WORKERS), default=None,
                   help="torch threads for the latency measurement alone (default: the worker's); 1 is the "
                        f"repeatable choice on a CPU shared with other work (at most {MAX_WORKERS})")
    g.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    g.add_argument("--metric", default=None, metavar="accuracy|balanced-accuracy",
                   help="what the accuracy objective measures: accuracy, or balanced-accuracy (the mean per-class "
                        "recall); default: balanced-accuracy where the held-out classes differ in size by more than "
                        "2x, else accuracy (said in the data line; a stored study keeps its own)")
    g.add_argument("--holdout", type=float_in(0, 1, low_open=True, high_open=True), default=None, metavar="FRACTION",
                   help="imagefolder:DIR: hold out this fraction of each class of DIR/train/ and leave DIR/val/ "
                        "and DIR/test/ unread (default: DIR/val/ is held out, else DIR/test/, which then selects "
                        "architectures on the test split)")


def eval_config(args: argparse.Namespace, space: Any) -> EvalConfig:
    """The flags of :func:`add_eval_args` as the library's checked evaluation settings."""
    from nasconv.evaluate import eval_config_for

    device = args.device or "auto"
    if device == "auto" and getattr(args, "gpus_per_trial", 0):
        device = "cuda"  # a search's workers with GPUs, which this machine may not have
    return eval_config_for(space, full_proxy=args.full_proxy, data=args.data, data_dir=args.data_dir,
                           cache_dir=args.cache_dir,
                           proxy=args.proxy, device=device, latency=not args.no_latency,
                           latency_batch=args.latency_batch, latency_threads=args.latency_threads,
                           train_images=args.train_images, val_images=args.val_images, epochs=args.epochs,
                           batch_size=args.batch_size, resolution=args.resolution, optimizer=args.optimizer,
                           lr=args.lr, seed=args.seed,
                           precision=args.precision, channels_last=args.channels_last or None,
                           augment=args.augment or None, metric=getattr(args, "metric", None) or "accuracy",
                           holdout=getattr(args, "holdout", None))
