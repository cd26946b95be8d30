"""Evaluation: retrieval metrics over a JSONL query file, and the support agent over scripted conversations.

Retrieval: a query line is ``{"query": "...", "relevant": ["id", ...]}`` with optional ``kind`` (results are grouped by
it, e.g. ``known-item`` / ``attribute``) and ``catalog`` (which table the ids belong to), as in
``../shared/evaldata/queries/dev.jsonl``. Relevance is binary.

Agent: a conversation line is ``{"id", "turns": [{"message", "image", "relevant": [ids], "expect_no_match", "tag"}]}``
(see data/README.md); :func:`evaluate_agent` replays the turns in order, each with the conversation so far.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from mmsupport.errors import InvalidInput

#: A sentence quoted in an answer.
QUOTE = re.compile(r"\u201c([^\u201d]+)\u201d")
#: Turn tags whose first retrieved item (or no-match) must be right.
RANKED_TAGS = ("topic_switch", "variant")

METRICS = ("hit", "recall", "mrr", "precision", "ndcg")


@dataclass(frozen=True)
class Query:
    query: str
    relevant: frozenset[str]
    kind: str = "all"
    catalog: str | None = None


def read_jsonl(path: str | Path, make, *, what: str, example: str) -> list:
    """The records of the JSONL file ``path``, one ``make(data)`` per non-blank line. A file that cannot be read, or a
    line ``make`` cannot take (``what`` it should be, like ``example``), raises :class:`InvalidInput` naming it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"Cannot read the {what} file {path}: {error}.", hint="Pass a UTF-8 JSONL file.") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(make(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(f"{path} line {number} is not a {what}.",
                               hint=f"Each line must be JSON like {example}.") from None
    return records


def load_queries(path: str | Path, *, catalog: str | None = None) -> list[Query]:
    """Queries from a JSONL file, optionally only those whose ``catalog`` field equals ``catalog``."""
    queries = [query for query in read_jsonl(
        path, lambda data: Query(str(data["query"]), frozenset(map(str, data["relevant"])), data.get("kind", "all"),
                                 data.get("catalog")),
        what="query", example='{"query": "...", "relevant": ["id1", "id2"]}')
        if catalog is None or query.catalog == catalog]
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


def load_conversations(path: str | Path) -> list[dict]:
    """Parse and check a conversations file; image paths come back absolute (they may be relative to the repository
    root or to the file)."""
    from mmsupport.config import REPO_DIR

    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"The conversations file {path} does not exist.", hint="Pass --conversations FILE.jsonl.")
    conversations = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            conversation = json.loads(line)
            turns = conversation["turns"]
            for turn in turns:
                if not isinstance(turn["message"], str):
                    raise TypeError("message is not a string")
                turn.setdefault("relevant", [])
                turn.setdefault("expect_no_match", False)
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InvalidInput(f"{path}:{number} is not a conversation ({type(error).__name__}: {error}).",
                               hint='Each line needs {"id", "turns": [{"message", "relevant", ...}]}.') from None
        for turn in turns:
            if turn.get("image"):
                candidates = [Path(turn["image"]), REPO_DIR / turn["image"], path.parent / turn["image"]]
                found = next((c for c in candidates if c.is_file()), None)
                if found is None:
                    raise InvalidInput(f"{path}:{number}: image {turn['image']} not found.",
                                       hint="Give image paths relative to the repository root or the file.")
                turn["image"] = str(found.resolve())
        conversations.append({"id": conversation.get("id", f"line{number}"), "turns": turns})
    return conversations


def quoted_from(answer: str, items: list, relevant: list[str]) -> bool | None:
    """Whether every sentence quoted in ``answer`` is in the text of one of the ``relevant`` items (``None`` when
    nothing is quoted)."""
    from mmsupport.catalog import split_sentences

    quotes = [sentence for quote in QUOTE.findall(answer) for sentence in split_sentences(quote)]
    if not quotes:
        return None
    texts = [item.text for item in items if item.id in relevant]
    return all(any(sentence in text for text in texts) for sentence in quotes)


def _record(conversation: str, index: int, turn: dict, result) -> dict:
    from mmsupport.agent import CITATION

    retrieved = [item.id for item in result.items]
    cited = CITATION.findall(result.answer)
    record = {"conversation": conversation, "turn": index, "tag": turn.get("tag"), "query": result.query,
              "no_match": result.no_match, "expect_no_match": bool(turn["expect_no_match"]),
              "hit": bool(set(retrieved) & set(turn["relevant"])) if turn["relevant"] else None,
              "retrieved": retrieved, "citations": cited, "invalid_citations": [c for c in cited if c not in retrieved],
              "focus": result.focus, "flagged": result.flagged, "seconds": round(result.timings["total"], 3)}
    if record["tag"] in RANKED_TAGS:
        record["right"] = (result.no_match if record["expect_no_match"]
                           else not result.no_match and retrieved[:1] != [] and retrieved[0] in turn["relevant"])
    if record["tag"] == "article":
        record["quoted_from_relevant"] = quoted_from(result.answer, result.items, turn["relevant"])
    return record


def evaluate_agent(agent, conversations: list[dict], *, progress: bool = True) -> dict:
    """Replay ``conversations`` through ``agent``; return the summary and one record per turn.

    Metrics: ``hit_rate`` = turns with relevant ids where one of them was retrieved; ``citation_validity`` = cited
    ids that were retrieved in the same turn; ``no_match_accuracy`` = turns whose no_match equals expect_no_match;
    ``tags``: for topic-switch and variant turns, how many ranked a relevant item first (or said nothing matched when
    nothing should); ``quoted_from_relevant``: article turns whose quoted sentences all come from the relevant
    article (``quoted`` of them quoted anything; extractive answers, i.e. without a model)."""
    from tqdm.auto import tqdm

    records = []
    for conversation in tqdm(conversations, desc="conversations", disable=not progress):
        history = []
        for index, turn in enumerate(conversation["turns"]):
            result = agent.run_turn(turn["message"], [turn["image"]] if turn.get("image") else [], history)
            history = result.history
            records.append(_record(conversation["id"], index, turn, result))
    judged = [r for r in records if r["hit"] is not None]
    citations = sum(len(r["citations"]) for r in records)
    invalid = sum(len(r["invalid_citations"]) for r in records)
    articles = [r for r in records if r["tag"] == "article"]
    return {
        "conversations": len(conversations), "turns": len(records),
        "hit_rate": sum(r["hit"] for r in judged) / len(judged) if judged else None,
        "citation_validity": (citations - invalid) / citations if citations else None,
        "citations": citations,
        "no_match_accuracy": sum(r["no_match"] == r["expect_no_match"] for r in records) / len(records),
        "missed_no_match": sum(r["expect_no_match"] and not r["no_match"] for r in records),
        "false_no_match": sum(r["no_match"] and not r["expect_no_match"] for r in records),
        "tags": {tag: {"turns": sum(r["tag"] == tag for r in records),
                       "right": sum(r.get("right", False) for r in records if r["tag"] == tag)} for tag in RANKED_TAGS},
        "quoted_from_relevant": (sum(bool(r["quoted_from_relevant"]) for r in articles) / len(articles)
                                 if articles else None),
        "quoted": sum(r["quoted_from_relevant"] is not None for r in articles),
        "records": records,
    }
