"""nasconv's pictures, one module for ``nasconv pareto --plot`` and ``nasconv report``: the front
(every evaluated trial, the front with 95% error bars, the baseline), the hypervolume over trials,
and the stage x family heat map of effects."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from nasconv.errors import StorageError
from nasconv.paths import os_problem
from nasconv.results.noise import NOISY
from nasconv.results.rungs import at_rungs, study_front
from nasconv.results.summary import baseline_summary, trial_summary, val_images_of
from nasconv.storage import RungResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_front(study: optuna.Study, path: str, rows: Sequence[RungResult] = ()) -> None:
    """Accuracy vs latency (or the study's first two objectives): all trials, the front (with a
    multi-fidelity study's ``rows``, at the highest rung reached), the baseline."""
    save_figure(front_figure(study, rows), path)


def front_figure(study: optuna.Study, rows: Sequence[RungResult] = ()) -> Any:
    """The figure :func:`plot_front` writes."""
    plt = _pyplot()
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
    return fig


def hypervolume_figure(history: Sequence[dict[str, Any]], final_ci: Sequence[float] | None = None) -> Any:
    """Hypervolume of the front after each completed trial; the final value's 95% interval as a bar."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    xs = [h["n_complete"] for h in history]
    ax.step(xs, [h["hypervolume"] for h in history], where="post", c="tab:red", label="hypervolume")
    if final_ci and xs:
        hv = history[-1]["hypervolume"]
        ax.errorbar([xs[-1]], [hv], yerr=[[max(hv - final_ci[0], 0.0)], [max(final_ci[1] - hv, 0.0)]], fmt="o",
                    c="tab:red", capsize=4, label="final, 95% interval (measurement noise)")
    ax.set_xlabel("completed trials")
    ax.set_ylabel("hypervolume")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def effects_figure(panels: Sequence[dict[str, Any]]) -> Any:
    """One heat map per objective: rows = stages, columns = families; colour = effect relative to
    the stage's reference (blue = better), text = estimate and 95% interval; unresolved effects
    (interval includes zero) pale, cells without candidates empty."""
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 + 1.0 * max(len(p["stages"]) for p in panels)
                                                         * len(panels)), dpi=110, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        stages, families = panel["stages"], panel["families"]
        grid = np.full((len(stages), len(families)), np.nan)
        for cell in panel["cells"]:
            grid[cell["stage"], families.index(cell["family"])] = cell["better"]
        bound = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
        ax.imshow(np.where(np.isnan(grid), 0.0, grid), cmap="RdBu", aspect="auto",
                  norm=TwoSlopeNorm(0.0, -bound or -1.0, bound or 1.0), alpha=0.9)
        for cell in panel["cells"]:
            r, c = cell["stage"], families.index(cell["family"])
            if not cell["resolved"]:
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, color="white", alpha=0.65, lw=0))
            ax.text(c, r, cell["text"], ha="center", va="center", fontsize=7,
                    fontweight="bold" if cell["resolved"] else "normal")
        for r, ref in enumerate(panel["references"]):
            if ref in families:
                ax.text(families.index(ref), r, "reference", ha="center", va="center", fontsize=7, color="0.4")
        ax.set_xticks(range(len(families)), families, fontsize=8)
        ax.set_yticks(range(len(stages)), stages, fontsize=8)
        ax.set_title(panel["title"], fontsize=9)
    fig.tight_layout()
    return fig


def figure_bytes(fig: Any, fmt: str) -> bytes:
    """The figure in ``fmt`` (svg, png...); the figure is closed."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt)
    finally:
        plt.close(fig)
    return buf.getvalue()


def save_figure(fig: Any, path: str) -> None:
    """Write the whole file or nothing, in the format its extension names."""
    try:
        data = figure_bytes(fig, Path(path).suffix[1:].lower() or "png")
    except ValueError as exc:  # an extension matplotlib has no writer for
        raise StorageError(f"cannot write the plot to {path}: {str(exc).splitlines()[0]}") from None
    write_whole(Path(path), data, "the plot")


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


def write_whole(path: Path, data: bytes, what: str = "the file") -> None:
    """The whole file or none: a full disk leaves no truncated file (nor a former one spoilt)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {what} to {path}: {os_problem(exc, path.parent)}") from None
