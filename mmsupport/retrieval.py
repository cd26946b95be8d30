"""Search over a :class:`~mmsupport.catalog.Catalog`: vector, full text (BM25) and hybrid.

Hybrid fuses normalised scores rather than ranks, because rank fusion (RRF) loses exact phrases to vectors. Each
candidate of either list gets ``FTS_WEIGHT * bm25 / best_bm25 + (1 - FTS_WEIGHT) * cosine`` (cosine computed exactly
from the stored vector, min-max scaled over the candidates), and rows holding the whole query as an exact phrase get
:data:`PHRASE_BONUS` on top. So a copied product phrase lands first, a flat BM25 list (many items sharing the query
words) is ordered by meaning, and paraphrases with no shared words still come in from the vector side. The two
weights were tuned on ``queries/dev.jsonl`` (README, "Catalog and search").
"""

from __future__ import annotations

import numpy as np
from lancedb.query import PhraseQuery

from mmsupport.errors import InvalidInput

MODES = ("vector", "fts", "hybrid")
#: Candidates taken from each side before fusing.
CANDIDATES = 50
#: Weight of the normalised BM25 score in hybrid; the cosine part gets the rest.
FTS_WEIGHT = 0.5
#: Added to the fused score of rows containing the whole query as an exact phrase, which puts them first.
PHRASE_BONUS = 1.0
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
        phrase = _phrase(table, query, n, where, columns + ["vector"])
        return fuse(_fts(table, query, n, where, columns + ["vector"]),
                    _vector(table, query_vector, n, where, columns), query_vector, phrase)[:k]
    except (ValueError, RuntimeError) as error:
        if where and ("where" in str(error).lower() or "field" in str(error).lower() or "sql" in str(error).lower()):
            raise InvalidInput(
                f"The filter {where!r} is not valid: {str(error).splitlines()[0]}",
                hint=f"Write SQL over the columns {', '.join(c for c in columns if c != 'row_hash')}, "
                "e.g. \"kind = 'product' AND price < 50\".",
            ) from None
        raise


def fuse(fts_rows: list[dict], vector_rows: list[dict], query_vector: np.ndarray,
         phrase_rows: list[dict] = ()) -> list[tuple[dict, float]]:
    """Hybrid ranking of the union of both candidate lists: ``FTS_WEIGHT * bm25 / best_bm25 + (1 - FTS_WEIGHT) *
    cosine``, with the cosine similarity min-max scaled over the candidates, plus :data:`PHRASE_BONUS` for rows that
    contain the whole query as a phrase."""
    rows: dict[str, dict] = {}
    bm25: dict[str, float] = {}
    cosine: dict[str, float] = {}
    for row in vector_rows:
        rows[row["id"]] = row
        cosine[row["id"]] = 1.0 - row.pop("_distance")
    for source in (fts_rows, phrase_rows):
        for row in source:
            vector, score = row.pop("vector"), row.pop("_score")
            if source is fts_rows:
                bm25[row["id"]] = score
            rows.setdefault(row["id"], row)
            cosine.setdefault(row["id"], float(np.dot(query_vector, np.asarray(vector, dtype=np.float32))))
    phrase_ids = {row["id"] for row in phrase_rows}
    if not rows:
        return []
    best_bm25 = max(bm25.values(), default=0.0) or 1.0
    low, high = min(cosine.values()), max(cosine.values())
    spread = (high - low) or 1.0
    scored = [(rows[i], FTS_WEIGHT * bm25.get(i, 0.0) / best_bm25 + (1 - FTS_WEIGHT) * (cosine[i] - low) / spread
               + PHRASE_BONUS * (i in phrase_ids)) for i in rows]
    return sorted(scored, key=lambda pair: -pair[1])


def _fts(table, query: str | PhraseQuery, k: int, where: str | None, columns: list[str]) -> list[dict]:
    builder = table.search(query, query_type="fts", fts_columns="text").select([*columns, "_score"]).limit(k)
    if where:
        builder = builder.where(where, prefilter=True)
    return builder.to_list()


def _phrase(table, query: str, k: int, where: str | None, columns: list[str]) -> list[dict]:
    """Rows holding ``query`` as an exact phrase; none on tables indexed before positions were (the next ingest
    rebuilds the index)."""
    try:
        return _fts(table, PhraseQuery(query, "text"), k, where, columns)
    except (ValueError, RuntimeError) as error:
        if "position" in str(error):
            return []
        raise


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
