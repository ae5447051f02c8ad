"""The study report as one self-contained HTML file: inline CSS and SVG plots, no script, no network."""

from __future__ import annotations

import html
from typing import Any, Sequence

from nasconv.budget import format_count
from nasconv.results.plot import effects_figure, figure_bytes, hypervolume_figure

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em;margin-bottom:0}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td.l,th.l{text-align:left}tr.baseline td{background:#f3f6fb}.answer{background:#f7f7f2;border-left:4px solid #c93;
padding:.6em 1em}.muted{color:#777}.resolved{font-weight:bold}figure{margin:.8em 0}svg{max-width:100%;height:auto}
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _num(v: Any, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


def _ci(v: Any, ci: Sequence[float] | None, spec: str) -> str:
    if v is None:
        return "-"
    return f"{format(v, spec)} [{format(ci[0], spec)}, {format(ci[1], spec)}]" if ci else format(v, spec)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1, row_class: Sequence[str] = ()) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = []
    for j, r in enumerate(rows):
        cls = f' class="{row_class[j]}"' if j < len(row_class) and row_class[j] else ""
        body.append(f"<tr{cls}>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>'
                                            for i, c in enumerate(r)) + "</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def svg_of(fig: Any) -> str:
    """A matplotlib figure as inline SVG (text as paths: no font needed to view it)."""
    text = figure_bytes(fig, "svg").decode()
    return text[text.index("<svg"):]


def effect_panels(effects: dict[str, Any]) -> list[dict[str, Any]]:
    """The heat map's cells: per objective, each estimated stage x family effect."""
    panels = []
    for name, fit in (effects.get("objectives") or {}).items():
        if fit.get("reason") or not fit.get("effects"):
            continue
        cells = [{"stage": e["stage"], "family": e["family"], "better": fit["better"] * e["estimate"],
                  "resolved": e["resolved"],
                  "text": f"{e['estimate']:+.2g}\n[{e['ci'][0]:.2g}, {e['ci'][1]:.2g}]\nn={e['n']}"}
                 if e.get("estimate") is not None else
                 {"stage": e["stage"], "family": e["family"], "better": None, "resolved": False,
                  "text": "no part\nin the table" if e.get("missing") else f"not\nidentifiable\nn={e['n']}"}
                 for e in fit["effects"]]
        label = f", {fit['label']}" if fit.get("label") else ""
        panels.append({"title": f"effect on {name} ({fit['unit']}{label}) relative to the stage's reference; "
                                f"95% intervals; coloured only where resolved (excludes 0): blue = better; "
                                f"grey hatched = not resolved",
                       "stages": effects["stages"], "families": effects["families"],
                       "references": effects["references"], "cells": cells})
    return panels


def _effects_table(effects: dict[str, Any]) -> str:
    fits = effects.get("objectives") or {}
    head = ["stage", "family", "candidates"] + [f"{n} effect ({f['unit']}) [95%]" + (f", {f['label']}" if f.get(
        "label") else "") for n, f in fits.items()] + [
        "on the front"]
    rows = []
    for s, stage in enumerate(effects.get("stages", [])):
        counts = effects["counts"][s]
        # a latency table gives effects for families no candidate used too
        fams = set(counts) | {e["family"] for f in fits.values() for e in f.get("effects", []) if e["stage"] == s}
        for fam in sorted(fams, key=lambda f: (f != effects["references"][s], -counts.get(f, 0), f)):
            row = [_e(stage), _e(fam), str(counts.get(fam, 0))]
            for fit in fits.values():
                e = next((x for x in fit.get("effects", []) if x["stage"] == s and x["family"] == fam), None)
                if fam == effects["references"][s]:
                    row.append('<span class="muted">reference</span>')
                elif e is None:
                    row.append('<span class="muted">not estimated</span>')
                elif e.get("missing"):
                    row.append(f'<span class="muted">no part in the latency table (e.g. {_e(e["missing"][0])})</span>')
                elif e.get("estimate") is None:
                    twins = ", ".join(f"stage {t[0] + 1} {t[1]}" for t in e.get("confounded_with") or [])
                    row.append('<span class="muted">not identifiable'
                               + (f" (confounded with {_e(twins)})" if twins else " from these candidates") + "</span>")
                else:
                    text = _ci(e["estimate"], e["ci"], "+.3g")
                    row.append(f'<span class="resolved">{text}</span>' if e["resolved"] else text)
            row.append("yes" if fam in effects["on_front"][s] else "")
            rows.append(row)
    return _table(head, rows, left=2)


def render_html(report: dict[str, Any], front_svg: str) -> str:
    """The report's HTML; ``front_svg`` is the front plot (:func:`nasconv.results.plot.front_figure`)."""
    st, c, tm = report["settings"], report["counts"], report["time"]
    eff = report["effects"]
    out = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>nasconv report: {_e(report['study'])}"
           f"</title><style>{CSS}</style></head><body>",
           f"<h1>Which convolution where: {_e(report['study'])}</h1>",
           f"<p class=muted>nasconv report, generated {_e(report['generated'])}"
           + (f" from {_e(report['storage'])}" if report.get("storage") else "") + "</p>",
           "<h2>What this study says</h2>",
           '<div class="answer" id="answer">' + "".join(f"<p>{_e(s)}</p>" for s in report["claims"]["sentences"])
           + "</div>"]
    out += _trust_html(report.get("screening_trust"))
    panels = effect_panels(eff)
    out.append("<h2>Per stage and operator family</h2>")
    note = (f"Fitted over {eff.get('candidates', 0)} evaluated candidates at rung {eff.get('rung', 0)}"
            + (" and the baseline" if eff.get("with_baseline") else "")
            + ": an additive model of each objective over stages (depth and width terms where the space varies "
              "them), effects relative to each stage's reference with 95% Bayesian-ridge intervals "
              "(nasconv.results.effects).")
    out.append(f"<p>{_e(note)}</p>")
    for name, fit in (eff.get("objectives") or {}).items():
        if fit.get("reason"):
            out.append(f"<p class=muted>{_e(name)}: not estimated: {_e(fit['reason'])}</p>")
        elif fit.get("note"):
            out.append(f"<p>{_e(fit['note'])}</p>")
    if panels:
        out.append(f'<figure id="heatmap">{svg_of(effects_figure(panels))}</figure>')
    out.append(_effects_table(eff))
    out += _screened_html(report.get("screened_effects"))
    out += ["<h2>The front</h2>", _front_table(report), f'<figure id="front-plot">{front_svg}</figure>']
    if report.get("noise_line"):
        out.append(f"<p><b>What the noise allows:</b> {_e(report['noise_line'])}</p>")
    hv, ci = report["hypervolume"], report.get("hypervolume_ci")
    out += ["<h2>Hypervolume over trials</h2>",
            f"<p>Final hypervolume {_ci(hv, ci, '.4g')}"
            + (" (95% interval from re-drawing every candidate's measured objectives within their noise)" if ci
               else " (no interval: the objectives carry none)") + ".</p>"]
    if report["hypervolume_history"]:
        out.append(f'<figure id="hv-plot">{svg_of(hypervolume_figure(report["hypervolume_history"], ci))}</figure>')
    out += ["<h2>Parameter importance (Optuna)</h2>", _importance(report["importance"])]
    if (report.get("screened_effects") or {}).get("importance"):
        out.append(f"<p class=muted>Screened candidates: {_e(report['screened_effects']['importance'])}.</p>")
    out += ["<h2>The study</h2>", _settings(st), _counts(c, tm), "</body></html>"]
    return "\n".join(out)


