"""The support report as plots (matplotlib) and one self-contained HTML page (plots embedded as PNG).

Everything here draws the dict :func:`mmsupport.report.build_report` returns; nothing is computed again.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from matplotlib.figure import Figure

from mmsupport.report import RATES

_RATE_LABELS = {"resolution_rate": "resolved", "handoff_rate": "handed off", "no_match_rate": "no match (turns)",
                "thumbs_up_share": "thumbs up (votes)"}


def _error_bars(values: list, intervals: list) -> np.ndarray:
    low = [v - ci[0] if v is not None and ci else 0 for v, ci in zip(values, intervals)]
    high = [ci[1] - v if v is not None and ci else 0 for v, ci in zip(values, intervals)]
    return np.array([low, high])


def _grouped_bars(axes, groups: list[str], series: dict[str, tuple[list, list | None]]) -> None:
    """Bars for each of ``series`` (name -> (values, intervals or None)) side by side in each of ``groups``."""
    width = 0.8 / max(len(series), 1)
    for index, (name, (values, intervals)) in enumerate(series.items()):
        positions = np.arange(len(groups)) + (index - (len(series) - 1) / 2) * width
        heights = [value if value is not None else 0 for value in values]
        errors = _error_bars(values, intervals) if intervals else None
        axes.bar(positions, heights, width, yerr=errors, capsize=3, label=name)
    axes.set_xticks(np.arange(len(groups)), groups)
    if series:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot, not on a bar


def rates_figure(report: dict) -> Figure:
    """Resolution, hand-off, no-match and thumbs-up rates per variant, with 95% intervals."""
    figure = Figure(figsize=(9, 3.8), layout="constrained")
    axes = figure.subplots()
    variants = report["variants"]
    _grouped_bars(axes, [_RATE_LABELS[name] for name in RATES], {
        variant: ([figures[name] for name in RATES], [figures[f"{name}_ci"] for name in RATES])
        for variant, figures in variants.items()})
    axes.set_ylim(0, 1)
    axes.set_ylabel("share")
    axes.set_title("Rates per variant (95% Wilson intervals)")
    return figure


def frt_figure(report: dict) -> Figure:
    """Seconds to the first streamed token and to the full answer, p50 and p90, per variant."""
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    axes = figure.subplots()
    keys = ["frt_first_token_p50_s", "frt_first_token_p90_s", "frt_answer_p50_s", "frt_answer_p90_s"]
    labels = ["first token p50", "first token p90", "full answer p50", "full answer p90"]
    _grouped_bars(axes, labels, {variant: ([figures[key] for key in keys], None)
                                 for variant, figures in report["variants"].items()})
    axes.set_ylabel("seconds")
    axes.set_title("Response time per turn")
    return figure


def csat_figure(report: dict) -> Figure:
    """The share of each 1-5 rating per variant (the mean in the legend)."""
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    axes = figure.subplots()
    series = {}
    for variant, figures in report["variants"].items():
        total = figures["csat_n"] or 1
        mean = f"{figures['csat_mean']:.2f}" if figures["csat_mean"] is not None else "none"
        series[f"{variant} (mean {mean}, n={figures['csat_n']})"] = (
            [count / total for count in figures["csat_distribution"].values()], None)
    _grouped_bars(axes, ["1", "2", "3", "4", "5"], series)
    axes.set_xlabel("rating")
    axes.set_ylabel("share of rated sessions")
    axes.set_title("CSAT distribution")
    return figure


def confidence_figure(report: dict) -> Figure:
    """Resolution and hand-off by the session's weakest retrieval score, with the number of sessions per bucket."""
    figure = Figure(figsize=(9, 3.8), layout="constrained")
    axes = figure.subplots()
    buckets = report["confidence_buckets"]
    labels = [f"{row['bucket']}\n(n={row['sessions']})" for row in buckets]
    _grouped_bars(axes, labels, {
        "resolved": ([row["resolution_rate"] for row in buckets], [row["resolution_rate_ci"] for row in buckets]),
        "handed off": ([row["handoff_rate"] for row in buckets], None)})
    axes.set_ylim(0, 1)
    axes.set_xlabel("lowest retrieval score (top_score) in the session")
    axes.set_ylabel("share of sessions")
    axes.set_title("When to hand off: resolution by retrieval confidence")
    return figure


