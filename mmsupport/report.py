"""The support report: per A/B variant, how fast, how often resolved, how satisfied — from the conversation store.

Figures per variant (see :func:`build_report`): sessions, turns; seconds to the first streamed token and to the full
answer (p50/p90 over turns); resolution rate, hand-off rate (sessions with a ticket), no-match rate (turns), thumbs-up
share (votes), CSAT mean and distribution (each session's last rating) — rates with 95% Wilson intervals, the CSAT
mean with a 95% t interval. Every other variant is tested against the control: chi-square (the two-proportion z-test) for
rates, Mann–Whitney for times and ratings. Sessions are also grouped by their weakest retrieval (lowest
``turns.top_score``), to see below which confidence the assistant stops resolving and a person should take over.

**Resolved by the assistant**: the shopper marked it solved (feedback ``resolved`` = 1), or the session ended without
a hand-off ticket and without a "still need help" mark (``resolved`` = 0).

Rendering (HTML with plots) is in :mod:`mmsupport.report_html`.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from scipy import stats

from mmsupport import store as st

#: Significance level of the tests and the confidence of the intervals (95%).
ALPHA = 0.05
#: The resolution difference the power calculation sizes the experiment for: 5 percentage points, 80% power.
DETECTABLE_DIFFERENCE = 0.05
POWER = 0.8
#: Edges of the retrieval-confidence buckets (top_score, 0-1).
CONFIDENCE_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
#: Rate metrics: name in the report -> what a higher rate means, in the verdict's words.
RATES = {"resolution_rate": "resolves", "handoff_rate": "hands off", "no_match_rate": "finds nothing",
         "thumbs_up_share": "gets thumbs up"}


@dataclass
class Session:
    """What the report needs of one session."""

    id: str
    variant: str
    turns: list[dict] = field(default_factory=list)
    marks: list[int] = field(default_factory=list)  # resolved feedback values, oldest first
    ratings: list[int] = field(default_factory=list)  # csat values, oldest first
    thumbs: list[int] = field(default_factory=list)
    handed_off: bool = False

    @property
    def resolved(self) -> bool:
        """Resolved by the assistant (the module's rule)."""
        return 1 in self.marks or (not self.handed_off and 0 not in self.marks)

    @property
    def csat(self) -> int | None:
        return self.ratings[-1] if self.ratings else None

    @property
    def weakest_retrieval(self) -> float | None:
        scores = [turn["top_score"] for turn in self.turns if turn["top_score"] is not None]
        return min(scores) if scores else None


def load_sessions(engine: sa.Engine, since: datetime | None = None) -> list[Session]:
    """Every session started at or after ``since`` (UTC), with its turns, feedback and whether it was handed off."""
    condition = st.sessions.c.started >= since if since is not None else sa.true()
    ids = sa.select(st.sessions.c.id).where(condition)
    with engine.connect() as connection:
        found = {row.id: Session(row.id, row.variant) for row in connection.execute(
            sa.select(st.sessions.c.id, st.sessions.c.variant).where(condition).order_by(st.sessions.c.started))}
        for row in connection.execute(sa.select(st.turns.c.session_id, st.turns.c.top_score, st.turns.c.no_match,
                                                st.turns.c.first_token_s, st.turns.c.answer_s)
                                      .where(st.turns.c.session_id.in_(ids)).order_by(st.turns.c.time)):
            found[row.session_id].turns.append(dict(row._mapping))
        for row in connection.execute(sa.select(st.feedback.c.session_id, st.feedback.c.kind, st.feedback.c.value)
                                      .where(st.feedback.c.session_id.in_(ids))
                                      .order_by(st.feedback.c.time, st.feedback.c.id)):
            lists = {"resolved": found[row.session_id].marks, "csat": found[row.session_id].ratings,
                     "thumbs": found[row.session_id].thumbs}
            lists[row.kind].append(row.value)
        for session_id in connection.execute(sa.select(st.tickets.c.session_id).where(
                st.tickets.c.session_id.in_(ids))).scalars():
            found[session_id].handed_off = True
    return list(found.values())


# -- statistics ---------------------------------------------------------------------------------------------------

def wilson(successes: int, total: int) -> list[float] | None:
    """95% Wilson score interval of a proportion, or ``None`` without observations."""
    if total == 0:
        return None
    interval = stats.binomtest(successes, total).proportion_ci(1 - ALPHA, method="wilson")
    return [float(interval.low), float(interval.high)]


def mean_interval(values: list[float]) -> list[float] | None:
    """95% Student t interval of a mean, or ``None`` with fewer than two values."""
    if len(values) < 2:
        return None
    mean, sem = float(np.mean(values)), float(stats.sem(values))
    if sem == 0:
        return [mean, mean]
    low, high = stats.t.interval(1 - ALPHA, len(values) - 1, loc=mean, scale=sem)
    return [float(low), float(high)]


def rate_test(a: tuple[int, int], b: tuple[int, int]) -> float | None:
    """p-value of the chi-square test (no continuity correction: the two-proportion z-test) of ``(successes,
    total)`` pairs ``a`` and ``b``; 1.0 when both are all successes or all failures, ``None`` without data."""
    if a[1] == 0 or b[1] == 0:
        return None
    table = [[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]]
    if 0 in (a[0] + b[0], a[1] - a[0] + b[1] - b[0]):
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def rank_test(a: list[float], b: list[float]) -> float | None:
    """p-value of the two-sided Mann–Whitney U test, or ``None`` when a side has no values."""
    if not a or not b:
        return None
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def sessions_needed(rate: float, difference: float = DETECTABLE_DIFFERENCE) -> int:
    """Sessions per variant for a two-sided test at :data:`ALPHA` to detect ``rate`` vs ``rate ± difference`` with
    :data:`POWER` (normal approximation)."""
    other = rate + difference if rate + difference <= 1 else rate - difference
    pooled = (rate + other) / 2
    z_alpha, z_power = stats.norm.ppf(1 - ALPHA / 2), stats.norm.ppf(POWER)
    spread = z_alpha * math.sqrt(2 * pooled * (1 - pooled)) + z_power * math.sqrt(
        rate * (1 - rate) + other * (1 - other))
    return math.ceil((spread / difference) ** 2)


# -- figures ------------------------------------------------------------------------------------------------------

def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def counts(sessions: list[Session]) -> dict[str, tuple[int, int]]:
    """``(successes, total)`` of each rate in :data:`RATES` over ``sessions``."""
    turns = [turn for s in sessions for turn in s.turns]
    votes = [vote for s in sessions for vote in s.thumbs]
    return {"resolution_rate": (sum(s.resolved for s in sessions), len(sessions)),
            "handoff_rate": (sum(s.handed_off for s in sessions), len(sessions)),
            "no_match_rate": (sum(bool(turn["no_match"]) for turn in turns), len(turns)),
            "thumbs_up_share": (sum(votes), len(votes))}


def times(sessions: list[Session], column: str) -> list[float]:
    return [turn[column] for s in sessions for turn in s.turns if turn[column] is not None]


def summarize(sessions: list[Session]) -> dict:
    """The figures of one variant (or of one confidence bucket)."""
    ratings = [s.csat for s in sessions if s.csat is not None]
    figures: dict = {"sessions": len(sessions), "turns": sum(len(s.turns) for s in sessions)}
    for name, column in (("frt_first_token", "first_token_s"), ("frt_answer", "answer_s")):
        values = times(sessions, column)
        figures[f"{name}_p50_s"] = _percentile(values, 50)
        figures[f"{name}_p90_s"] = _percentile(values, 90)
    for name, (successes, total) in counts(sessions).items():
        figures[name] = successes / total if total else None
        figures[f"{name}_ci"] = wilson(successes, total)
        figures[f"{name}_n"] = total
    figures["csat_mean"] = float(np.mean(ratings)) if ratings else None
    figures["csat_mean_ci"] = mean_interval(ratings)
    figures["csat_n"] = len(ratings)
    figures["csat_distribution"] = {str(score): ratings.count(score) for score in st.FEEDBACK_KINDS["csat"]}
    return figures


def compare(control: list[Session], other: list[Session]) -> list[dict]:
    """One row per metric: the control's and the other variant's value, the test used and its p-value."""
    rows = []
    control_counts, other_counts = counts(control), counts(other)
    for name in RATES:
        (a, n), (b, m) = control_counts[name], other_counts[name]
        rows.append({"metric": name, "control_value": a / n if n else None, "value": b / m if m else None,
                     "test": "chi-square (two-proportion z)", "p_value": rate_test((a, n), (b, m))})
    for name, column in (("frt_first_token_s", "first_token_s"), ("frt_answer_s", "answer_s")):
        a, b = times(control, column), times(other, column)
        rows.append({"metric": name, "control_value": _percentile(a, 50), "value": _percentile(b, 50),
                     "test": "Mann-Whitney U (medians shown)", "p_value": rank_test(a, b)})
    a, b = [s.csat for s in control if s.csat is not None], [s.csat for s in other if s.csat is not None]
    rows.append({"metric": "csat", "control_value": float(np.mean(a)) if a else None,
                 "value": float(np.mean(b)) if b else None, "test": "Mann-Whitney U", "p_value": rank_test(a, b)})
    for row in rows:
        row["significant"] = row["p_value"] is not None and row["p_value"] < ALPHA
    return rows


def verdict(name: str, control_name: str, control: list[Session], other: list[Session], rows: list[dict]) -> str:
    """A plain sentence: what differs significantly, or how many more sessions would show a 5-point difference."""
    said = []
    for row in rows:
        if row["significant"] and row["metric"] in RATES:
            more = "more" if row["value"] > row["control_value"] else "less"
            said.append(f"{name} {RATES[row['metric']]} {more} than {control_name} "
                        f"({row['value']:.0%} vs {row['control_value']:.0%}, p = {row['p_value']:.2g})")
        elif row["significant"] and row["metric"] == "csat":
            higher = "higher" if row["value"] > row["control_value"] else "lower"
            said.append(f"{name} is rated {higher} than {control_name} (CSAT {row['value']:.2f} vs "
                        f"{row['control_value']:.2f}, p = {row['p_value']:.2g})")
        elif row["significant"]:
            faster = "faster" if row["value"] < row["control_value"] else "slower"
            what = "to the first token" if row["metric"] == "frt_first_token_s" else "to the full answer"
            said.append(f"{name} is {faster} {what} than {control_name} (median {row['value']:.2f} s vs "
                        f"{row['control_value']:.2f} s, p = {row['p_value']:.2g})")
    resolution = next(row for row in rows if row["metric"] == "resolution_rate")
    if not resolution["significant"] and control and other:
        needed = sessions_needed(resolution["control_value"])
        have = min(len(control), len(other))
        if needed > have:
            said.append(f"resolution: not enough data: about {needed - have} more sessions per variant to detect "
                        f"a {DETECTABLE_DIFFERENCE * 100:.0f}-point difference")
        else:
            said.append(f"resolution: no difference of {DETECTABLE_DIFFERENCE * 100:.0f} points or more between "
                        f"{name} and {control_name} (p = {resolution['p_value']:.2g}, {have} sessions each)")
    return "; ".join(said) or f"{name}: no data to compare with {control_name}"


def confidence_buckets(sessions: list[Session]) -> list[dict]:
    """Resolution, CSAT and hand-off by each session's weakest retrieval (lowest top_score), all variants."""
    groups: dict[str, list[Session]] = defaultdict(list)
    labels = [f"{low:.1f}-{high:.1f}" for low, high in itertools.pairwise(CONFIDENCE_EDGES)]
    for session in sessions:
        score = session.weakest_retrieval
        if score is None:
            groups["no search"].append(session)
        else:
            index = min(int(np.searchsorted(CONFIDENCE_EDGES, score, side="right")) - 1, len(labels) - 1)
            groups[labels[max(index, 0)]].append(session)
    keys = ("sessions", "resolution_rate", "resolution_rate_ci", "csat_mean", "csat_mean_ci", "handoff_rate")
    found = {label: summarize(groups[label]) for label in [*labels, "no search"] if groups[label]}
    return [{"bucket": label, **{key: figures[key] for key in keys}} for label, figures in found.items()]


def choose_control(variants: list[str], control: str | None = None) -> str | None:
    """``control`` if given, else the variant named ``control``, else the first variant seen."""
    if control is not None:
        return control
    return "control" if "control" in variants else (variants[0] if variants else None)


def build_report(engine: sa.Engine, *, since: datetime | None = None, control: str | None = None) -> dict:
    """The report as a JSON-ready dict: ``{"control", "since", "variants": {NAME: figures}, "comparisons": [...],
    "verdicts": {NAME: sentence}, "confidence_buckets": [...]}``."""
    sessions = load_sessions(engine, since)
    by_variant: dict[str, list[Session]] = defaultdict(list)
    for session in sessions:
        by_variant[session.variant].append(session)
    control = choose_control(list(by_variant), control)
    by_variant = dict(sorted(by_variant.items(), key=lambda pair: (pair[0] != control, pair[0])))
    comparisons, verdicts = [], {}
    for name, group in by_variant.items():
        if name != control:
            rows = compare(by_variant.get(control, []), group)
            comparisons += [{"variant": name, "control": control, **row} for row in rows]
            verdicts[name] = verdict(name, control, by_variant.get(control, []), group, rows)
    return {"control": control, "since": since.isoformat() if since else None,
            "variants": {name: summarize(group) for name, group in by_variant.items()},
            "comparisons": comparisons, "verdicts": verdicts, "confidence_buckets": confidence_buckets(sessions)}
