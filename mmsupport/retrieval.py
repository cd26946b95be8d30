"""Search over a :class:`~mmsupport.catalog.Catalog`: vector, full text (BM25) and hybrid.

Hybrid fuses normalised scores rather than ranks, because rank fusion (RRF) loses exact phrases to vectors. Each
candidate of either list gets ``FTS_WEIGHT * bm25 / best_bm25 + (1 - FTS_WEIGHT) * cosine`` (cosine computed exactly
from the stored vector, min-max scaled over the candidates), and rows holding the whole query as an exact phrase get
:data:`PHRASE_BONUS` on top. So a copied product phrase lands first, a flat BM25 list (many items sharing the query
words) is ordered by meaning, and paraphrases with no shared words still come in from the vector side. The two
weights were tuned on ``queries/dev.jsonl`` (README, "Catalog and search"). Catalog attributes and prices named in
the query boost and filter the rows (:mod:`mmsupport.attributes`, the rule is there).

Speed: a search reads one :class:`~mmsupport.catalog.CatalogView` of the table throughout, through its ``lance``
dataset, which is about twice as fast per call as the ``lancedb`` query API; the full-text side runs in a worker
thread while the query is embedded; tables whose vectors are in memory are searched exactly there
(:class:`ExactIndex`), and on the largest tables the ANN index's candidates are ranked there; candidates carry
only ids, row offsets and scores, and the full rows of the final ``k`` are read once at the end.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache

import numpy as np
from lance.query import MatchQuery, PhraseQuery

from mmsupport.attributes import AttributeIndex, Wanted
from mmsupport.config import SEARCH_MODES
from mmsupport.errors import InvalidInput

#: Candidates taken from each side before fusing.
CANDIDATES = 50
#: Weight of the normalised BM25 score in hybrid; the cosine part gets the rest.
FTS_WEIGHT = 0.5
#: Added to the fused score of rows containing the whole query as an exact phrase, which puts them first.
PHRASE_BONUS = 1.0
#: ANN query settings; recall@10 against exact search is measured by bench/retrieval.py. The index is asked for
#: ``REFINE_FACTOR`` times the rows wanted, which LanceDB ranks by the exact cosines of their vectors on disk.
NPROBES = 20
REFINE_FACTOR = 5

#: The most memory an indexed table's vectors may take (as float16, their 8-bit copy adding half as much again) to
#: be searched exactly in memory once loaded, instead of through the ANN index: about 175k rows of 384 dimensions.
#: At 100k rows a float16 matrix-vector product takes 1.9 ms on two AVX-512 cores (the ANN query and the ranking of
#: its candidates 4.9 ms there) and the 8-bit one 1.6-1.9 ms on two AVX2 cores; the float16 product and the ANN
#: query cost the same near 200k rows on both hosts (the AVX2 host's memory is about half as fast).
SEARCH_IN_MEMORY_MB = 128
#: Past :data:`SEARCH_IN_MEMORY_MB`, the most memory an indexed table's 8-bit copy of its vectors may take (about
#: 2.7M rows of 384 dimensions) to be kept in memory for ranking: a product over a million rows would take longer
#: than a whole search should (about 16 ms on two cores), so the ANN index picks ``RANK_FACTOR`` times the rows
#: wanted, without its refine step (which reads their vectors from disk), and these rows are ranked from memory.
RANK_IN_MEMORY_MB = 1024
#: At 1M rows (bench/retrieval.py) the true ten nearest are among the index's 250 best for 96.9% of queries and
#: 500 for 99.4%; ranked from the 8-bit copy, recall@10 is 0.953 with 250 and 0.965 with 400, for 0.7 ms more.
RANK_FACTOR = 8
#: On such a table, the rows having every attribute a query names are ranked from memory when there are at most
#: this many (2.2 ms for 20,000 on two AVX-512 cores, 6.7 for 50,000); more of them are common enough for the ANN
#: index's candidates to hold the nearest ones.
ATTRIBUTE_ROWS_RANKED = 20_000
#: The most memory the item columns (:attr:`CatalogView.columns <mmsupport.catalog.CatalogView.columns>`) of a table
#: searched in memory may take to be kept there too (26 MB at 100k rows of the bench's synthetic catalog, 260 MB at
#: 1M). From memory the ten rows of a result take 0.15 ms; LanceDB's ``take`` reads them in 3-4 ms, a column at a
#: time, which at 1M rows is a third of a search.
ROWS_IN_MEMORY_MB = 512

#: A photo's hits are fused with the text side by weighted reciprocal rank fusion of each side's top ``k``: a row
#: scores ``1 / (IMAGE_RRF_K + text rank) + IMAGE_WEIGHT / (IMAGE_RRF_K + image rank)``, counting only the lists it
#: is in, and ties go to the better image rank. Ranks, not scores, because BM25, text cosines and image cosines live
#: on unrelated scales; only the top ``k`` of each side, because deeper lists are noise that would let a row both
#: sides rank poorly beat the photo's own product; a row in one list only (a help article has no picture) still
#: competes. The weight is 1 until a run with real CLIP weights (``bench/eval_images.py``) says otherwise.
IMAGE_RRF_K = 60
IMAGE_WEIGHT = 1.0

#: Up to this many rows, exact search runs its product on one BLAS thread: under a millisecond that way, while the
#: threads of a two-thread product keep spinning afterwards and slow the next query's embedding by 2-3 ms.
ONE_THREAD_ROWS = 40_000

logger = logging.getLogger(__name__)

#: Runs a search's side work while its thread waits on LanceDB: hybrid's full-text queries, and the ranking of the
#: rows having a query's attributes while the ANN index searches.
_worker = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mmsupport-search")
_loading = threading.Lock()


class ExactIndex:
    """Every vector of one table version in memory, for exact cosine search: a matrix-vector product takes about a
    millisecond at 10k rows, where LanceDB's scan of the same vectors on disk takes over ten. Vectors are unit
    length (the catalog normalises them), so cosine is a dot product. ``dtype`` ``float16`` halves the memory (73 MB
    at 100k rows of 384 dimensions) on tables with an ANN index; their products run on an 8-bit copy (37 MB more,
    :class:`~mmsupport.onnx_models.QuantizedRows`), 1.6-1.9 ms at 100k rows on two AVX2 cores against 3.8 for the
    float16 product, and the best rows are scored again from the float16 vectors, exact to about 1e-3. ``dtype``
    ``uint8`` keeps only an 8-bit copy, for the largest tables (:data:`RANK_IN_MEMORY_MB`): it ranks given rows
    (``among``), and a product over all of them is not what it is for (:attr:`ranks_all_rows`).

    With ``columns`` the index also keeps those columns of its rows, for :meth:`rows`, unless they take more than
    :data:`ROWS_IN_MEMORY_MB`."""

    def __init__(self, dataset, column: str = "vector", dtype=np.float32, columns: list[str] | None = None):
        import pyarrow as pa

        from mmsupport.onnx_models import QuantizedRows, QuantizedSubsets, quantize_rows

        ids, offsets, blocks, scales, kept, kept_bytes = [], [], [], [], [], 0
        extra = [name for name in columns or [] if name not in ("id", column)]
        for batch in dataset.to_batches(columns=["id", column, "_rowoffset", *extra],
                                        filter=f"{column} IS NOT NULL",
                                        batch_size=65_536):  # converted a block at a time: no second full copy
            vectors = batch.column(column)
            ids.append(batch.column("id"))
            offsets.append(batch.column("_rowoffset").to_numpy())
            block = vectors.flatten().to_numpy().reshape(len(vectors), vectors.type.list_size)
            if dtype == np.uint8:
                block, block_scales = quantize_rows(block)
                scales.append(block_scales)
            blocks.append(block.astype(dtype, copy=False))
            if columns and kept is not None:
                kept.append(batch.select(columns))
                kept_bytes += kept[-1].nbytes
                if kept_bytes > ROWS_IN_MEMORY_MB * 2**20:
                    kept = None
        width = dataset.schema.field(column).type.list_size
        # Arrow strings take a fraction of the memory of a list of Python strings
        self.ids = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
        #: ``columns`` of the rows, in matrix order (one chunk: taking from many is twenty times slower), or None
        self.kept = pa.Table.from_batches(kept).combine_chunks() if columns and kept else None
        self.offsets = np.concatenate(offsets) if offsets else np.empty(0, dtype=np.int64)
        # every row has a vector (the offsets are 0, 1, 2, ...): a row's offset is its position in the matrix
        self._every_row = not len(self.offsets) or self.offsets[-1] == len(self.offsets) - 1
        self.matrix = np.concatenate(blocks) if blocks else np.empty((0, width), dtype=dtype)
        self._bytes = self._last_scores = self._subsets = None
        if self.matrix.dtype == np.float16 and len(self.matrix):
            self._bytes = QuantizedRows(self.matrix)
        if self.matrix.dtype == np.uint8 and len(self.matrix):
            self._subsets = QuantizedSubsets(self.matrix, np.concatenate(scales))
        #: Whether a product over every row is quick enough for a search (all but the 8-bit copy).
        self.ranks_all_rows = self.matrix.dtype != np.uint8

    def nearest(self, query_vector: np.ndarray, k: int, among: np.ndarray | None = None) -> list[dict]:
        """The ``k`` closest rows (of the row offsets ``among`` when given), best first, as ``{"id", "_rowoffset",
        "_cosine"}``."""
        if not len(self.ids):
            return []
        positions = None
        if among is not None:
            positions = self._positions(np.asarray(among, dtype=np.int64))
        scores = self._scores(query_vector, positions, rounded=True)
        if positions is None:
            positions = np.arange(len(scores))
        if self._bytes is not None and len(scores) > 2 * k:  # rounded cosines can swap close rows: score the best again
            best = np.argpartition(-scores, 2 * k - 1)[:2 * k]
            positions = positions[best]
            scores = self._scores(query_vector, positions)
        k = min(k, len(scores))
        if not k:
            return []
        best = np.argpartition(-scores, k - 1)[:k]
        order = best[np.argsort(-scores[best])]
        return [{"id": self.ids[int(row)].as_py(), "_rowoffset": int(self.offsets[row]), "_cosine": float(scores[i])}
                for i, row in zip(order, positions[order])]

    def rows(self, offsets: list[int]) -> dict[str, dict]:
        """The kept columns of the rows at ``offsets`` that are in the index, by id (none when it keeps no
        columns)."""
        if self.kept is None or not offsets:
            return {}
        rows = self.kept.take(self._positions(np.asarray(offsets, dtype=np.int64))).to_pylist()
        return {row["id"]: row for row in rows}

    def ids_at(self, offsets: list[int]) -> list[str]:
        """The ids of the rows at ``offsets`` (rows that have a vector)."""
        return self.ids.take(self._at(offsets)).to_pylist()

    def cosine(self, query_vector: np.ndarray, offsets: list[int]) -> list[float]:
        """Cosine similarity of the query to each row at ``offsets`` (rows that have a vector)."""
        return self._scores(query_vector, self._at(offsets)).tolist()

    def _at(self, offsets: list[int]) -> np.ndarray:
        """Matrix positions of the rows at ``offsets``, one each: every one of them must have a vector (unlike
        :meth:`_positions`, which leaves out those that do not)."""
        return np.searchsorted(self.offsets, np.asarray(offsets, dtype=np.int64))

    def _positions(self, offsets: np.ndarray) -> np.ndarray:
        """Matrix positions of the rows at ``offsets`` that have a vector (the others are not in the matrix)."""
        if self._every_row:
            return offsets
        found = np.searchsorted(self.offsets, offsets).clip(max=len(self.offsets) - 1)
        return found[self.offsets[found] == offsets]

    def _scores(self, query_vector: np.ndarray, positions: np.ndarray | None = None, *,
                rounded: bool = False) -> np.ndarray:
        """Cosines of the query to the rows at matrix ``positions`` (all rows when ``None``), as float32. ``rounded``:
        on a float16 matrix, from the 8-bit product over all rows, several times faster but off by up to about 3e-3.
        Without it a float16 matrix is read for a few rows only (the best of a rounded product, hybrid's full-text
        rows), in numpy's own loops: PyTorch's threads would keep spinning after so small a product and slow the
        next query's embedding by over a millisecond."""
        if self._subsets is not None:
            return self._subsets(query_vector.astype(np.float32),
                                 np.arange(len(self.ids)) if positions is None else np.asarray(positions, np.int64))
        if rounded and self._bytes is not None:
            key, last = query_vector.tobytes(), self._last_scores  # a search naming attributes asks twice
            scores = last[1] if last and last[0] == key else self._bytes(query_vector.astype(np.float32))
            self._last_scores = (key, scores)
            return scores if positions is None else scores[positions]
        rows = self.matrix if positions is None else self.matrix[positions]
        if rows.dtype == np.float16:
            return np.einsum("ij,j->i", rows.astype(np.float32), query_vector.astype(np.float32))
        with self._blas_threads():
            return rows @ query_vector

    def _blas_threads(self):
        return _blas().limit(limits=1 if len(self.ids) <= ONE_THREAD_ROWS else None, user_api="blas")


