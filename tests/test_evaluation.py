"""Retrieval metrics and query files; optionally the real dev set when ../shared/evaldata is present."""

import json
import math

import pytest

from mmsupport.config import REPO_DIR
from mmsupport.errors import InvalidInput
from mmsupport.evaluation import load_queries, query_metrics, summarize

DEV = REPO_DIR.parent / "shared" / "evaldata" / "queries" / "dev.jsonl"


def test_metrics_by_hand():
    m = query_metrics(["x", "a", "y", "b"], frozenset({"a", "b", "c"}), k=4)
    assert m["hit"] == 1.0
    assert m["mrr"] == 0.5
    assert m["precision"] == 0.5
    assert m["recall"] == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)


def test_metrics_only_count_the_top_k():
    m = query_metrics(["x", "y", "a"], frozenset({"a"}), k=2)
    assert (m["hit"], m["mrr"], m["ndcg"]) == (0.0, 0.0, 0.0)
    assert query_metrics(["a"], frozenset({"a"}), k=10)["ndcg"] == 1.0  # ideal DCG over min(k, |relevant|)


def test_summary_means_and_median_rank():
    rows = [dict(query_metrics(r, frozenset({"a"}), 10), rank=rank, ms=1.0)
            for r, rank in [(["a"], 1), (["x", "a"], 2), (["x"], None)]]
    summary = summarize(rows, 10)
    assert summary["mrr@10"] == pytest.approx(0.5)
    assert summary["median_rank"] == 2
    assert summarize(rows[2:], 10)["median_rank"] is None


def test_query_files_are_checked_and_filtered(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"query": "a", "relevant": [1], "catalog": "x"}) + "\n\n"
                    + json.dumps({"query": "b", "relevant": ["2"], "kind": "attribute", "catalog": "y"}) + "\n")
    assert [q.query for q in load_queries(path)] == ["a", "b"]
    only_y, = load_queries(path, catalog="y")
    assert (only_y.relevant, only_y.kind) == (frozenset({"2"}), "attribute")
    with pytest.raises(InvalidInput, match="No queries .* for catalog 'z'"):
        load_queries(path, catalog="z")
    path.write_text('{"query": "no relevant ids"}\n')
    with pytest.raises(InvalidInput, match="line 1 is not a query"):
        load_queries(path)


@pytest.mark.skipif(not DEV.is_file(), reason="../shared/evaldata is not present")
def test_the_real_dev_set_loads():
    queries = load_queries(DEV)
    assert {q.kind for q in queries} == {"known-item", "attribute"}
    assert {q.catalog for q in queries} == {"myntra", "styles"}
