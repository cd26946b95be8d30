"""Retrieval evaluation: per-query metrics and their means over a JSONL query file.

A query line is ``{"query": "...", "relevant": ["id", ...]}`` with optional ``kind`` (results are grouped by it, e.g.
``known-item`` / ``attribute``) and ``catalog`` (which table the ids belong to), as in
``../shared/evaldata/queries/dev.jsonl``. Relevance is binary.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from mmsupport.errors import InvalidInput

METRICS = ("hit", "recall", "mrr", "precision", "ndcg")


@dataclass(frozen=True)
class Query:
    query: str
    relevant: frozenset[str]
    kind: str = "all"
    catalog: str | None = None


def load_queries(path: str | Path, *, catalog: str | None = None) -> list[Query]:
    """Queries from a JSONL file, optionally only those whose ``catalog`` field equals ``catalog``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"Cannot read the query file {path}: {error}.", hint="Pass a UTF-8 JSONL file.") from None
    queries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            query = Query(str(data["query"]), frozenset(map(str, data["relevant"])), data.get("kind", "all"),
                          data.get("catalog"))
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(f"{path} line {number} is not a query.",
                               hint='Each line must be JSON like {"query": "...", "relevant": ["id1", "id2"]}.')
        if catalog is None or query.catalog == catalog:
            queries.append(query)
    if not queries:
        raise InvalidInput(f"No queries in {path}" + (f" for catalog {catalog!r}." if catalog else "."),
                           hint="Check the file and the --catalog value.")
    return queries


def first_relevant_rank(ranked: list[str], relevant: frozenset[str]) -> int | None:
    """1-based rank of the first relevant id, or ``None`` when none was retrieved."""
    return next((rank for rank, item_id in enumerate(ranked, start=1) if item_id in relevant), None)


def query_metrics(ranked: list[str], relevant: frozenset[str], k: int) -> dict[str, float]:
    """hit@k, recall@k, MRR@k, P@k and nDCG@k (binary relevance; ideal DCG over min(k, |relevant|)).

    >>> query_metrics(["a", "b", "c"], frozenset({"b", "z"}), k=2)["mrr"]
    0.5
    """
    top = ranked[:k]
    gains = [1.0 if item_id in relevant else 0.0 for item_id in top]
    rank = first_relevant_rank(top, relevant)
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return {
        "hit": float(rank is not None),
        "recall": sum(gains) / len(relevant) if relevant else 0.0,
        "mrr": 1.0 / rank if rank else 0.0,
        "precision": sum(gains) / k,
        "ndcg": dcg / ideal if ideal else 0.0,
    }


def summarize(per_query: list[dict], k: int) -> dict:
    """Means of the metrics as ``hit@k`` etc., the median first-relevant rank (``None`` when most queries miss) and
    the median latency."""
    ranks = sorted(q["rank"] if q["rank"] is not None else math.inf for q in per_query)
    median_rank = statistics.median(ranks)
    summary = {"n": len(per_query)}
    summary.update({f"{m}@{k}": round(statistics.fmean(q[m] for q in per_query), 4) for m in METRICS})
    summary["median_rank"] = None if math.isinf(median_rank) else median_rank
    summary["p50_ms"] = round(statistics.median(q["ms"] for q in per_query), 2)
    return summary


def evaluate(catalog, queries: list[Query], *, mode: str = "hybrid", k: int = 10, where: str | None = None) -> dict:
    """Run every query through ``catalog.search`` and return ``{kind: summary}`` (see :func:`summarize`), plus an
    ``all`` entry when there is more than one kind."""
    per_kind: dict[str, list[dict]] = {}
    for query in queries:
        start = time.perf_counter()
        ranked = [item.id for item in catalog.search(query.query, mode=mode, k=k, where=where)]
        row = query_metrics(ranked, query.relevant, k)
        row["rank"] = first_relevant_rank(ranked, query.relevant)
        row["ms"] = (time.perf_counter() - start) * 1000
        per_kind.setdefault(query.kind, []).append(row)
    results = {kind: summarize(rows, k) for kind, rows in per_kind.items()}
    if len(per_kind) > 1:
        results["all"] = summarize([row for rows in per_kind.values() for row in rows], k)
    return results