def load_vectors(dataset, columns: list[str]) -> Future | None:
    """The vectors of ``dataset`` (a table with an ANN index) as a float16 :class:`ExactIndex` keeping ``columns``
    of its rows, loading in a background thread (one load at a time; a daemon, so a CLI search does not wait for it
    at exit); searches without a ``where`` filter are exact in memory once it is there. Past
    :data:`SEARCH_IN_MEMORY_MB` the index holds an 8-bit copy instead, which ranks the ANN index's candidates;
    ``None`` past :data:`RANK_IN_MEMORY_MB`."""
    values = dataset.count_rows() * dataset.schema.field("vector").type.list_size
    if values * np.dtype(np.float16).itemsize <= SEARCH_IN_MEMORY_MB * 2**20:
        dtype = np.float16
    elif values <= RANK_IN_MEMORY_MB * 2**20:
        dtype = np.uint8
    else:
        return None
    future = Future()

    def load():
        try:
            with _loading:
                future.set_result(ExactIndex(dataset, dtype=dtype, columns=columns))
        except Exception as error:  # noqa: BLE001 - searches rank through LanceDB's refine step instead
            logger.warning("The table's vectors could not be loaded into memory; searches rank with LanceDB's "
                           "refine step instead: %s", error)
            future.set_exception(error)

    threading.Thread(target=load, name="mmsupport-vectors", daemon=True).start()
    return future


