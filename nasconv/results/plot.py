"""The front as a picture: every evaluated trial, the front, the baseline."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from pathlib import Path
from typing import Sequence

import optuna
from optuna.trial import TrialState

from nasconv.errors import StorageError
from nasconv.paths import os_problem
from nasconv.results.noise import NOISY
from nasconv.results.rungs import at_rungs, study_front
from nasconv.results.summary import baseline_summary, trial_summary, val_images_of
from nasconv.storage import RungResult


def plot_front(study: optuna.Study, path: str, rows: Sequence[RungResult] = ()) -> None:
    """Accuracy vs latency (or the study's first two objectives): all trials, the front (with a
    multi-fidelity study's ``rows``, at the highest rung reached), the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = study.user_attrs.get("objectives") or ["accuracy", "latency"]
    keys = {"accuracy": "score", "latency": "latency_ms", "macs": "macs", "params": "params"}
    xo, yo = (objectives[1], objectives[0]) if len(objectives) > 1 else ("macs", objectives[0])
    xk, yk = keys[xo], keys[yo]
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("status") in ("evaluated", "cached")]
    front = study_front(study, rows)
    label = f"evaluated ({len(done)})"
    if rows:  # candidates compare at equal rungs: those below the front's rung are not drawn
        views = at_rungs(done, rows)
        top = max(v.user_attrs["rung"] for v in views)
        done = [v for v in views if v.user_attrs["rung"] == top]
        label = f"evaluated at rung {top} ({len(done)}; {len(views) - len(done)} not promoted, not shown)"
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    ax.scatter([t.user_attrs.get(xk) for t in done], [t.user_attrs.get(yk) for t in done], s=18, c="0.6",
               label=label)
    n_val = val_images_of(study)
    rows = sorted((trial_summary(t, n_val) for t in front), key=lambda r: (r[xk], r[yk]))
    if rows:
        ax.plot([r[xk] for r in rows], [r[yk] for r in rows], "-", c="tab:red", alpha=0.6)
        ax.errorbar([r[xk] for r in rows], [r[yk] for r in rows], xerr=_bars(rows, xk), yerr=_bars(rows, yk),
                    fmt="o", c="tab:red", capsize=3, label=f"Pareto front ({len(rows)}), 95% intervals")
    base = baseline_summary(study) or {}
    if base.get(xk) is not None and base.get(yk) is not None:
        ax.errorbar([base[xk]], [base[yk]], xerr=_bars([base], xk), yerr=_bars([base], yk), fmt="*",
                    markersize=14, c="tab:blue", capsize=3, label="baseline (all standard)", zorder=5)
    ax.set_xlabel({"latency": "latency (ms)", "macs": "MACs", "params": "parameters"}.get(xo, xo))
    proxy = (study.user_attrs.get("eval_config") or {}).get("proxy", "train")
    ax.set_ylabel(yo if yo != "accuracy" else ("validation accuracy" if proxy == "train" else f"{proxy} score"))
    ax.set_title(f"{study.study_name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fmt = Path(path).suffix[1:].lower() or None
        fig.savefig(buf, format=fmt)
    except ValueError as exc:  # an extension matplotlib has no writer for
        raise StorageError(f"cannot write the plot to {path}: {str(exc).splitlines()[0]}") from None
    finally:
        plt.close(fig)
    _write_whole(Path(path), buf.getvalue())


#: a summary row's value key -> its 95% interval key (the score of the training proxy is its accuracy)
_INTERVAL = {**dict(NOISY.values()), "score": "accuracy_ci"}


def _bars(rows: list[dict], key: str) -> list[list[float]] | None:
    """Asymmetric error bars (below, above) for matplotlib; None where no row has an interval."""
    ci_key = _INTERVAL.get(key)
    if ci_key is None or not any(r.get(ci_key) for r in rows):
        return None
    lo = [r[key] - r[ci_key][0] if r.get(ci_key) else 0.0 for r in rows]
    hi = [r[ci_key][1] - r[key] if r.get(ci_key) else 0.0 for r in rows]
    return [[max(v, 0.0) for v in lo], [max(v, 0.0) for v in hi]]


def _write_whole(path: Path, data: bytes) -> None:
    """The whole file or none: a full disk leaves no truncated picture (nor a former one spoilt)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write the plot to {path}: {os_problem(exc, path.parent)}") from None
