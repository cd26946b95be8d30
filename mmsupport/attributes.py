"""Attribute words in a search query (colour, gender, product type, usage, season, brand, price), read against the
catalog's own values, and the boost they give in :mod:`mmsupport.retrieval`.

The attributes are the catalog's short, repeated text columns, found when a table version is first searched: every
text column but the id, title, text, image and family whose values are at most :data:`MAX_VALUE_WORDS` words and
that has from 2 to :data:`MAX_VALUES` distinct values (in the Fashion Product Images table: gender, base colour,
article type, sub- and master category, usage, season). A query names a value when it holds all of the value's words
as whole words, singular or plural ("shirt" names ``Shirts``, "t-shirt" and "tshirt" name ``Tshirts``; "men" is not
in "women"), or a word only that value has in its column and no other column uses ("navy" names ``Navy Blue``).
Within a column the longest value wins ("grey melange" is ``Grey Melange``, not ``Grey``). Gender words are read as
the catalog's own gender values when it has them: man, men's, guy, male and him are ``Men``; woman, lady and her are
``Women``; both at once ("men or women") or anyone are ``Unisex``. Words are matched only against column values,
never against titles or descriptions, so a title mentioning "navy" does not make a row navy.

Price words need a numeric ``price`` column: "under $50", "below 50", "less than 50 dollars", "up to", "at most"
and "$50 or less" keep rows priced at most 50; "over", "above", "more than", "at least" and "$50 or more" at least 50;
"between $20 and $50" and "$20-$50" both bounds. These are filters. "cheap", "budget", "affordable", "inexpensive"
and "bargain" name the cheapest quarter of the catalog's prices, as an attribute like the others.

The rule (:func:`mmsupport.retrieval.search`): the candidates of the search mode, in vector and hybrid joined by the
nearest rows that have every named attribute, each get :data:`ATTRIBUTE_WEIGHT` times the share of the named
attributes they have added to their score; rows holding the whole query as an exact phrase get it once more, so a
copied product phrase still lands first. A query naming none (and no price) is searched exactly as without this
module, and so is one whose best candidate without boosts is a support article: attributes describe products, and a
support question that names a colour or a product type ("my red smartwatch is flashing") is not a product search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

#: Columns that are never attributes (free text, keys, paths, the variant family).
NOT_ATTRIBUTES = {"id", "kind", "title", "text", "image", "family", "price", "group"}
#: An attribute column has at most this many distinct values ...
MAX_VALUES = 1000
#: ... each of at most this many words.
MAX_VALUE_WORDS = 4
#: ... and this share of its values must read as attributes (a few words, not only a number); the others are
#: never matched.
USABLE_SHARE = 0.9
#: Up to this many values named in one column, the rows having one of them are found by comparing codes.
FEW_VALUES = 8
#: Added to a row's score when it has every attribute the query names (a share of it for some): as much as the exact
#: phrase bonus of hybrid. Chosen on the tuning part of the dev set (bench/eval_attributes.py): of 0.25, 0.5, 1, 2
#: and 4 the largest that leaves known-item MRR unchanged (at 2 it falls from 0.99 to 0.53; attribute nDCG@10 rises
#: with the weight, 0.83 at 0.25 and 0.88 at 1).
ATTRIBUTE_WEIGHT = 1.0
#: Gender words, each group read as the catalog value whose own word is in it.
GENDER_WORDS = ({"men", "man", "male", "guy", "gent", "gentleman", "him"},
                {"women", "woman", "female", "lady", "her"},
                {"unisex", "anyone", "anybody", "everyone", "everybody"})
#: Words that never name a value on their own, however rare in the catalog.
COMMON_WORDS = {"a", "an", "and", "or", "the", "of", "for", "with", "in", "on", "off", "to", "by", "set", "pack",
                "other", "free", "new", "item", "kit", "one", "all", "top", "up", "not", "no"}
#: Words asking for the cheap end of the catalog; the share of prices they name.
CHEAP_WORDS = {"cheap", "cheaper", "cheapest", "budget", "affordable", "inexpensive", "bargain", "lowcost"}
CHEAP_QUANTILE = 0.25
_CURRENCY = r"(?:[$€£₹]|rs\.?|inr|usd|eur)"
_UNIT = r"(?:\s*(?:\$|€|£|dollars?|euros?|pounds?|bucks|rupees|rs|inr|usd|eur)\b)?"
#: A price: a number with an optional currency, not a share or a measure ("50%", "30 days", "42 cm").
_NUMBER = (rf"{_CURRENCY}?\s*(\d+(?:\.\d+)?){_UNIT}"
           r"(?!\d|\s*(?:%|days?\b|weeks?\b|months?\b|years?\b|hours?\b|cm\b|mm\b|kg\b|g\b|gb\b|ml\b|inch))")
_AT_MOST = re.compile(rf"\b(?:under|below|less than|cheaper than|up to|at most|no more than)\s+{_NUMBER}"
                      rf"|{_NUMBER}\s+or (?:less|under)\b")
_AT_LEAST = re.compile(rf"\b(?:over|above|more than|at least)\s+{_NUMBER}|{_NUMBER}\s+or more\b")
#: Two bounds: "between 20 and 50", or a range with a currency ("$20-$50", "20 to 50 dollars").
_BETWEEN = re.compile(rf"\bbetween\s+{_NUMBER}\s+and\s+{_NUMBER}"
                      rf"|{_CURRENCY}\s*(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*{_NUMBER}"
                      rf"|\b(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\s*(?:dollars|euros|pounds|bucks|rupees)\b")


def words(text: str) -> list[str]:
    """Lower-case words, apostrophes kept ("it's")."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower().replace("\u2019", "'"))