def _front_table(report: dict[str, Any]) -> str:
    rows, classes = [], []
    members = list(report["front"]) + ([dict(report["baseline"], trial="baseline", ops="standard everywhere")]
                                       if report.get("baseline") else [])
    for f in members:
        acc = _ci(f.get("accuracy"), f.get("accuracy_ci"), ".4f") if f.get("accuracy") is not None \
            else _num(f.get("score"))
        rows.append([_e(f["trial"]), _e(f.get("ops")), format_count(f["macs"]) if f.get("macs") else "-",
                     format_count(f["params"]) if f.get("params") else "-",
                     _ci(f.get("latency_ms"), f.get("latency_ci_ms"), ".3f"), acc, _e(f.get("rung", "-"))])
        classes.append("baseline" if f["trial"] == "baseline" else "")
    return _table(["trial", "operator per stage", "MACs", "params", "latency ms [95%]", "accuracy [95%]", "rung"],
                  rows, left=2, row_class=classes)


def _importance(imp: dict[str, Any]) -> str:
    out = []
    for name, info in imp.items():
        if info.get("reason"):
            out.append(f"<p class=muted>{_e(name)}: {_e(info['reason'])}</p>")
            continue
        rows = [[_e(p["param"]), _ci(p["importance"], p.get("ci"), ".3f")] for p in info["params"]]
        how = info.get("interval") or "95% bootstrap intervals"
        out.append(f"<p>{_e(name)}: {_e(info['evaluator'])} over {info['n']} candidates; intervals {_e(how)}</p>"
                   + _table(["parameter", "importance [95%]"], rows))
    return "".join(out)


