"""The HTML drift report, rendered from the JSON report alone (so either can be regenerated from the other).

One self-contained file (plots are inline PNGs): the summary verdict on top, a table of windows, drift
scores over time, then for the windows that drifted (the latest few) the per-feature table, reference-vs-
current histograms of the drifted features and the PCA projection of the embeddings (reference axes).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt

from seismic.io.atomic import atomic_file
from seismic.monitoring.reports.json_report import validate_report
from seismic.monitoring.reports.performance_html import performance_html

_MAX_DETAILED_WINDOWS = 3
_MAX_HISTOGRAMS = 12
_STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#eee}
.verdict{font-size:1.4em;padding:.6em 1em;border-radius:6px;display:inline-block}
.drift{background:#f8d7da;color:#721c24}.ok{background:#d4edda;color:#155724}
.insufficient_data{background:#fff3cd;color:#856404}td.hit{background:#f8d7da}img{max-width:100%}"""


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value))


def _window_id(w: Mapping[str, Any], i: int) -> str:
    return str(w["window"].get("id", i))


def _scores(w: Mapping[str, Any]) -> dict[str, float]:
    """Effect / threshold per family (>= 1 with significance is drift): the curves of the time plot."""
    out: dict[str, float] = {}
    feats = w["raw"]["features"]
    ratios = [
        f["tests"][f["gate"]]["effect_size"] / f["tests"][f["gate"]]["threshold"]
        for f in feats
        if f["tests"][f["gate"]]["effect_size"] is not None and f["tests"][f["gate"]]["threshold"]
    ]
    if ratios:
        out["raw (max feature)"] = max(ratios)
    for family, test in (
        ("predictions", "js"),
        ("predictions", "share"),
        ("embedding", "mmd"),
        ("embedding", "classifier"),
    ):
        t = (w.get(family) or {}).get("tests", {}).get(test)
        if t and t["effect_size"] is not None and t["threshold"]:
            value = t["effect_size"]
            if test == "classifier":  # AUC: distance above chance relative to the threshold's
                out[f"{family} {test}"] = (value - 0.5) / max(t["threshold"] - 0.5, 1e-9)
            else:
                out[f"{family} {test}"] = value / t["threshold"]
    return out


def _time_plot(windows: list[Mapping[str, Any]]) -> str:
    series: dict[str, list[float]] = {}
    ok = [w for w in windows if w["status"] == "ok"]
    for i, w in enumerate(ok):
        for key, value in _scores(w).items():
            series.setdefault(key, [float("nan")] * len(ok))[i] = value
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for key, values in series.items():
        ax.plot(range(len(ok)), values, marker="o", label=key)
    ax.axhline(1.0, color="k", ls="--", lw=1, label="threshold")
    ax.set_xticks(range(len(ok)), [_window_id(w, i) for i, w in enumerate(ok)], rotation=45, ha="right")
    ax.set_ylabel("effect / threshold")
    ax.set_title("Drift scores over time")
    ax.legend(fontsize=8)
    return _png(fig)