def stem(word: str) -> str:
    """A crude singular: ``backpacks`` -> ``backpack``, ``dresses`` -> ``dress``, ``batteries`` -> ``battery``."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxzh":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


_GENDER = {word: group_name for group_name, group in zip(("men", "women", "unisex"), GENDER_WORDS) for word in group}


def _terms(text: str) -> list[str]:
    """Words as attribute matching reads them: singular, without a possessive, each gender word as its group's."""
    terms = (stem(word.removesuffix("'s").replace("'", "")) for word in words(text))
    return [_GENDER.get(term, term) for term in terms]


@dataclass
class Wanted:
    """What a query names: values per attribute column, price bounds, and whether it asks for cheap rows."""

    values: dict[str, set[str]] = field(default_factory=dict)
    low: float | None = None
    high: float | None = None
    cheap: bool = False

    def __bool__(self) -> bool:
        return bool(self.values) or self.cheap or self.low is not None or self.high is not None

    @property
    def boosts(self) -> bool:
        """Whether rows are boosted (some attribute named), not only filtered by price."""
        return bool(self.values) or self.cheap

    def where(self, where: str | None) -> str | None:
        """``where`` with the price bounds added."""
        bounds = [f"price >= {self.low!r}"] * (self.low is not None) + [f"price <= {self.high!r}"] * (
            self.high is not None)
        if not bounds:
            return where
        return " AND ".join([f"({where})"] * bool(where) + bounds)


class AttributeIndex:
    """The attribute columns of one table version, their values and each row's value, read once per version."""

    def __init__(self, dataset, columns: list[str]):
        names = [c for c in columns if c not in NOT_ATTRIBUTES]
        data = dataset.to_table(columns=names + [c for c in ("kind", "price") if c in columns])
        self.rows = data.num_rows
        self.articles = (data.column("kind").to_numpy(zero_copy_only=False) == "article" if "kind" in columns
                         else np.zeros(self.rows, dtype=bool))
        self.codes: dict[str, np.ndarray] = {}
        self.values: dict[str, list[str]] = {}
        for name in names:
            column = data.column(name)
            if not _is_text(column.type):
                continue
            encoded = column.combine_chunks().dictionary_encode()
            values = encoded.dictionary.to_pylist()
            if not 2 <= len(values) <= MAX_VALUES or sum(map(_usable, values)) < USABLE_SHARE * len(values):
                continue
            self.values[name] = values
            self.codes[name] = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        self.prices = (data.column("price").to_numpy(zero_copy_only=False).astype(float) if "price" in columns
                       else None)
        known = self.prices[np.isfinite(self.prices)] if self.prices is not None else np.empty(0)
        self.cheap_below = float(np.quantile(known, CHEAP_QUANTILE)) if len(known) else None
        self._phrases = {name: _phrases(values, self._other_words(name)) for name, values in self.values.items()}

    @classmethod
    def of(cls, view) -> AttributeIndex:
        """The index of a :class:`~mmsupport.catalog.CatalogView`, built on first use."""
        if "attributes" not in view.cache:
            view.cache["attributes"] = cls(view.dataset, view.columns)
        return view.cache["attributes"]

    def _other_words(self, name: str) -> set[str]:
        return {t for other, values in self.values.items() if other != name for v in values for t in _terms(v)}

    def read(self, query: str) -> Wanted:
        """What ``query`` names of this catalog's attributes and prices (see the module notes)."""
        wanted = Wanted()
        if self.prices is not None:
            wanted.low, wanted.high = _price_bounds(query.lower())
            wanted.cheap = self.cheap_below is not None and bool(CHEAP_WORDS & set(words(query)))
        terms = _terms(query)
        for name, phrases in self._phrases.items():
            found = _longest_matches(terms, phrases)
            genders = {_GENDER.get(t) for v in found for t in _terms(v)} - {None}
            unisex = phrases.get(("unisex",))
            if unisex and {"men", "women"} <= genders:
                found = {unisex}
            if found:
                wanted.values[name] = found
        return wanted

    def is_article(self, offset: int) -> bool:
        """Whether the row at ``offset`` is a support article."""
        return bool(self.articles[offset])

    def share(self, wanted: Wanted, offsets: np.ndarray) -> np.ndarray:
        """For rows at ``offsets``: the share of the named attributes each one has (0 to 1)."""
        hits = np.zeros(len(offsets))
        for name, values in wanted.values.items():
            hits += self._has(name, values)[self.codes[name][offsets]]
        if wanted.cheap:
            hits += self.prices[offsets] <= self.cheap_below
        return hits / (len(wanted.values) + wanted.cheap)

    def boost(self, wanted: Wanted, ranked: list[tuple[str, float]], offsets: list[int],
              phrase_ids=frozenset()) -> list[tuple[str, float]]:
        """``ranked`` (ids and scores of the rows at ``offsets``) re-ranked with each row's attribute boost. Rows in
        ``phrase_ids`` (holding the whole query as an exact phrase) get the weight once more, which keeps them above
        every other row as hybrid's phrase bonus does without boosts."""
        shares = self.share(wanted, np.asarray(offsets, dtype=np.int64))
        boosted = [(item_id, score + ATTRIBUTE_WEIGHT * (float(share) + (item_id in phrase_ids)))
                   for (item_id, score), share in zip(ranked, shares)]
        return sorted(boosted, key=lambda pair: -pair[1])

    def having(self, wanted: Wanted) -> np.ndarray:
        """Whether each row has every named attribute."""
        every = np.ones(self.rows, dtype=bool)
        for name, values in wanted.values.items():
            every &= self._rows_having(name, values)
        if wanted.cheap:
            every &= self.prices <= self.cheap_below
        return every

    def _rows_having(self, name: str, values: set[str]) -> np.ndarray:
        """Whether each row's value of column ``name`` is one of ``values``: one comparison of the codes per value
        (ten times as fast as a lookup by code at 1M rows), or the lookup when many values are named."""
        codes = [code for code, value in enumerate(self.values[name]) if value in values]
        if len(codes) > FEW_VALUES:
            return self._has(name, values)[self.codes[name]]
        having = np.zeros(self.rows, dtype=bool)
        for code in codes:
            having |= self.codes[name] == code
        return having

    def _has(self, name: str, values: set[str]) -> np.ndarray:
        """Whether each code of column ``name`` is one of ``values``, by code; the last entry, for the code -1 of rows
        without a value, is ``False`` (a lookup by code is four times as fast as ``np.isin`` at 100k rows)."""
        return np.array([value in values for value in self.values[name]] + [False])

    def sql(self, wanted: Wanted) -> str:
        """The ``where`` filter keeping the rows that have every named attribute."""
        from mmsupport.catalog import sql_literal

        parts = [f"{name} IN ({', '.join(sql_literal(v) for v in sorted(values))})"
                 for name, values in wanted.values.items()]
        return " AND ".join(parts + [f"price <= {self.cheap_below!r}"] * wanted.cheap)