def read_ahead_full_text(dataset, index_name: str) -> None:
    """Read the full-text index ``index_name`` of ``dataset`` (with its positions, for phrase queries) into LanceDB's
    index cache in a background thread, so that searches on object storage read no posting lists from the store: at
    1M rows on ``moto_server``, full-text queries took 39 ms p50 cold and 1.7 ms after a 0.2 s read-ahead (a
    script)."""

    def read() -> None:
        try:
            dataset.prewarm_index(index_name, with_position=True)
        except Exception as error:  # noqa: BLE001 - searches then read the posting lists as they need them
            logger.warning("The full-text index could not be read ahead: %s", error)

    threading.Thread(target=read, name="mmsupport-full-text", daemon=True).start()


@cache
def _blas():
    """numpy's BLAS thread pools, found once (threadpoolctl scans the loaded libraries)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def search(catalog, query: str, *, mode: str = "hybrid", k: int = 5, where: str | None = None,
           attributes: bool = True):
    """``(row, score, cosine)`` triples, best first, for :meth:`Catalog.search
    <mmsupport.catalog.Catalog.search>`; ``cosine`` is the row's similarity to the query (``None`` in ``fts``).
    With ``attributes`` the catalog attributes and prices the query names boost and filter the rows
    (:mod:`mmsupport.attributes`)."""
    if mode not in SEARCH_MODES:
        raise InvalidInput(f"Unknown search mode {mode!r}.", hint=f"Use one of: {', '.join(SEARCH_MODES)}.")
    if not query or not query.strip():
        raise InvalidInput("The search query is empty.", hint="Type a few words describing what you look for.")
    if k < 1:
        raise InvalidInput(f"k={k} asks for no results.", hint="Use k of 1 or more.")
    view = catalog.view()
    dataset, columns = view.dataset, view.columns
    named = AttributeIndex.of(view) if attributes else None
    wanted = named.read(query) if named else Wanted()
    filters = wanted.where(where)
    try:
        boosted = _search_boosted(catalog, view, query, mode, k, filters, named, wanted) if wanted.boosts else None
        if boosted is not None:
            return boosted
        if mode == "fts":
            return [(row, row["_score"], None) for row in _fts(dataset, query, k, filters, columns)]
        if mode == "vector":
            rows = _nearest(view, catalog.embedder.embed_query(query), k, filters, columns)
            return [(row, row["_cosine"], row["_cosine"]) for row in _complete(view, rows)]
        _, candidates, bm25, phrase_ids = _hybrid_candidates(catalog, view, query, k, filters)
        ranked = fuse(bm25, {item_id: row["_cosine"] for item_id, row in candidates.items()}, phrase_ids)[:k]
        rows = _complete(view, [candidates[item_id] for item_id, _ in ranked])
        return [(row, score, row["_cosine"]) for row, (_, score) in zip(rows, ranked)]
    except (ValueError, RuntimeError) as error:
        if where and ("where" in str(error).lower() or "field" in str(error).lower() or "sql" in str(error).lower()):
            raise InvalidInput(
                f"The filter {where!r} is not valid: {str(error).splitlines()[0]}",
                hint=f"Write SQL over the columns {', '.join(columns)}, "
                "e.g. \"kind = 'product' AND price < 50\".",
            ) from None
        raise


def _hybrid_candidates(catalog, view, query: str, k: int, where: str | None):
    """The candidates of hybrid search: the query vector, the rows of either list by id with ``_rowoffset`` and
    ``_cosine``, their BM25 scores and the ids of rows holding the query as an exact phrase."""
    dataset, n = view.dataset, max(k, CANDIDATES)
    exact = view.in_memory(where)  # where the full-text rows' cosines come from
    full_text = _worker.submit(_full_text, dataset, query, n, where, exact)
    query_vector = catalog.embedder.embed_query(query)
    candidates = {row["id"]: row for row in _nearest(view, query_vector, n, where, ["id"])}
    lexical, phrase_ids = full_text.result()
    new = [item_id for item_id in lexical if item_id not in candidates]
    if exact is not None:
        cosines = exact.cosine(query_vector, [lexical[item_id]["_rowoffset"] for item_id in new])
    else:
        cosines = [float(np.dot(query_vector, lexical[item_id]["vector"])) for item_id in new]
    candidates.update((item_id, {**lexical[item_id], "_cosine": c}) for item_id, c in zip(new, cosines))
    bm25 = {item_id: row["_score"] for item_id, row in lexical.items()}
    return query_vector, candidates, bm25, phrase_ids


def _search_boosted(catalog, view, query: str, mode: str, k: int, where: str | None, named: AttributeIndex,
                    wanted: Wanted):
    """:func:`search` for a query naming attributes: the candidates of its mode, joined (in vector and hybrid) by
    the nearest rows that have every named attribute, each ranked by its score plus its attribute boost. ``None``
    when the candidates without boosts put a support article first: a support question, searched as before."""
    dataset, n, in_memory = view.dataset, max(k, CANDIDATES), view.in_memory(where)
    phrase_ids, having = frozenset(), None
    if mode == "fts":
        rows = {row["id"]: row for row in _fts(dataset, query, n, where, ["id"], in_memory)}
        best = max((row["_score"] for row in rows.values()), default=0.0) or 1.0
        ranked = [(item_id, row["_score"] / best) for item_id, row in rows.items()]
    elif mode == "vector":
        query_vector = catalog.embedder.embed_query(query)
        if in_memory is not None and not in_memory.ranks_all_rows:  # ranked while the ANN index searches
            having = _worker.submit(_nearest_having, in_memory, named, wanted, query_vector, n)
        rows = {row["id"]: row for row in _nearest(view, query_vector, n, where, ["id"])}
        ranked = [(item_id, row["_cosine"]) for item_id, row in rows.items()]
    else:
        query_vector, rows, bm25, phrase_ids = _hybrid_candidates(catalog, view, query, k, where)
        ranked = fuse(bm25, {item_id: row["_cosine"] for item_id, row in rows.items()}, phrase_ids)
    if not ranked or named.is_article(rows[max(ranked, key=lambda pair: pair[1])[0]]["_rowoffset"]):
        return None
    if mode != "fts":
        if in_memory is not None:
            pool, mask = having.result() if having else _nearest_having(in_memory, named, wanted, query_vector, n)
            if pool is None:  # too many rows have them to rank: the nearest are among the ANN index's candidates
                among = _candidates(view, query_vector, n)
                pool = in_memory.nearest(query_vector, n, among=among[mask[among]])
        else:
            pool = _nearest(view, query_vector, n, " AND ".join(
                f"({part})" for part in (where, named.sql(wanted)) if part), ["id"])
        rows = {**{row["id"]: row for row in pool}, **rows}
        ranked = ([(item_id, row["_cosine"]) for item_id, row in rows.items()] if mode == "vector" else
                  fuse(bm25, {item_id: row["_cosine"] for item_id, row in rows.items()}, phrase_ids))
    offsets = [rows[item_id]["_rowoffset"] for item_id, _ in ranked]
    ranked = named.boost(wanted, ranked, offsets, phrase_ids)[:k]
    complete = _complete(view, [rows[item_id] for item_id, _ in ranked])
    return [(row, score, row.get("_cosine")) for row, (_, score) in zip(complete, ranked)]


def _nearest_having(in_memory: ExactIndex, named: AttributeIndex, wanted: Wanted, query_vector: np.ndarray,
                    n: int) -> tuple[list[dict] | None, np.ndarray]:
    """``(pool, mask)``: ``mask`` tells which rows have every attribute ``wanted`` names, and ``pool`` is the ``n``
    nearest of them, ranked from memory, or ``None`` when the table's 8-bit copy holds more of them than
    :data:`ATTRIBUTE_ROWS_RANKED`."""
    mask = named.having(wanted)
    if in_memory.ranks_all_rows or np.count_nonzero(mask) <= ATTRIBUTE_ROWS_RANKED:
        return in_memory.nearest(query_vector, n, among=np.flatnonzero(mask)), mask
    return None, mask


def fuse(bm25: dict[str, float], cosine: dict[str, float], phrase_ids=frozenset()) -> list[tuple[str, float]]:
    """Hybrid ranking of all candidates (the keys of ``cosine``, their similarity to the query):
    ``FTS_WEIGHT * bm25 / best_bm25 + (1 - FTS_WEIGHT) * cosine``, with the cosine min-max scaled over the
    candidates, plus :data:`PHRASE_BONUS` for ``phrase_ids``, the rows containing the whole query as a phrase."""
    if not cosine:
        return []
    best_bm25 = max(bm25.values(), default=0.0) or 1.0
    low, high = min(cosine.values()), max(cosine.values())
    spread = (high - low) or 1.0
    scored = [(i, FTS_WEIGHT * bm25.get(i, 0.0) / best_bm25 + (1 - FTS_WEIGHT) * (value - low) / spread
               + PHRASE_BONUS * (i in phrase_ids)) for i, value in cosine.items()]
    return sorted(scored, key=lambda pair: -pair[1])


def _fts(dataset, query: str | PhraseQuery, k: int, where: str | None, columns: list[str],
         exact: ExactIndex | None = None) -> list[dict]:
    """The ``k`` best full-text rows with ``columns``, ``_score`` and ``_rowoffset``. With ``exact`` (the table's
    vectors in memory) their ids come from it: the table's data files are not read for them (on object storage, a
    request or more per row)."""
    full_text = MatchQuery(query, "text") if isinstance(query, str) else query
    read = [name for name in columns if name != "id"] if exact is not None else columns
    rows = dataset.to_table(columns=[*read, "_score", "_rowoffset"], full_text_query=full_text, filter=where,
                            prefilter=bool(where), limit=k).to_pylist()
    if exact is not None and "id" in columns:
        for row, item_id in zip(rows, exact.ids_at([row["_rowoffset"] for row in rows])):
            row["id"] = item_id
    return rows


def _full_text(dataset, query: str, n: int, where: str | None, exact: ExactIndex | None) -> tuple[dict, set]:
    """The BM25 side of hybrid: rows by id (with ``_rowoffset``, ``_score`` and, unless the table's vectors are in
    memory as ``exact``, ``vector``) and the ids of rows holding the query as an exact phrase. Phrase rows outside the
    BM25 list join it with a score of 0."""
    columns = ["id"] if exact is not None else ["id", "vector"]
    rows = {row["id"]: row for row in _fts(dataset, query, n, where, columns, exact)}
    phrase_ids = set()
    try:
        for row in _fts(dataset, PhraseQuery(query, "text"), n, where, columns, exact):
            phrase_ids.add(row["id"])
            rows.setdefault(row["id"], {**row, "_score": 0.0})
    except (ValueError, RuntimeError) as error:
        if "position" not in str(error):  # tables indexed before positions were: no phrase bonus until next ingest
            raise
    return rows, phrase_ids


def _nearest(view, query_vector: np.ndarray, k: int, where: str | None, columns: list[str]) -> list[dict]:
    """The ``k`` rows closest to the query, best first, with ``_rowoffset`` and ``_cosine``. Without ``where``: ids
    only, from memory on tables whose vectors are there: exact, or the ANN index's candidates ranked there on the
    largest tables (see :data:`RANK_IN_MEMORY_MB`). Otherwise ``columns`` from LanceDB: a prefiltered scan, or the
    ANN index's search with its refine step."""
    in_memory = view.in_memory(where)
    if in_memory is not None and in_memory.ranks_all_rows:
        return in_memory.nearest(query_vector, k)
    if in_memory is not None:
        return in_memory.nearest(query_vector, k, among=_candidates(view, query_vector, k))
    nearest = {"column": "vector", "q": query_vector, "k": k, "metric": "cosine", "nprobes": NPROBES,
               "refine_factor": REFINE_FACTOR}  # (no index: an exact scan, nprobes and refine ignored)
    rows = view.dataset.to_table(columns=[*columns, "_rowoffset", "_distance"], nearest=nearest, filter=where,
                                 prefilter=True).to_pylist()
    for row in rows:
        row["_cosine"] = 1.0 - row.pop("_distance")
    return rows


