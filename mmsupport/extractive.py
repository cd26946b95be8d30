"""Answers without a model: what the catalog itself says, quoted and cited.

Used when no vision-language model is loaded, or it fails or times out mid-turn. For a support article, the one to
three sentences of the best article closest to the question are quoted (cosine similarity with the catalog's own
embedder; the sentences were embedded once at ingest, so a turn only compares vectors). For products, one factual line
per product found (title, colour, price, and the sentence of the top one that answers the question when one does);
for variant questions, the variant or the colours the family comes in.
"""

from __future__ import annotations

import numpy as np

from mmsupport.catalog import Catalog, Item
from mmsupport.variants import Variants

#: Most sentences quoted from one article, and how far below the best sentence another may score to join it.
MAX_QUOTED = 3
QUOTE_MARGIN = 0.12
#: A product sentence is quoted only when it is at least this close to the question.
PRODUCT_SENTENCE_COSINE = 0.45
#: Related items named after an article.
MAX_RELATED = 2
#: The best product among this many top items competes with the best article for the answer.
CONTENDERS = 3


def best_sentences(query_vector: np.ndarray, sentences: list[str], vectors: np.ndarray) -> list[tuple[str, float]]:
    """Up to :data:`MAX_QUOTED` sentences closest to the query, in their order in the text, with their cosine: the
    best one and any within :data:`QUOTE_MARGIN` of it."""
    if not sentences:
        return []
    scores = vectors @ query_vector
    best = float(scores.max())
    chosen = [int(i) for i in np.argsort(-scores)[:MAX_QUOTED] if scores[i] >= best - QUOTE_MARGIN]
    return [(sentences[i], float(scores[i])) for i in sorted(chosen)]


def facts(item: Item) -> str:
    """``colour, price`` of an item, as a suffix (empty when it has neither)."""
    parts = [item.colour, f"{item.price:.2f}" if item.price is not None else None]
    return "".join(f", {part}" if i else f" — {part}" for i, part in enumerate(p for p in parts if p))


class ShortAnswers:
    """Extractive answers from ``catalog`` in the wording of ``prompts`` (the agent's templates)."""

    def __init__(self, catalog: Catalog, prompts: dict[str, str]):
        self.catalog, self.prompts = catalog, prompts

    def answer(self, items: list[Item], query: str) -> str:
        """The answer for the items a search found (best first) for ``query``: the article most similar to the query
        (cosine of the whole text, which picks the right article more often than the hybrid rank on the sample
        questions) quoted, when its closest sentence is closer than the best product's; else the products."""
        vector = self.catalog.embedder.embed_query(query)  # already embedded by the search: served from its cache
        article = max((item for item in items if item.kind == "article"), default=None,
                      key=lambda item: item.score if item.similarity is None else item.similarity)
        product = next((item for item in items[:CONTENDERS] if item.kind == "product"), None)
        if article and (product is None or self._closeness(article, vector) >= self._closeness(product, vector)):
            return self._article([article, *(item for item in items if item is not article)], vector)
        products = [item for item in items if item.kind == "product"]
        lines = [self._product(item, vector if i == 0 else None) for i, item in enumerate(products)]
        return self.prompts["short_products"].format(items="\n".join(lines))

    def variants(self, variants: Variants) -> str:
        """The answer to a variant question."""
        p = self.prompts
        if variants.match is not None:
            return p["variant_found"].format(family=variants.name, colour=variants.colour,
                                             item=self._product(variants.match))
        if variants.colour is None:
            lines = "\n".join(self._product(item) for item in variants.family)
            return p["variant_colours"].format(family=variants.name, items=lines)
        lines = "\n".join(self._product(item) for item in variants.alternatives)
        text = p["variant_missing"].format(family=variants.name, colour=variants.colour, colours=variants.colours())
        return text + ("\n" + p["variant_alternatives"].format(colour=variants.colour, items=lines) if lines else "")

    def _closeness(self, item: Item, vector: np.ndarray) -> float:
        """Cosine of the query to the item's closest sentence (0 when it has none)."""
        sentences, vectors = self.catalog.sentences(item.id)
        return float((vectors @ vector).max()) if sentences else 0.0

    def _article(self, items: list[Item], vector: np.ndarray) -> str:
        article = items[0]
        quoted = best_sentences(vector, *self.catalog.sentences(article.id))
        quote = " ".join(sentence for sentence, _ in quoted) or article.text.split("\n")[-1]
        answer = self.prompts["short_article"].format(title=article.title, id=article.id, quote=quote)
        related = [f"{item.title} [{item.id}]" for item in items[1:1 + MAX_RELATED]]
        return answer + ("\n" + self.prompts["short_related"].format(items="; ".join(related)) if related else "")

    def _product(self, item: Item, vector: np.ndarray | None = None) -> str:
        line = self.prompts["short_product"].format(title=item.title, facts=facts(item), id=item.id)
        if vector is not None:
            quoted = best_sentences(vector, *self.catalog.sentences(item.id))
            best = max(quoted, key=lambda pair: pair[1], default=None)
            if best and best[1] >= PRODUCT_SENTENCE_COSINE:
                line += self.prompts["short_product_quote"].format(quote=best[0])
        return line