def _is_text(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _usable(value: str | None) -> bool:
    """A value that reads as an attribute: a few words, not only a number."""
    return value is not None and 0 < len(value) <= 40 and len(value.split()) <= MAX_VALUE_WORDS and any(
        not t.isdigit() for t in _terms(value))


def _phrases(values: list[str], other_words: set[str]) -> dict[tuple[str, ...], str]:
    """How each value can be named: its words (and the words run together), and a word only it has in its column
    when no other column uses it and it is not a common word."""
    phrases: dict[tuple[str, ...], str] = {}
    counts: dict[str, int] = {}
    values = [value for value in values if _usable(value)]
    for value in values:
        terms = tuple(_terms(value))
        if terms:
            phrases.setdefault(terms, value)
            if len(terms) > 1:
                phrases.setdefault(("".join(terms),), value)
            for term in set(terms):
                counts[term] = counts.get(term, 0) + 1
    for value in values:
        for term in set(_terms(value)):
            if (counts[term] == 1 and (term,) not in phrases and term not in other_words and len(term) >= 3
                    and term not in COMMON_WORDS and not term.isdigit()):
                phrases[(term,)] = value
    return phrases


def _longest_matches(terms: list[str], phrases: dict[tuple[str, ...], str]) -> set[str]:
    """The values named in ``terms``, longest phrases first; a word names at most one value. Adjacent words also
    match run together ("t shirt" names ``Tshirts``)."""
    used = [False] * len(terms)
    found = set()
    for n in range(MAX_VALUE_WORDS, 0, -1):
        for start in range(len(terms) - n + 1):
            if any(used[start:start + n]):
                continue
            span = tuple(terms[start:start + n])
            value = phrases.get(span) or (phrases.get(("".join(span),)) if n > 1 else None)
            if value is not None:
                found.add(value)
                used[start:start + n] = [True] * n
    return found


def _price_bounds(text: str) -> tuple[float | None, float | None]:
    """``(low, high)``: the price bounds that ``text`` (lower case) asks for."""
    between = _BETWEEN.search(text)
    if between:
        low, high = sorted(float(g) for g in between.groups() if g)
        return low, high
    at_least, at_most = _AT_LEAST.search(text), _AT_MOST.search(text)
    return tuple(float(next(g for g in found.groups() if g)) if found else None for found in (at_least, at_most))