def _candidates(view, query_vector: np.ndarray, k: int) -> np.ndarray:
    """Row offsets of the ``RANK_FACTOR * max(k, CANDIDATES)`` rows the ANN index finds closest to the query,
    without its refine step; the last query's are kept on the view, since a search naming attributes asks again."""
    count = RANK_FACTOR * max(k, CANDIDATES)
    key = (query_vector.tobytes(), count)
    last = view.cache.get("candidates")
    if last and last[0] == key:
        return last[1]
    nearest = {"column": "vector", "q": query_vector, "k": count, "metric": "cosine", "nprobes": NPROBES}
    found = view.dataset.to_table(columns=["_rowoffset", "_distance"], nearest=nearest)
    offsets = found.column("_rowoffset").to_numpy()
    view.cache["candidates"] = (key, offsets)
    return offsets


def _complete(view, rows: list[dict]) -> list[dict]:
    """``rows`` with all the view's columns: those read as ids only are filled in from memory where the view keeps
    them (:meth:`ExactIndex.rows`), the others from one LanceDB ``take`` by row offset."""
    wanted = set(view.columns)
    partial = [row for row in rows if not wanted <= row.keys()]
    if not partial:
        return rows
    in_memory = view.in_memory()
    full = in_memory.rows([row["_rowoffset"] for row in partial]) if in_memory is not None else {}
    missing = [row["_rowoffset"] for row in partial if row["id"] not in full]
    if missing:
        full |= {row["id"]: row for row in view.dataset.take(missing, columns=view.columns).to_pylist()}
    return [row if wanted <= row.keys() else {**row, **full[row["id"]]} for row in rows]


