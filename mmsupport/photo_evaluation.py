"""Evaluation of photo queries: does a shopper's photo find the products like it, by its words, its pixels or both?

A photo query line is ``{"image": "path", "relevant": ["id", ...]}`` with optional ``id`` (the photo's own product,
left out of the results: a catalog picture trivially finds itself), ``text`` (what the photo shows in words, e.g. a
VLM description; see :func:`evaluate_photos`) and ``kind``. Each query runs three ways, as a photo turn can:

- ``text-only``: the words in hybrid mode (what happens without image vectors),
- ``image-only``: the photo against the image vectors,
- ``fused``: both, fused by :func:`mmsupport.retrieval.fuse_ranks`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mmsupport.errors import InvalidInput
from mmsupport.evaluation import first_relevant_rank, query_metrics, read_jsonl, summarize

SIDES = ("text-only", "image-only", "fused")


@dataclass(frozen=True)
class PhotoQuery:
    image: str
    relevant: frozenset[str]
    id: str | None = None
    text: str | None = None
    kind: str = "all"


def load_photo_queries(path: str | Path) -> list[PhotoQuery]:
    """Photo queries from a JSONL file; image paths are relative to the file's folder unless absolute."""
    path = Path(path)
    queries = read_jsonl(
        path, lambda data: PhotoQuery(str(path.parent / data["image"]), frozenset(map(str, data["relevant"])),
                                      data.get("id"), data.get("text"), data.get("kind", "all")),
        what="photo query", example='{"image": "a.jpg", "relevant": ["id1"]}')
    if not queries:
        raise InvalidInput(f"No photo queries in {path}.", hint="Check the file.")
    return queries


def evaluate_photos(catalog, queries: list[PhotoQuery], *, k: int = 10, describe=None) -> dict:
    """``{side: summary}`` (:func:`mmsupport.evaluation.summarize`) for the sides of :data:`SIDES`.

    The words of a query are ``describe(image)`` when given (e.g. a VLM's ``describe``), else its ``text``; a side
    that needs words is ``None`` when no query has any."""
    rows: dict[str, list[dict]] = {side: [] for side in SIDES}
    for query in queries:
        words = describe(query.image) if describe else query.text
        for side in SIDES:
            if side != "image-only" and not words:
                continue
            image = None if side == "text-only" else query.image
            mode = "image" if side == "image-only" else "hybrid"
            started = time.perf_counter()
            found = catalog.search(words or "", mode=mode, k=k + 1, image=image)
            ms = (time.perf_counter() - started) * 1000
            ranked = [item.id for item in found if item.id != query.id][:k]
            row = query_metrics(ranked, query.relevant, k)
            row.update(rank=first_relevant_rank(ranked, query.relevant), ms=ms)
            rows[side].append(row)
    return {side: summarize(found, k) if found else None for side, found in rows.items()}
