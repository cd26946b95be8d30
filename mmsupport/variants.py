"""Variant questions: "Do you have it in black?" answered from the family of the item being discussed.

A family is the products that differ only by colour or size (the ``family`` column, see
:func:`mmsupport.catalog.family_name`). When the family has the colour asked for, that variant is the answer; when it
has not, the answer says so, lists the colours the family does come in and offers the closest items of that colour
and the same type.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmsupport.catalog import TYPE_COLUMNS, Catalog, Item, category_filter, family_name, sql_literal

#: Closest items of the asked colour offered when the family has none.
ALTERNATIVES = 3


@dataclass
class Variants:
    """The answer to a variant question about ``item``: its ``family`` (``item`` among them), the variant in
    ``colour`` (``match``, ``None`` when the family has none or no colour was asked) and ``alternatives``."""

    item: Item
    colour: str | None
    family: list[Item]
    match: Item | None
    alternatives: list[Item]

    @property
    def name(self) -> str:
        return self.item.family or family_name(self.item.title)

    @property
    def items(self) -> list[Item]:
        """The items to show, the answer first: the match, or the alternatives, then the rest of the family."""
        first = [self.match] if self.match else self.alternatives
        return [*first, *(item for item in self.family if item not in first)]

    def colours(self) -> str:
        """The family's colours with their ids, e.g. ``olive [P0023], brown [P0021]``."""
        return ", ".join(f"{item.colour or 'one colour'} [{item.id}]" for item in self.family)


def _same_type(item: Item) -> str | None:
    """A filter for products of ``item``'s type: its type column when it has one, else its category."""
    for column in TYPE_COLUMNS:
        if item.attributes.get(column):
            return f"{column} = {sql_literal(item.attributes[column])}"
    return category_filter(item.category)


def find_variants(catalog: Catalog, item: Item, colour: str | None, *, where: str | None = None,
                  mode: str = "hybrid") -> Variants:
    """The variants of ``item`` and, when its family lacks ``colour``, the closest ``colour`` products of its type
    (within the ``where`` prefilter, e.g. the shop's category setting)."""
    family = catalog.family(item)
    match = next((v for v in family if colour and (v.colour or "").lower() == colour.lower()), None)
    alternatives = []
    if colour and match is None:
        clauses = [c for c in ("kind = 'product'", f"lower(colour) = {sql_literal(colour.lower())}",
                               _same_type(item), where) if c]
        found = catalog.search(item.family or family_name(item.title), mode=mode, k=ALTERNATIVES + len(family),
                               where=" AND ".join(f"({c})" for c in clauses))
        alternatives = [other for other in found if other.id not in {v.id for v in family}][:ALTERNATIVES]
    return Variants(item, colour, family, match, alternatives)