def create_ann_index(table) -> None:
    """Build the ANN index the catalog uses on large tables (cosine, IVF + HNSW over scalar-quantised vectors)."""
    from lancedb.index import IvfHnswSq

    table.create_index("vector", config=IvfHnswSq(distance_type="cosine"))


def search_with_image(catalog, query: str, image, *, mode: str = "hybrid", k: int = 5, where: str | None = None):
    """``(row, score, cosine)`` triples, best first, searched against the catalog's image vectors.

    ``image``: a photo (path, bytes or PIL image) or its vector (:meth:`Catalog.embed_photo
    <mmsupport.catalog.Catalog.embed_photo>`); ``None`` in ``image`` mode searches the pictures with the words (CLIP
    text tower). In ``image`` mode the score and ``cosine`` are the picture's similarity to the query; in the other
    modes the words are searched in that mode and fused with the photo's hits (:func:`fuse_ranks`), and ``cosine``
    is the text similarity (``None`` for rows only the photo found)."""
    if mode not in SEARCH_MODES:
        raise InvalidInput(f"Unknown search mode {mode!r}.", hint=f"Use one of: {', '.join(SEARCH_MODES)}.")
    words = (query or "").strip()
    if image is None and not words:
        raise InvalidInput("The search has neither words nor a photo.", hint="Type what you look for or add a photo.")
    if k < 1:
        raise InvalidInput(f"k={k} asks for no results.", hint="Use k of 1 or more.")
    catalog.check_model("image_vector")
    pictures = catalog.image_embedder
    if image is None:
        vector = pictures.embed_texts([words])[0]
    else:
        vector = image if isinstance(image, np.ndarray) else pictures.embed_query(image)
    view = catalog.view()
    if mode == "image" or not words:
        rows = _complete(view, _nearest_pictures(catalog, vector, k, where))
        return [(row, row["_cosine"], row["_cosine"] if mode == "image" else None) for row in rows]
    text = search(catalog, words, mode=mode, k=k, where=where)
    hits = _nearest_pictures(catalog, vector, k, where)
    by_id = {row["id"]: (row, cosine) for row, _, cosine in text}
    ranked = fuse_ranks([row["id"] for row, _, _ in text], [hit["id"] for hit in hits])[:k]
    pending = [hit for hit in hits if hit["id"] not in by_id and hit["id"] in dict(ranked)]
    by_id.update((row["id"], (row, None)) for row in _complete(view, pending))
    return [(by_id[item_id][0], score, by_id[item_id][1]) for item_id, score in ranked]


