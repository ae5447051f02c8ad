"""nasconv's pictures, one module for ``nasconv pareto --plot`` and ``nasconv report``: the front
(every evaluated trial, the front with 95% error bars, the baseline), the hypervolume over trials,
and the stage x family heat map of effects."""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from nasconv.errors import StorageError
from nasconv.outputs import write_output_file
from nasconv.results.noise import NOISY
from nasconv.results.rungs import at_rungs, study_front
from nasconv.results.summary import baseline_summary, trial_summary, val_images_of
from nasconv.storage import RungResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_front(study: optuna.Study, path: str, rows: Sequence[RungResult] = (), *, force: bool = True) -> None:
    """Accuracy vs latency (or the study's first two objectives): all trials, the front (with a
    multi-fidelity study's ``rows``, at the highest rung reached), the baseline. An existing file
    at ``path`` is replaced only with ``force``, anything but a regular file never
    (:mod:`nasconv.outputs`)."""
    save_figure(front_figure(study, rows), path, force=force)


@functools.lru_cache(maxsize=1)
def _font_charmap() -> frozenset[int]:
    """The code points the default font draws (empty where it cannot be read: nothing is escaped)."""
    try:
        from matplotlib.font_manager import FontProperties, findfont
        from matplotlib.ft2font import FT2Font

        return frozenset(FT2Font(findfont(FontProperties())).get_charmap())
    except Exception:  # pragma: no cover - a matplotlib without FreeType access
        return frozenset()


def drawable(text: str) -> str:
    """``text`` as the default font can draw it: a character it has no glyph for (CJK, emoji, a
    control character) is written as its escape (``\\u6570``) rather than drawn as an empty box."""
    charmap = _font_charmap()
    if not charmap:
        return text
    return "".join(ch if ord(ch) in charmap and ch.isprintable() else ascii(ch)[1:-1] for ch in text)


@contextlib.contextmanager
def _no_glyph_warnings() -> Iterator[None]:
    """Matplotlib's missing-glyph warnings, one per character and drawing, are not the user's
    business: :func:`drawable` already chose what is drawn."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        yield


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
    ax.set_title(drawable(study.study_name), parse_math=False)  # a "$" in a name is not TeX
    ax.grid(alpha=0.3)
    ax.legend()
    with _no_glyph_warnings():
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
    the stage's reference (blue = better), scaled to the largest resolved one, for resolved effects
    only; an unresolved (interval includes zero) or unidentifiable cell is pale grey and hatched
    whatever its estimate (a colour would show a pattern the intervals deny); cells without
    candidates empty. Text = estimate and 95% interval."""
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 + 1.0 * max(len(p["stages"]) for p in panels)
                                                         * len(panels)), dpi=110, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        stages, families = panel["stages"], panel["families"]
        grid = resolved_grid(panel)
        bound = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
        cmap = plt.get_cmap("RdBu").with_extremes(bad=(1.0, 1.0, 1.0, 0.0))  # not coloured: transparent
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto",
                  norm=TwoSlopeNorm(0.0, -bound or -1.0, bound or 1.0), alpha=0.9)
        for cell in panel["cells"]:
            r, c = cell["stage"], families.index(cell["family"])
            if not cell["resolved"]:
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=UNRESOLVED_FACE, edgecolor="0.8",
                                           hatch="//", lw=0, gid="unresolved"))
            ax.text(c, r, cell["text"], ha="center", va="center", fontsize=7,
                    fontweight="bold" if cell["resolved"] else "normal")
        for r, ref in enumerate(panel["references"]):
            if ref in families:
                ax.text(families.index(ref), r, "reference", ha="center", va="center", fontsize=7, color="0.4")
        ax.set_xticks(range(len(families)), [drawable(f) for f in families], fontsize=8)
        ax.set_yticks(range(len(stages)), [drawable(s) for s in stages], fontsize=8)
        ax.set_title(drawable(panel["title"]), fontsize=9, parse_math=False)
    with _no_glyph_warnings():
        fig.tight_layout()
    return fig


#: the face of a heat-map cell whose effect is not resolved (pale grey, hatched)
UNRESOLVED_FACE = "0.94"


def resolved_grid(panel: dict[str, Any]) -> np.ndarray:
    """The heat map's colour values: each resolved cell's effect (positive = better), NaN (not
    coloured) everywhere else."""
    families = panel["families"]
    grid = np.full((len(panel["stages"]), len(families)), np.nan)
    for cell in panel["cells"]:
        if cell["resolved"] and cell.get("better") is not None:
            grid[cell["stage"], families.index(cell["family"])] = cell["better"]
    return grid


def figure_bytes(fig: Any, fmt: str) -> bytes:
    """The figure in ``fmt`` (svg, png...); the figure is closed."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        with _no_glyph_warnings():
            fig.savefig(buf, format=fmt)
    finally:
        plt.close(fig)
    return buf.getvalue()


def save_figure(fig: Any, path: str, *, force: bool = True) -> None:
    """Write the whole file or nothing, in the format its extension names; an existing file is
    replaced only with ``force``, anything but a regular file never (:mod:`nasconv.outputs`)."""
    try:
        data = figure_bytes(fig, Path(path).suffix[1:].lower() or "png")
    except ValueError as exc:  # an extension matplotlib has no writer for
        raise StorageError(f"cannot write the plot to {path}: {str(exc).splitlines()[0]}") from None
    write_whole(Path(path), data, "the plot", force=force)


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


def write_whole(path: Path, data: bytes, what: str = "the file", *, force: bool = True) -> None:
    """The whole file or none: a full disk leaves no truncated file (nor a former one spoilt);
    :func:`nasconv.outputs.write_output_file`'s rule for what may be replaced."""
    write_output_file(path, data, force=force, what=what)
