"""The support report's figures equal a computation written here from what was logged (tests/support_rows.py), on
SQLite and PostgreSQL; the CLI prints the issue's JSON shape and writes an HTML page with plots."""

from __future__ import annotations

import json
import math
import secrets
from datetime import timedelta

import pytest
from scipy import stats
from support_rows import fill

from mmsupport import store as st
from mmsupport.__main__ import main
from mmsupport.report import build_report
from mmsupport.store import ConversationStore

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/conversations.db"
    return request.getfixturevalue("postgres_server").create_database(f"r_{secrets.token_hex(6)}")


def median_and_p90(values: list[float]) -> tuple[float, float]:
    """Linear-interpolation percentiles, by hand."""
    ordered = sorted(values)

    def at(q: float) -> float:
        position = (len(ordered) - 1) * q
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return at(0.5), at(0.9)


def wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    centre = (k + z * z / 2) / (n + z * z)
    half = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return centre - half, centre + half


def two_proportion_p(a: int, n: int, b: int, m: int) -> float:
    pooled = (a + b) / (n + m)
    z = (a / n - b / m) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    return math.erfc(abs(z) / math.sqrt(2))


def expected(sessions: list[dict]) -> dict:
    """The figures of one variant, from the generator's record of what it logged."""
    turns = [turn for s in sessions for turn in s["turns"]]
    resolved = [1 in s["marks"] or (not s["tickets"] and 0 not in s["marks"]) for s in sessions]
    ratings = [s["ratings"][-1] for s in sessions if s["ratings"]]
    votes = [vote for s in sessions for vote in s["thumbs"]]
    first = [t["first_token_s"] for t in turns if t["first_token_s"] is not None]
    return {"sessions": len(sessions), "turns": len(turns),
            "frt_first_token_p50_s": median_and_p90(first)[0], "frt_first_token_p90_s": median_and_p90(first)[1],
            "frt_answer_p50_s": median_and_p90([t["answer_s"] for t in turns])[0],
            "resolution_rate": sum(resolved) / len(sessions), "resolved": (sum(resolved), len(sessions)),
            "handoff_rate": sum(s["tickets"] for s in sessions) / len(sessions),
            "no_match_rate": sum(t["no_match"] for t in turns) / len(turns),
            "thumbs_up_share": sum(votes) / len(votes),
            "csat_mean": sum(ratings) / len(ratings), "ratings": ratings,
            "csat_distribution": {str(score): ratings.count(score) for score in range(1, 6)},
            "answer_times": [t["answer_s"] for t in turns]}


def test_the_report_equals_a_computation_from_the_rows(url):
    store = ConversationStore(url)
    written = fill(store, sessions=150)
    report = build_report(store.engine)
    assert report["control"] == "control" and set(report["variants"]) == {"control", "fts"}
    by_variant = {name: expected([s for s in written if s["variant"] == name]) for name in ("control", "fts")}
    for name, want in by_variant.items():
        got = report["variants"][name]
        for key in ("sessions", "turns", "csat_distribution"):
            assert got[key] == want[key], (name, key)
        for key in ("frt_first_token_p50_s", "frt_first_token_p90_s", "frt_answer_p50_s", "resolution_rate",
                    "handoff_rate", "no_match_rate", "thumbs_up_share", "csat_mean"):
            assert got[key] == pytest.approx(want[key], abs=1e-9), (name, key)
        assert got["resolution_rate_ci"] == pytest.approx(wilson(*want["resolved"]), abs=1e-9)
    control, fts = by_variant["control"], by_variant["fts"]
    rows = {row["metric"]: row for row in report["comparisons"]}
    assert {row["variant"] for row in report["comparisons"]} == {"fts"}
    assert rows["resolution_rate"]["p_value"] == pytest.approx(
        two_proportion_p(*control["resolved"], *fts["resolved"]), rel=1e-6)
    assert rows["frt_answer_s"]["p_value"] == pytest.approx(
        stats.mannwhitneyu(control["answer_times"], fts["answer_times"]).pvalue, rel=1e-9)
    assert rows["csat"]["p_value"] == pytest.approx(stats.mannwhitneyu(control["ratings"], fts["ratings"]).pvalue)
    assert sum(bucket["sessions"] for bucket in report["confidence_buckets"]) == len(written)
    lowest = [min((t["top_score"] for t in s["turns"] if t["top_score"] is not None), default=None) for s in written]
    assert next(b for b in report["confidence_buckets"] if b["bucket"] == "0.0-0.2")["sessions"] == sum(
        score is not None and score < 0.2 for score in lowest)


def test_the_verdict_names_a_clear_winner_and_asks_for_more_data_otherwise(tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path}/clear.db")
    fill(store, sessions=300, variants={"control": 0.2, "fts": 0.9})
    assert build_report(store.engine)["verdicts"]["fts"].startswith("fts resolves more than control")
    store = ConversationStore(f"sqlite:///{tmp_path}/small.db")
    fill(store, sessions=12, variants={"control": 0.5, "fts": 0.5})
    verdict = build_report(store.engine)["verdicts"]["fts"]
    assert "not enough data: about" in verdict and "more sessions per variant to detect a 5-point difference" in verdict
    needed = int(verdict.split("about ")[1].split()[0])
    assert 500 < needed < 2000  # about 1,500 per arm for 50% vs 55% at 80% power


def test_since_leaves_out_older_sessions(tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path}/since.db")
    written = fill(store, sessions=30)
    old = written[0]["id"]
    with store.engine.begin() as connection:
        connection.execute(st.sessions.update().where(st.sessions.c.id == old)
                           .values(started=st.now() - timedelta(days=10)))
    since = st.now() - timedelta(days=1)
    report = build_report(store.engine, since=since)
    assert sum(v["sessions"] for v in report["variants"].values()) == 29
    assert sum(v["turns"] for v in report["variants"].values()) == sum(len(s["turns"]) for s in written[1:])


def test_the_cli_prints_the_json_shape_and_writes_html(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/cli.db"
    fill(ConversationStore(url), sessions=40)
    html = tmp_path / "report.html"
    assert main(["report", "--db-url", url, "--json", "--html", str(html), "--since", "2000-01-01"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for figures in printed["variants"].values():
        assert {"sessions", "turns", "frt_first_token_p50_s", "frt_answer_p50_s", "resolution_rate", "csat_mean",
                "handoff_rate", "no_match_rate"} <= set(figures)
    assert isinstance(printed["comparisons"], list) and printed["comparisons"]
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 4 and "Verdict" in page
    assert main(["report", "--db-url", url, "--since", "yesterday"]) == 2
    assert "--since 'yesterday' is not a date" in capsys.readouterr().err


def test_an_empty_store_says_so(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/empty.db"
    html = tmp_path / "report.html"
    assert main(["report", "--db-url", url, "--html", str(html)]) == 0
    assert capsys.readouterr().out.strip() == "no sessions in the store"
    assert "No sessions in the store yet." in html.read_text() and "data:image/png" not in html.read_text()