FIGURES = (rates_figure, frt_figure, csat_figure, confidence_figure)


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _number(value, kind: str = "") -> str:
    if value is None:
        return "–"
    if kind == "rate":
        return f"{value:.1%}"
    if kind == "p":
        return f"{value:.3g}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _interval(interval, kind: str) -> str:
    return f" <small>[{_number(interval[0], kind)}, {_number(interval[1], kind)}]</small>" if interval else ""


def _variants_table(report: dict) -> str:
    variants = report["variants"]
    rows = [("sessions", "sessions", "", None), ("turns", "turns", "", None)]
    rows += [(f"FRT {what} {q} (s)", f"frt_{key}_{q}_s", "", None) for key, what in
             (("first_token", "first token"), ("answer", "full answer")) for q in ("p50", "p90")]
    rows += [(_RATE_LABELS[name], name, "rate", f"{name}_ci") for name in RATES]
    rows += [("CSAT mean (1-5)", "csat_mean", "", "csat_mean_ci"), ("CSAT ratings", "csat_n", "", None)]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in variants)
    body = "".join(
        f"<tr><td>{label}</td>" + "".join(
            f"<td>{_number(figures[key], kind)}{_interval(figures.get(ci) if ci else None, kind)}</td>"
            for figures in variants.values()) + "</tr>" for label, key, kind, ci in rows)
    return f"<table><tr><th>metric</th>{head}</tr>{body}</table>"


def _comparisons_table(report: dict) -> str:
    body = "".join(
        f"<tr class='{'significant' if row['significant'] else ''}'><td>{html.escape(row['variant'])}</td>"
        f"<td class='text'>{html.escape(row['metric'])}</td>"
        f"<td>{_number(row['control_value'], 'rate' if row['metric'] in RATES else '')}</td>"
        f"<td>{_number(row['value'], 'rate' if row['metric'] in RATES else '')}</td>"
        f"<td class='text'>{html.escape(row['test'])}</td><td>{_number(row['p_value'], 'p')}</td></tr>"
        for row in report["comparisons"])
    control = html.escape(str(report["control"]))
    return (f"<table><tr><th>variant</th><th class='text'>metric</th><th>control: {control}</th><th>variant</th>"
            f"<th class='text'>test</th><th>p</th></tr>{body}</table>")


def _buckets_table(report: dict) -> str:
    body = "".join(
        f"<tr><td>{html.escape(row['bucket'])}</td><td>{row['sessions']}</td>"
        f"<td>{_number(row['resolution_rate'], 'rate')}{_interval(row['resolution_rate_ci'], 'rate')}</td>"
        f"<td>{_number(row['csat_mean'])}{_interval(row['csat_mean_ci'], '')}</td>"
        f"<td>{_number(row['handoff_rate'], 'rate')}</td></tr>" for row in report["confidence_buckets"])
    return ("<table><tr><th>lowest top_score</th><th>sessions</th><th>resolved</th><th>CSAT mean</th>"
            f"<th>handed off</th></tr>{body}</table>")


_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
td:first-child,th:first-child,.text{text-align:left}tr.significant{background:#fff3c4}small{color:#666}
img{max-width:100%;display:block;margin:1rem 0}li{margin:.3rem 0}"""


def render_html(report: dict) -> str:
    """The whole report as one HTML page."""
    verdicts = "".join(f"<li>{html.escape(part)}</li>" for text in report["verdicts"].values()
                       for part in text.split("; ")) or "<li>Only one variant: nothing to compare.</li>"
    plots = "".join(f'<img alt="{function.__doc__.splitlines()[0]}" src="data:image/png;base64,'
                    f'{base64.b64encode(png(function(report))).decode()}">' for function in FIGURES) \
        if report["variants"] else "<p>No sessions in the store yet.</p>"
    since = f" since {html.escape(report['since'])}" if report["since"] else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Support report</title><style>{_STYLE}"
            f"</style></head><body><h1>Support report{since}</h1>"
            f"<p>Control variant: <b>{html.escape(str(report['control']))}</b>. Intervals are 95%; rows in yellow "
            f"differ from the control at p &lt; 0.05. A session is resolved when the shopper marked it solved, or "
            f"it ended without a hand-off and without “still need help”.</p>"
            f"<h2>Verdict</h2><ul>{verdicts}</ul><h2>Per variant</h2>{_variants_table(report)}"
            f"<h2>Against the control</h2>{_comparisons_table(report)}"
            f"<h2>By retrieval confidence</h2>{_buckets_table(report)}<h2>Plots</h2>{plots}</body></html>")
