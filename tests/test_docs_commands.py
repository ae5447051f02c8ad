"""Every command the README and the tutorial show runs (so that the documentation cannot rot).

The ```bash blocks are parsed, in order, and each ``nasconv`` line runs in this process at small
sizes: a search gets a couple of trials on synthetic images at 16 px (unless it names its own
data, which the test then provides), a screened search a few supernet steps and screened
candidates, latency timings are capped short, the plan's step timing is
injected; a Ray cluster address is dropped (evaluations run in-process) and its PostgreSQL URL
becomes the test database; the latency recipe runs on a tiny space; ``make`` lines are checked
with ``make -n``; ``make search`` runs its command. Everything else is the command as printed.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nasconv.cli.dashboard as dashboard_cli
import nasconv.cli.search as search_cli
import nasconv.search.estimate as estimate
from nasconv.cli import main
from tests.latency_helpers import TINY_SPACE

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/tutorial.md")
SMALL = ["--trials", "1", "--train-images", "48", "--val-images", "40", "--batch-size", "16", "--resolution", "16",
         "--no-baseline", "--inline"]
SMALL_SCREEN = ["--screen-count", "4", "--supernet-steps", "20"]

MODEL = '''
import torch.nn as nn


def make_net(num_classes=2):  # the test's image folder has two classes
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))
'''


def bash_commands(path: Path) -> list[str]:
    """The command lines of a Markdown file's ```bash blocks (continuations joined, comments cut)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(30):
            pixels = rng.integers(0, 80, (20, 20, 3), dtype=np.uint8) + 120 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def _drop(argv: list[str], flag: str) -> list[str]:
    if flag in argv:
        i = argv.index(flag)
        return argv[:i] + argv[i + 2:]
    return argv


def _space_text(argv: list[str]) -> str:
    space = Path(argv[argv.index("--space") + 1]) if "--space" in argv else None
    return space.read_text() if space is not None and space.suffix == ".yaml" and space.is_file() else ""


class Runner:
    def __init__(self, tmp: Path, postgres_url: str) -> None:
        self.tmp, self.pg = tmp, postgres_url
        self.images = _image_folder(tmp / "my-images")
        (tmp / "mymodels.py").write_text(MODEL)
        (tmp / "tiny20.yaml").write_text(TINY_SPACE)
        makefile = (ROOT / "Makefile").read_text()
        self.make_search = "nasconv search --space {} --budget {}".format(
            re.search(r"^SPACE \?= (\S+)", makefile, re.M).group(1), re.search(r"^BUDGET \?= (\S+)", makefile,
                                                                                re.M).group(1))
        self.ran: list[str] = []
        self.took: list[tuple[float, str]] = []

    def argv(self, line: str) -> list[str]:
        argv = shlex.split(line)[1:]
        subs = {"mypackage.models:make_net": f"{self.tmp}/mymodels.py:make_net",
                "imagefolder:/data/my-images": f"imagefolder:{self.images}",
                "postgresql+psycopg://nas@dbhost/nas": self.pg}
        argv = [subs.get(a, a) for a in argv]
        argv = [str(ROOT / a) if a.startswith("examples/") else a for a in argv]  # the repository's examples
        if argv[:1] == ["latency"] or "--latency" in argv:  # the latency recipe: a tiny space, few repeats
            argv = [str(self.tmp / "tiny20.yaml") if a == "resnet20" else a for a in argv]
            if argv[:2] == ["latency", "profile"]:
                argv += ["--quick", "--networks", "4"]
        if argv[:1] == ["search"]:
            argv = _drop(_drop(argv, "--address"), "--gpus-per-trial")
            small = SMALL
            if "kind: model" in _space_text(argv):  # a model space trains at its own input size (VGG: >= 32 px)
                small = _drop(SMALL, "--resolution")
            argv += small + ([] if "--data" in argv else ["--data", "synthetic:1200"])
            if "--screen" in argv:  # one-shot screening: a few supernet steps, a few candidates scored
                argv += SMALL_SCREEN
        return argv

    def run(self, line: str) -> None:
        if line.startswith("make "):
            target = line.split()[1]
            subprocess.run(["make", "-n", target], cwd=ROOT, check=True, capture_output=True)
            if target == "search":
                self.run(self.make_search)
            return
        if line.startswith(".venv/bin/pytest") or line.startswith("pip "):
            return  # the suite itself; an installation
        assert line.split()[0].endswith("nasconv"), f"a command the test does not know how to run: {line}"
        t0 = time.monotonic()
        code = main(self.argv(line))
        self.took.append((round(time.monotonic() - t0, 1), line[:60]))
        assert code == 0, f"{line} -> exit {code}"
        self.ran.append(line)


@pytest.fixture
def runner(tmp_path, monkeypatch, postgres_url):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NASCONV_LOCK_DIR", str(tmp_path / "locks"))  # not other processes' latency locks
    original = search_cli.eval_config
    def small_latency(args, space):  # timed briefly, at 32 px where the latency is measured (not predicted)
        cfg = dataclasses.replace(original(args, space), latency_max_time_s=0.1)
        return dataclasses.replace(cfg, latency_resolution=32) if args.latency == "measure" else cfg

    monkeypatch.setattr(search_cli, "eval_config", small_latency)
    monkeypatch.setattr(estimate, "measure_train_step", lambda space, eval_cfg: 0.01)
    real_bind = dashboard_cli._bind
    monkeypatch.setattr(dashboard_cli, "_bind", lambda host, port, app: real_bind(host, 0, app))  # a free port
    monkeypatch.setattr(dashboard_cli, "_serve", lambda server: None)  # bound and announced, not served for ever
    return Runner(tmp_path, postgres_url)


def test_docs_show_commands():
    for doc in DOCS:
        lines = bash_commands(ROOT / doc)
        assert sum(line.split()[0].endswith("nasconv") for line in lines) >= 4, doc


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS)
def test_every_documented_command_runs(doc, runner):
    lines = bash_commands(ROOT / doc)
    for line in lines:
        runner.run(line)
    assert runner.ran
    print(runner.took)
