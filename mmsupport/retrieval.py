"""Search over a :class:`~mmsupport.catalog.Catalog`: vector, full text (BM25) and hybrid.

Hybrid fuses the two candidate lists by normalised scores rather than ranks. BM25 scores are divided by the best BM25
score of the query, so an exact phrase that stands far above the rest stays on top, while a flat BM25 list (many
items sharing the query words) leaves the order to the cosine similarity, which is computed exactly for every
candidate from its stored vector. Weights were tuned on ``queries/dev.jsonl`` (see README, "Catalog and search").
"""

from __future__ import annotations

import numpy as np

from mmsupport.errors import InvalidInput

MODES = ("vector", "fts", "hybrid")
#: Candidates taken from each side before fusing.
CANDIDATES = 50
#: Weight of the normalised BM25 score in hybrid; the cosine part gets the rest.
FTS_WEIGHT = 0.5
#: ANN query settings; recall@10 against exact search is measured by bench/retrieval.py.
NPROBES = 20
REFINE_FACTOR = 5


def search(catalog, query: str, *, mode: str = "hybrid", k: int = 5, where: str | None = None):
    """``(row, score)`` pairs, best first, for :meth:`Catalog.search <mmsupport.catalog.Catalog.search>`."""
    if mode not in MODES:
        raise InvalidInput(f"Unknown search mode {mode!r}.", hint=f"Use one of: {', '.join(MODES)}.")
    if not query or not query.strip():
        raise InvalidInput("The search query is empty.", hint="Type a few words describing what you look for.")
    if k < 1:
        raise InvalidInput(f"k={k} asks for no results.", hint="Use k of 1 or more.")
    table, columns = catalog.table, catalog.columns()
    try:
        if mode == "fts":
            return [(row, row.pop("_score")) for row in _fts(table, query, k, where, columns)]
        query_vector = catalog.embedder.embed_query(query)
        if mode == "vector":
            return [(row, 1.0 - row.pop("_distance")) for row in _vector(table, query_vector, k, where, columns)]
        n = max(k, CANDIDATES)
        return fuse(_fts(table, query, n, where, columns + ["vector"]),
                    _vector(table, query_vector, n, where, columns), query_vector)[:k]
    except (ValueError, RuntimeError) as error:
        if where and ("where" in str(error).lower() or "field" in str(error).lower() or "sql" in str(error).lower()):
            raise InvalidInput(
                f"The filter {where!r} is not valid: {str(error).splitlines()[0]}",
                hint=f"Write SQL over the columns {', '.join(c for c in columns if c != 'row_hash')}, e.g. \"kind = 'product' AND price < 50\".",
            ) from None
        raise


def fuse(fts_rows: list[dict], vector_rows: list[dict], query_vector: np.ndarray) -> list[tuple[dict, float]]:
    """Hybrid ranking of the union of both candidate lists: ``FTS_WEIGHT * bm25 / best_bm25 + (1 - FTS_WEIGHT) *
    cosine``, with the cosine similarity min-max scaled over the candidates."""
    rows: dict[str, dict] = {}
    bm25: dict[str, float] = {}
    cosine: dict[str, float] = {}
    for row in vector_rows:
        rows[row["id"]] = row
        cosine[row["id"]] = 1.0 - row.pop("_distance")
    for row in fts_rows:
        vector = row.pop("vector")
        rows.setdefault(row["id"], row)
        bm25[row["id"]] = row.pop("_score")
        cosine.setdefault(row["id"], float(np.dot(query_vector, np.asarray(vector, dtype=np.float32))))
    if not rows:
        return []
    best_bm25 = max(bm25.values(), default=0.0) or 1.0
    low, high = min(cosine.values()), max(cosine.values())
    spread = (high - low) or 1.0
    scored = [(rows[i], FTS_WEIGHT * bm25.get(i, 0.0) / best_bm25 + (1 - FTS_WEIGHT) * (cosine[i] - low) / spread)
              for i in rows]
    return sorted(scored, key=lambda pair: -pair[1])


def _fts(table, query: str, k: int, where: str | None, columns: list[str]) -> list[dict]:
    builder = table.search(query, query_type="fts", fts_columns="text").select([*columns, "_score"]).limit(k)
    if where:
        builder = builder.where(where, prefilter=True)
    return builder.to_list()


def _vector(table, query_vector: np.ndarray, k: int, where: str | None, columns: list[str]) -> list[dict]:
    builder = (table.search(query_vector, vector_column_name="vector").distance_type("cosine")
               .select([*columns, "_distance"]).limit(k))
    if where:
        builder = builder.where(where, prefilter=True)
    if any(tuple(index.columns) == ("vector",) for index in table.list_indices()):
        builder = builder.nprobes(NPROBES).refine_factor(REFINE_FACTOR)
    return builder.to_list()


def create_ann_index(table) -> None:
    """Build the ANN index the catalog uses on large tables (cosine, IVF + HNSW over scalar-quantised vectors)."""
    table.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_SQ")
