"""What the report and dashboard tests share: a real searched study (resnet20 on Fashion-MNIST,
briefly trained, real latency) and a headless Chromium (Debian's package) to load pages."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import optuna

from nasconv.evaluate import eval_config_for
from nasconv.search import SearchConfig, run_search
from nasconv.spaces import load_space

STUDY = "resnet20-40mflops"


def search(storage: str, trials: int, *, baseline: bool = True) -> SearchConfig:
    """A real search: 256 training images at 16 px per candidate (about 2 s each here)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ev = eval_config_for(load_space("resnet20"), data="fashion-mnist", device="cpu", train_images=256,
                         val_images=200, resolution=16, batch_size=32)
    ev = dataclasses.replace(ev, latency_resolution=16, latency_max_time_s=0.3)
    cfg = SearchConfig(space="resnet20", budget="40mflops", trials=trials, sampler="random", seed=0, storage=storage,
                       eval=ev, runner="inline", evaluate_baseline=baseline, progress=False)
    run_search(cfg)
    return cfg


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def browse(url: str, tmp: Path, *, budget_ms: int = 15000) -> tuple[str, str]:
    """The page's DOM after its scripts ran (up to ``budget_ms`` of virtual time) and Chromium's
    log (console messages appear there as ``CONSOLE`` lines)."""
    exe = chromium()
    assert exe, "chromium is not installed"
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--user-data-dir={tmp / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
                           f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