def _histograms(features: list[Mapping[str, Any]]) -> str:
    feats = [f for f in features if f.get("histogram")][:_MAX_HISTOGRAMS]
    if not feats:
        return ""
    cols = min(4, len(feats))
    rows = -(-len(feats) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat[len(feats) :]:
        ax.set_visible(False)
    for ax, f in zip(axes.flat, feats, strict=False):
        h = f["histogram"]
        for key, colour in (("reference", "tab:blue"), ("current", "tab:red")):
            counts = h[key]
            total = max(1, sum(counts))
            ax.stairs(
                [c / total for c in counts],
                h["edges"],
                label=key,
                color=colour,
                fill=key == "reference",
                alpha=0.5,
            )
        ax.set_title(f["name"], fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    return "<h3>Reference vs current: drifted features</h3>" + _png(fig)


def _projection(embedding: Mapping[str, Any] | None) -> str:
    proj = (embedding or {}).get("projection")
    if not proj:
        return ""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for key, colour in (("reference", "tab:blue"), ("current", "tab:red")):
        pts = proj[key]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=5, alpha=0.5, c=colour, label=key)
    ax.set_xlabel("PC 1 (reference)")
    ax.set_ylabel("PC 2 (reference)")
    ax.legend(fontsize=8)
    ax.set_title("Embeddings, PCA projection")
    return "<h3>Embedding projection</h3>" + _png(fig)


def _feature_table(features: list[Mapping[str, Any]]) -> str:
    head = "<tr><th>feature</th><th>drift</th>" + "".join(
        f"<th>{t}</th><th>{t} thr</th>" for t in ("ks", "wasserstein", "psi", "js")
    )
    rows = [head + "<th>KS p adj.</th></tr>"]
    for f in features:
        cells = [
            f"<td style='text-align:left'>{html.escape(f['name'])}</td>"
            f"<td>{'yes' if f['drifted'] else ''}</td>"
        ]
        for t in ("ks", "wasserstein", "psi", "js"):
            test = f["tests"][t]
            cls = " class='hit'" if test["drifted"] else ""
            cells.append(f"<td{cls}>{_fmt(test['effect_size'])}</td><td>{_fmt(test['threshold'])}</td>")
        cells.append(f"<td>{_fmt(f['tests']['ks']['p_adjusted'])}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _polarity_cell(polarity: Mapping[str, Any] | None) -> str:
    """Score (1 as the reference, -1 reversed); REVERSED when the check drifted, n/a when uninformative."""
    if not polarity or not polarity["informative"]:
        return "<td>n/a</td>"
    if polarity["drifted"]:
        return f"<td class='hit'>REVERSED {_fmt(polarity['score'])}</td>"
    return f"<td>{_fmt(polarity['score'])}</td>"


def _feature_rows_cell(w: Mapping[str, Any]) -> str:
    """Rows the feature tests saw; marked when too few for them (version 2 reports: not recorded)."""
    raw = (w.get("rows") or {}).get("raw")
    if raw is None:
        return "<td></td>"
    if "raw" in w.get("insufficient_families", ()):
        return f"<td class='insufficient_data'>{raw} (too few)</td>"
    return f"<td>{raw}</td>"


def _windows_table(windows: list[Mapping[str, Any]]) -> str:
    head = (
        "<tr><th>window</th><th>status</th><th>rows</th><th>rows with features</th><th>drift</th>"
        "<th>drifted features</th>"
        "<th>pred. JS</th><th>MMD^2</th><th>MMD p adj.</th><th>classifier AUC</th><th>polarity</th></tr>"
    )
    rows = [head]
    for i, w in enumerate(windows):
        pred = (w.get("predictions") or {}).get("tests", {})
        emb = (w.get("embedding") or {}).get("tests", {})
        cls = " class='hit'" if w["drifted"] else ""
        rows.append(
            f"<tr><td style='text-align:left'>{html.escape(_window_id(w, i))}</td><td>{w['status']}</td>"
            f"<td>{w['n_current']}</td>{_feature_rows_cell(w)}<td{cls}>{'DRIFT' if w['drifted'] else ''}</td>"
            f"<td style='text-align:left'>{html.escape(', '.join(w['raw']['drifted_features']))}</td>"
            f"<td>{_fmt(pred.get('js', {}).get('effect_size'))}</td>"
            f"<td>{_fmt(emb.get('mmd', {}).get('statistic'))}</td>"
            f"<td>{_fmt(emb.get('mmd', {}).get('p_adjusted'))}</td>"
            f"<td>{_fmt(emb.get('classifier', {}).get('statistic'))}</td>"
            f"{_polarity_cell(w.get('polarity'))}</tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def render_html(report: Mapping[str, Any]) -> str:
    validate_report(report)
    summary, windows = report["summary"], report["windows"]
    verdict = summary["verdict"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Drift report</title>",
        f"<style>{_STYLE}</style>",
        "</head><body><h1>Drift report</h1>",
        f"<div id='summary' class='verdict {verdict}'>Verdict: <b>{verdict.upper()}</b> - "
        f"{summary['n_drifted']} of {summary['n_windows']} windows drifted"
        f" ({summary['n_insufficient']} with too few rows)</div>",
        f"<p id='caveat'><b>Caveat:</b> {html.escape(summary['caveat'])}</p>" if "caveat" in summary else "",
        f"<p>Created {html.escape(report['created'])}; "
        f"schema {report['schema']} v{report['schema_version']}.</p>",
        "<h2 id='windows'>Windows</h2>",
        _windows_table(windows),
    ]
    if any(w["status"] == "ok" for w in windows):
        parts += ["<h2 id='over-time'>Drift scores over time</h2>", _time_plot(windows)]
    parts += performance_html(report, _png)
    detailed = [w for w in windows if w["drifted"]][-_MAX_DETAILED_WINDOWS:]
    if not detailed and windows:
        detailed = [windows[-1]]
    for w in detailed:
        i = windows.index(w)
        parts += [
            f"<h2 class='window-detail'>Window {html.escape(_window_id(w, i))}</h2>",
            _feature_table(w["raw"]["features"]) if w["raw"]["features"] else "",
            _histograms(w["raw"]["features"]),
            _projection(w.get("embedding")),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Render and write atomically; the file is self-contained (inline PNGs)."""
    text = render_html(report)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
