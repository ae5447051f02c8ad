"""What several commands share: the one-line-error parser, JSON output, ``--shape``, the budget
help and the evaluation arguments of ``evaluate`` and ``search``."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from typing import TYPE_CHECKING, Any, Iterator, TextIO

from nasconv.errors import UsageError

if TYPE_CHECKING:
    from nasconv.evaluate import EvalConfig

BUDGET_HELP = ("cost limits, comma-separated: 4gflops, 800mflops, 4gmacs, 20mparams, 15ms. "
               "1 FLOP = 1 multiply-add (the papers' convention: ResNet-50 = 4.1 GFLOPs), "
               "so 4gflops = 4gmacs = 4e9 MACs per image")


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


def parse_shape(text: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4 or min(parts) < 1:
        raise UsageError(f"--shape must be C_IN,C_OUT,H,W (four positive integers), got {text!r}")
    return parts  # type: ignore[return-value]


def add_eval_args(q: argparse.ArgumentParser) -> None:
    """Evaluation settings shared by ``evaluate`` and ``search``."""
    from nasconv.evaluate import PROXIES
    from nasconv.precision import PRECISIONS

    g = q.add_argument_group("evaluation")
    g.add_argument("--data", default=None,
                   help="cifar10, cifar100 (found in --data-dir, $NASCONV_DATA or the cache, else downloaded and "
                        "checksummed), cifar10:DIR, cifar100:DIR, fashion-mnist, imagefolder:DIR, synthetic (smoke "
                        "tests only); default: a stored study's own data, else CIFAR-10 where it is found or can be "
                        "downloaded, else Fashion-MNIST (said in one line)")
    g.add_argument("--data-dir", default=None, help="where to look for a dataset first (then $NASCONV_DATA, the "
                                                   "cache; Fashion-MNIST also Debian's dataset-fashion-mnist)")
    g.add_argument("--cache-dir", default=None, help="where decoded datasets are cached as memory-mapped uint8 "
                                                    "files (default: $NASCONV_CACHE_DIR, else ~/.cache/nasconv)")
    g.add_argument("--proxy", default="train", help=f"accuracy objective: {', '.join(PROXIES)} (default: train)")
    g.add_argument("--device", default=None, help="auto (default: CUDA where available, else the CPU; a stored "
                                                "study keeps its own), cpu, cuda or cuda:N: where the candidate is "
                                                "trained and its latency measured")
    g.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="proxy training precision (autocast): auto (default: bf16 where the device has it natively, "
                        "else fp32), fp32, bf16 or fp16")
    g.add_argument("--channels-last", action="store_true", help="proxy training in channels-last memory order")
    g.add_argument("--augment", action="store_true",
                   help="proxy training with random crops (4 px padding) and horizontal flips")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--train-images", type=int, default=None,
                   help="training images of the proxy (default 8000, 12000 where the CPU trains in bf16; on a "
                        "GPU the space's proxy_gpu: 40000; a stored study keeps its own)")
    g.add_argument("--val-images", type=int, default=None,
                   help="held-out images an accuracy is measured on (default 2000; on a GPU the space's proxy_gpu: "
                        "10000): its standard error is about sqrt(p(1-p)/N), 0.9 points at 2000")
    g.add_argument("--epochs", type=int, default=None,
                   help="proxy training epochs (default 1; on a GPU the space's proxy_gpu)")
    g.add_argument("--batch-size", type=int, default=None, help="proxy training batch size (default 64; 256 on a GPU)")
    g.add_argument("--resolution", type=int, default=None, help="proxy training resolution (default 28; 32 on a GPU)")
    g.add_argument("--optimizer", default=None, help="adamw (default) or sgd")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate")
    g.add_argument("--full-proxy", action="store_true",
                   help="train the full candidate, not the reduced copy (1 block per stage, half width)")
    g.add_argument("--latency-batch", type=int, default=1, help="batch size of the latency measurement")
    g.add_argument("--latency-threads", type=int, default=None,
                   help="torch threads for the latency measurement alone (default: the worker's); 1 is the "
                        "repeatable choice on a CPU shared with other work")
    g.add_argument("--no-latency", action="store_true", help="skip the latency measurement")


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
                           augment=args.augment or None)