def fuse_ranks(text_ids: list[str], image_ids: list[str], *, weight: float = IMAGE_WEIGHT) -> list[tuple[str, float]]:
    """Weighted reciprocal rank fusion of the text side's and the image side's ids, best first (see
    :data:`IMAGE_WEIGHT`).

    >>> [item for item, _ in fuse_ranks(["a", "b", "c"], ["c", "d"])]
    ['c', 'a', 'd', 'b']
    """
    scores: dict[str, float] = {}
    image_rank = {item_id: rank for rank, item_id in enumerate(image_ids, start=1)}
    for rank, item_id in enumerate(text_ids, start=1):
        scores[item_id] = 1.0 / (IMAGE_RRF_K + rank)
    for item_id, rank in image_rank.items():
        scores[item_id] = scores.get(item_id, 0.0) + weight / (IMAGE_RRF_K + rank)
    unranked = len(image_ids) + 1
    return sorted(scores.items(), key=lambda pair: (-pair[1], image_rank.get(pair[0], unranked)))


def _nearest_pictures(catalog, vector: np.ndarray, k: int, where: str | None) -> list[dict]:
    """The ``k`` rows whose pictures are closest to ``vector``, best first, as ``{"id", "_rowoffset", "_cosine"}``:
    from memory on tables searched exactly, else a LanceDB scan of ``image_vector`` (prefiltered by ``where``)."""
    view = catalog.view()
    if not where and view.exact is not None:
        if "image exact" not in view.cache:
            view.cache["image exact"] = ExactIndex(view.dataset, "image_vector")
        return view.cache["image exact"].nearest(vector, k)
    nearest = {"column": "image_vector", "q": vector, "k": k, "metric": "cosine"}
    condition = "image_vector IS NOT NULL" + (f" AND ({where})" if where else "")
    rows = view.dataset.to_table(columns=["id", "_rowoffset", "_distance"], nearest=nearest, filter=condition,
                                 prefilter=True).to_pylist()
    for row in rows:
        row["_cosine"] = 1.0 - row.pop("_distance")
    return rows