def _settings(st: dict[str, Any]) -> str:
    train = ", ".join(f"{k} {v}" for k, v in (st.get("train") or {}).items() if v is not None)
    fid = st.get("fidelity") or {}
    rows = [["space", st.get("space")], ["budget", st.get("budget")],
            ["objectives", ", ".join(st.get("metric_names") or [])], ["sampler", f"{st.get('sampler')} (seed "
                                                                      f"{st.get('seed')})"],
            ["data", st.get("data_read") or st.get("data_choice") or st.get("data")],
            ["metric", st.get("metric") or "accuracy"], ["proxy", f"{st.get('proxy')}: {train}"],
            ["fidelity", f"{fid.get('rungs', 1)} rung(s)" + (f", eta {fid['eta']}" if fid.get("eta") else "")],
            ["latency", f"batch {st['latency'].get('batch')}, resolution "
                        f"{st['latency'].get('resolution') or 'of the space'}"],
            ["devices", ", ".join(st.get("devices") or []) or "-"],
            ["precision", ", ".join(st.get("precisions") or [])],
            ["nodes", ", ".join(st.get("nodes") or [])], ["nasconv", st.get("nasconv_version")]]
    return _table(["setting", "value"], [[_e(a), _e(b)] for a, b in rows], left=2)


def _counts(c: dict[str, Any], tm: dict[str, Any]) -> str:
    rows = [[k.replace("_", " "), str(c[k])] for k in ("trials", "evaluated", "cached", "promoted", "repeats",
                                                       "rejected_over_budget", "failed", "running", "waiting")]
    rows += [[f"failed: {_e(reason)}", str(n)] for reason, n in c["failed_reasons"].items()]
    rows += [["wall time", f"{_num(tm.get('wall_s'), '.0f')} s ({_e(tm.get('first_start'))} to "
                           f"{_e(tm.get('last_complete'))})"],
             ["evaluation time", f"{tm['evaluation_s']:.0f} s over {tm['evaluations']} evaluations"]]
    return _table(["count", "value"], rows)


def _trust_html(trust: dict[str, Any] | None) -> list[str]:
    """One-shot screening's trust (:mod:`nasconv.results.trust`); nothing for a study not screened."""
    if not trust:
        return []
    cls = "answer" if trust["weak"] else ""
    return ["<h2>One-shot screening: how far to trust it</h2>",
            f'<p id="screening-trust" class="{cls}"><b>{_e(trust["verdict"])}:</b> {_e(trust["line"])}</p>',
            f"<p class=muted>Spearman's rho between the supernet's accuracy and the stand-alone (rung 0) accuracy "
            f"of the candidates trained both ways; interval: {_e(trust['interval'])}. Weak when fewer than 4 "
            "candidates were trained both ways, the interval reaches 0, or a two-sided permutation test of rho "
            "gives p above 0.05 (a bootstrap over a handful of candidates is too narrow).</p>"]


def _screened_html(screened: dict[str, Any] | None) -> list[str]:
    """The effects fitted over the screened candidates, beside the stand-alone table above."""
    if not screened:
        return []
    out = [f'<h3 id="screened-effects">{_e(screened["label"])}</h3>',
           f"<p>The same model fitted over the {screened['candidates']} feasible candidates the supernet scored "
           "(one per architecture), with the same reference per stage. Their accuracy is the supernet's, not a "
           "trained network's: read it with the screening trust above.</p>"]
    for name, agree in (screened.get("agreement") or {}).items():
        out.append(f"<p><b>{_e(name)}:</b> {_e(agree['line'])}.</p>")
    for name, fit in (screened.get("objectives") or {}).items():
        if fit.get("reason"):
            out.append(f"<p class=muted>{_e(name)} (one-shot): not estimated: {_e(fit['reason'])}</p>")
    if screened.get("objectives"):
        out.append(_effects_table(screened))
    return out
