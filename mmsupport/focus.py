"""The conversation's focus, and whether a new message continues it or starts a new topic.

The focus is what the conversation is about so far: the item the assistant last cited (or, when it cited none, found)
and the description of the latest earlier photo. A message is a **follow-up** of the focus only when

- it refers back to it: a pronoun or pointer ("is *it* waterproof?", "do *they* come in beige?", "*the* jacket"), or an
  ellipsis made only of variant words ("in black?", "a cheaper one?"), **and**
- it names no product type of its own that the focus is not ("Do you sell *backpacks*?" after jackets).

Product types are the catalog's own words (:class:`Vocabulary`): its product categories, the values of its type column
(``subcategory`` in the sample shop) and the last word of each variant family's name (jacket, backpack, headset).
A message that names a type without referring back ("Any rain jackets?", "kids headphones") is complete on its own
and searched alone, and so is anything that does not refer back ("And a lawnmower?"), so the no-match check runs on
the message alone. :func:`decide` says which, and why, in words the turn records in its search step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mmsupport.attributes import stem, words
from mmsupport.catalog import TYPE_COLUMNS, Catalog, Item, family_name

#: Words that point back at something already discussed.
POINTERS = {"it", "its", "it's", "itself", "them", "they", "their", "theirs", "they're", "this", "these", "that",
            "those", "one", "ones", "same", "mine"}
#: Words that point back when followed by a product type of the focus ("the jacket", "my speaker").
DETERMINERS = {"the", "my", "this", "that", "these", "those"}
#: Words of a question that carry no topic.
FUNCTION_WORDS = {"a", "an", "the", "and", "or", "but", "in", "on", "of", "for", "with", "to", "at", "by", "from", "as",
                  "do", "does", "did", "you", "your", "have", "has", "had", "got", "get", "any", "is", "are", "was",
                  "there", "what", "which", "how", "about", "can", "could", "would", "will", "i", "me", "we", "please",
                  "ok", "okay", "so", "then", "also", "too", "maybe", "perhaps", "come", "comes", "sell", "show",
                  "available", "stock", "still", "now", "instead", "just", "some", "much", "is", "be", "there's"}
#: Words that ask for a variant of the same thing (with the catalog's colours, and sizes as numbers).
VARIANT_WORDS = {"colour", "color", "colours", "colors", "size", "sizes", "other", "another", "version", "variant",
                 "cheaper", "bigger", "smaller", "larger", "lighter", "darker", "xs", "s", "m", "l", "xl", "xxl",
                 "small", "medium", "large", "shade", "different"}


def _head(name: str | None) -> str | None:
    """The type noun of a category, type value or family name: its last word of three letters or more."""
    found = [w for w in words(name or "") if len(w) >= 3 and not w.isdigit()]
    return stem(found[-1]) if found else None


@dataclass
class Vocabulary:
    """The catalog's product types (stemmed nouns) and colours (lower case)."""

    types: set[str]
    colours: set[str]

    @classmethod
    def of(cls, catalog: Catalog) -> Vocabulary:
        """Read from the catalog once per table version."""
        cache = catalog.view().cache
        if "vocabulary" not in cache:
            names = [*catalog.distinct("category", kind="product"), *catalog.distinct("family", kind="product")]
            for column in TYPE_COLUMNS:
                names += catalog.distinct(column, kind="product")
            types = {head for head in map(_head, names) if head}
            cache["vocabulary"] = cls(types, {c.lower() for c in catalog.distinct("colour", kind="product")})
        return cache["vocabulary"]

    def types_in(self, text: str) -> set[str]:
        """The product types ``text`` names."""
        return {stem(w) for w in words(text)} & self.types

    def item_types(self, item: Item) -> set[str]:
        """The product types of ``item``: its category, type column and family (for an article: the ones it is
        about)."""
        names = [item.category, *(item.attributes.get(column) for column in TYPE_COLUMNS)]
        if item.kind == "product":
            names.append(item.family or family_name(item.title))
        return {head for head in map(_head, names) if head} | self.types_in(item.title)


@dataclass
class Focus:
    """What the conversation is about, and whether this turn's message continues it (``used``) and why."""

    item: Item | None = None
    photo: str = ""
    used: bool = False
    reason: str = "the conversation has just started"
    #: Notes for the model about the focus ("the item being discussed is ...").
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.item.title} [{self.item.id}]" if self.item else "the earlier photo"

    def terms(self) -> list[str]:
        """Words added to the search query when the focus is used."""
        return [term for term in (self.photo, self.item.title if self.item else "") if term] if self.used else []

    def to_dict(self) -> dict:
        return {"used": self.used, "reason": self.reason, "item": self.item.id if self.item else None}


def decide(text: str, focus: Focus, vocabulary: Vocabulary) -> Focus:
    """Set ``focus.used`` and ``focus.reason`` for a message without a photo of its own (see the module notes)."""
    if focus.item is None and not focus.photo:
        focus.reason = "nothing earlier to refer back to"
        return focus
    tokens = words(text)
    named = vocabulary.types_in(text)
    focus_types = (vocabulary.item_types(focus.item) if focus.item else set()) | vocabulary.types_in(focus.photo)
    other = named - focus_types
    pointer = next((w for w in tokens if w in POINTERS), None)
    if pointer is None:
        pointer = next((f"{a} {b}" for a, b in zip(tokens, tokens[1:]) if a in DETERMINERS
                        and stem(b) in focus_types), None)
    content = [w for w in tokens if w not in FUNCTION_WORDS]
    variants = VARIANT_WORDS | vocabulary.colours
    ellipsis = all(w in variants or w.isdigit() for w in content)
    if other:
        focus.used, focus.reason = False, f"names its own product type ({', '.join(sorted(other))})"
    elif pointer:
        focus.used, focus.reason = True, f"“{pointer}” refers back to {focus.label}"
    elif ellipsis:
        extra = ", ".join(content) or "nothing new"
        focus.used, focus.reason = True, f"only adds {extra} to {focus.label}"
    elif named:
        focus.used, focus.reason = False, f"names its own product type ({', '.join(sorted(named))}) without " \
                                          "referring back"
    else:
        focus.used, focus.reason = False, f"does not refer back to {focus.label}"
    return focus


def asked_variant(text: str, vocabulary: Vocabulary) -> tuple[bool, str | None]:
    """Whether ``text`` asks for another variant ("in black?", "a pink one?", "what colours does it come in?"), and
    the colour asked for (``None`` for "which colours")."""
    normal = " ".join(words(text))
    colours = "|".join(sorted(map(re.escape, vocabulary.colours), key=len, reverse=True)) or "(?!)"
    match = re.search(rf"\b(?:in|an?)\s+({colours})\b|\b({colours})\s+(?:one|ones|version|variant|model)\b", normal)
    if match is None and set(words(text)) - FUNCTION_WORDS <= vocabulary.colours:
        match = re.search(rf"\b({colours})\b", normal)
    if match:
        return True, next(group for group in match.groups() if group)
    return bool(re.search(r"\b(?:colou?rs|other colou?r|another colou?r|different colou?r)\b", normal)), None
