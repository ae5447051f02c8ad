"""Reading a finished (or running) study: its Pareto front, as a table, JSON or a plot."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from nasconv.errors import StorageError
from nasconv.storage import NasconvTables, open_storage, safe_url


def load_study(name: str, storage_url: str) -> tuple[optuna.Study, NasconvTables]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, tables = open_storage(storage_url, heartbeat=False)
    names = optuna.study.get_all_study_names(storage)
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise StorageError(f"no study {name!r} in {safe_url(storage_url)}; studies there: {known}")
    return optuna.load_study(study_name=name, storage=storage), tables


def first_per_architecture(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials in number order, an architecture once: a repeat (served from the evaluation
    cache, with the first one's values) would list the same network twice on a front."""
    seen: set[str] = set()
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        h = t.user_attrs.get("arch_hash")
        if h is not None and h in seen:
            continue
        if h is not None:
            seen.add(h)
        out.append(t)
    return out


def study_front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Feasible, evaluated, Pareto-optimal trials (Optuna's best_trials honours constraints),
    one per architecture."""
    return first_per_architecture(
        [t for t in study.best_trials if t.user_attrs.get("status") in ("evaluated", "cached")])


def study_summary(study: optuna.Study, tables: NasconvTables) -> dict[str, Any]:
    from nasconv.search import trial_summary

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    snaps = tables.snapshots(study.study_name)
    return {
        "study": study.study_name,
        "space": study.user_attrs.get("space"),
        "budget": study.user_attrs.get("budget"),
        "objectives": study.user_attrs.get("objectives"),
        "evaluated": sum(1 for t in complete if t.user_attrs.get("status") in ("evaluated", "cached")),
        "rejected": sum(1 for t in complete if t.user_attrs.get("status") == "rejected"),
        "failed": sum(1 for t in trials if t.state == TrialState.FAIL),
        "running": sum(1 for t in trials if t.state == TrialState.RUNNING),
        "hypervolume": snaps[-1].hypervolume if snaps else 0.0,
        "baseline": study.user_attrs.get("baseline"),
        "front": [trial_summary(t) for t in study_front(study)],
    }


def front_table(front: list[dict[str, Any]], baseline: dict[str, Any] | None = None) -> str:
    from nasconv._table import render_table
    from nasconv.budget import format_count

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    rows = [[f["trial"], f["ops"], format_count(f["macs"]), format_count(f["params"]), fmt(f["latency_ms"], ".2f"),
             fmt(f["accuracy"] if f["accuracy"] is not None else f["score"], ".4f")] for f in front]
    if baseline:
        rows.append(["baseline", "standard everywhere", format_count(baseline["macs"]),
                     format_count(baseline["params"]), fmt(baseline.get("latency_ms"), ".2f"),
                     fmt(baseline.get("accuracy") if baseline.get("accuracy") is not None else baseline.get("score"),
                         ".4f")])
    return render_table(["trial", "operator per stage", "MACs", "params", "latency ms", "accuracy"], rows,
                        align="llrrrr")


def plot_front(study: optuna.Study, path: str) -> None:
    """Accuracy vs latency (or the study's first two objectives): all trials, the front, the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = study.user_attrs.get("objectives") or ["accuracy", "latency"]
    keys = {"accuracy": "score", "latency": "latency_ms", "macs": "macs", "params": "params"}
    xo, yo = (objectives[1], objectives[0]) if len(objectives) > 1 else ("macs", objectives[0])
    xk, yk = keys[xo], keys[yo]
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("status") in ("evaluated", "cached")]
    front = study_front(study)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    ax.scatter([t.user_attrs.get(xk) for t in done], [t.user_attrs.get(yk) for t in done], s=18, c="0.6",
               label=f"evaluated ({len(done)})")
    pts = sorted((t.user_attrs.get(xk), t.user_attrs.get(yk)) for t in front)
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", c="tab:red", label=f"Pareto front ({len(pts)})")
    base = study.user_attrs.get("baseline") or {}
    if base.get(xk) is not None and base.get(yk) is not None:
        ax.scatter([base[xk]], [base[yk]], marker="*", s=220, c="tab:blue", label="baseline (all standard)",
                   zorder=5)
    ax.set_xlabel({"latency": "latency (ms)", "macs": "MACs", "params": "parameters"}.get(xo, xo))
    proxy = (study.user_attrs.get("eval_config") or {}).get("proxy", "train")
    ax.set_ylabel(yo if yo != "accuracy" else ("validation accuracy" if proxy == "train" else f"{proxy} score"))
    ax.set_title(f"{study.study_name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise StorageError(f"cannot write the plot to {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
