"""The HTML report's performance part: is the model likely worse, by how much, and where in the survey.

Rendered from the report alone, like the rest of :mod:`seismic.monitoring.reports.html_report`: per window
the label-free (CBPE) accuracy and macro-F1 with their 5-95 % band and the drop against the reference
(flagged beyond the learnt threshold), the realised metrics where late labels came back and how many rows
they cover; a plot of both over time; and the spatial maps a batch-scoring run wrote
(``report["meta"]["maps"]``: PNG paths, embedded so the file stays self-contained).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cell(perf: Mapping[str, Any], kind: str, metric: str) -> str:
    values, judged = perf.get(kind), (perf.get("judged") or {}).get(kind)
    if not values:
        return "<td>-</td>"
    text = _pct(values[metric])
    band = (values.get("band") or {}).get(metric)
    if band:
        text += f" [{band[0]:.3f}, {band[1]:.3f}]"
    if judged and judged["dropped"][metric]:
        return f"<td class='hit'>{text} DROP {judged['drop'][metric]:.3f}</td>"
    return f"<td>{text}</td>"


def performance_table(windows: list[Mapping[str, Any]]) -> str:
    rows = [
        "<tr><th>window</th><th>est. accuracy [5-95 %]</th><th>est. macro-F1 [5-95 %]</th>"
        "<th>labelled rows</th><th>realised accuracy</th><th>realised macro-F1</th></tr>"
    ]
    for i, w in enumerate(windows):
        perf = w["window"].get("performance")
        if not perf:
            continue
        rows.append(
            f"<tr><td style='text-align:left'>{html.escape(str(w['window'].get('id', i)))}</td>"
            f"{_cell(perf, 'estimated', 'accuracy')}{_cell(perf, 'estimated', 'macro_f1')}"
            f"<td>{perf['labelled_rows']} ({perf['labelled_fraction']:.0%})</td>"
            f"{_cell(perf, 'realised', 'accuracy')}{_cell(perf, 'realised', 'macro_f1')}</tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def performance_plot(windows: list[Mapping[str, Any]], png) -> str:  # type: ignore[no-untyped-def]
    entries = [
        (i, w["window"]["performance"]) for i, w in enumerate(windows) if w["window"].get("performance")
    ]
    if not entries:
        return ""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3), sharex=True)
    for ax, metric in zip(axes, ("accuracy", "macro_f1"), strict=True):
        x = [i for i, _ in entries]
        est = [p["estimated"][metric] for _, p in entries]
        ax.plot(x, est, "o-", label="estimated (CBPE)")
        bands = [(p["estimated"].get("band") or {}).get(metric) for _, p in entries]
        if all(bands):
            ax.fill_between(x, [b[0] for b in bands], [b[1] for b in bands], alpha=0.2, label="5-95 % band")
        real = [(i, p["realised"][metric]) for i, p in entries if p.get("realised")]
        if real:
            ax.plot(*zip(*real, strict=True), "s", color="k", label="realised (late labels)")
        ref = entries[0][1]["reference"]["estimated"][metric]
        limit = ref - entries[0][1]["max_drop"]["estimated"][metric]
        ax.axhline(ref, color="grey", lw=1, label="reference")
        ax.axhline(limit, color="red", lw=1, ls="--", label="alert below")
        ax.set_title(metric)
        ax.set_xlabel("window")
    axes[0].legend(fontsize=7)
    return png(fig)


def maps_section(paths: list[str] | None) -> str:
    """Embedded PNG maps (a missing file is named, not an error: the report is still worth reading)."""
    parts = []
    for path in paths or []:
        p = Path(path)
        if not p.is_file():
            parts.append(f"<p>map {html.escape(path)}: file not found</p>")
            continue
        data = base64.b64encode(p.read_bytes()).decode()
        parts.append(f"<figure><img src='data:image/png;base64,{data}'><figcaption>{html.escape(p.name)}"
                     "</figcaption></figure>")  # fmt: skip
    return "".join(parts)


def performance_html(report: Mapping[str, Any], png) -> list[str]:  # type: ignore[no-untyped-def]
    """The section's HTML parts (none when the report has no performance data and no maps)."""
    windows = report["windows"]
    parts: list[str] = []
    if any(w["window"].get("performance") for w in windows):
        parts += [
            "<h2 id='performance'>Model performance</h2>",
            "<p>Estimated: CBPE from the calibrated probabilities (no labels); realised: on the late labels "
            "that came back. DROP: fell below the reference by more than the variation between parts of the "
            "reference.</p>",
            performance_table(windows),
            performance_plot(windows, png),
        ]
    maps = (report.get("meta") or {}).get("maps")
    if maps:
        parts += ["<h2 id='maps'>Where not to trust the model</h2>", maps_section(list(maps))]
    return parts
