"""Runs the tutorial's study for real and makes the figures docs/tutorial.md shows.

    .venv/bin/python docs/tutorial.py [WORKDIR]

Runs, in WORKDIR (default: a fresh temporary folder), exactly the commands of docs/tutorial.md
(``nasconv search``, ``pareto --plot``, ``report``, ``export``), saves what each printed to
``docs/assets/tutorial-*.txt``, the front plot to ``docs/assets/tutorial-front.png`` and the
report page, rendered in headless Chromium, to ``docs/assets/tutorial-report.png``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ASSETS = DOCS / "assets"
NASCONV = Path(sys.executable).with_name("nasconv")

#: the tutorial's commands, in order (docs/tutorial.md shows the same)
COMMANDS = {
    "search": "nasconv search --space resnet20 --budget 30mflops --trials 12 --time 15m --train-images 2000 "
              "--study tutorial",
    "pareto": "nasconv pareto --study tutorial --plot front.png",
    "report": "nasconv report --study tutorial --out report.html",
    "export": "nasconv export --study tutorial --best accuracy --out exported/",
}


def run(name: str, cmd: str, cwd: Path) -> None:
    argv = [str(NASCONV), *shlex.split(cmd)[1:]]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    took = time.monotonic() - t0
    text = f"$ {cmd}\n{proc.stdout}"  # stdout: the results (progress and notes go to stderr)
    if proc.stdout.strip():
        (ASSETS / f"tutorial-{name}.txt").write_text(text)
    print(f"{name}: exit {proc.returncode} in {took:.0f} s", flush=True)
    if proc.returncode:
        sys.exit(f"{cmd} failed: {proc.stderr.strip().splitlines()[-1:]}")


def screenshot(html: Path, png: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print("no chromium: the report screenshot is skipped")
        return
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,1600", f"--screenshot={png}", html.as_uri()],
                   check=True, capture_output=True, timeout=120)


def main() -> int:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="nasconv-tutorial-"))
    work.mkdir(parents=True, exist_ok=True)
    ASSETS.mkdir(exist_ok=True)
    for name, cmd in COMMANDS.items():
        run(name, cmd, work)
    shutil.copy(work / "front.png", ASSETS / "tutorial-front.png")
    screenshot(work / "report.html", ASSETS / "tutorial-report.png")
    print(f"figures in {ASSETS}; the study in {work}/studies/nasconv.db")
    return 0


if __name__ == "__main__":
    sys.exit(main())
