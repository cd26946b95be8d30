"""The catalog tools of a turn: what the model may call and what the turn runs itself, each call recorded as a Step.

A :class:`Tool` holds what the model is shown (name, description, parameters) together with its call, as smolagents
does; :data:`TOOLS` is the list of schemas passed to chat templates. A :class:`Toolbox` runs the calls of one turn:
it applies the shop's category setting to every search, numbers each item the first time it is found (the model cites
data item *n* as ``[n]``) and records every call, failed ones included, as a :class:`Step`. Its methods are generators
that yield the step when it is done and return what was found.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mmsupport.catalog import Catalog, Item, category_filter, sql_literal
from mmsupport.config import Settings
from mmsupport.errors import InvalidInput, MMSupportError
from mmsupport.variants import Variants, find_variants

logger = logging.getLogger(__name__)

#: Most results a tool call may ask for.
MAX_TOOL_K = 10
#: Filters ``search_catalog`` accepts, and the SQL they become.
FILTERS = {"kind": "kind = {}", "category": "category = {}", "colour": "lower(colour) = lower({})",
           "min_price": "price >= {}", "max_price": "price <= {}"}


@dataclass
class Step:
    """One tool call of a turn: which tool, with what, which items it returned and how long it took."""

    tool: str
    arguments: dict
    result_ids: list[str]
    seconds: float
    error: str | None = None
    #: Why the step ran as it did (for the turn's own search: whether the conversation's focus was used, and why).
    note: str | None = None


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: its schema and ``run(toolbox, arguments)``, a generator returning the items."""

    name: str
    description: str
    parameters: dict
    required: tuple[str, ...]
    run: Callable[[Toolbox, dict], Iterator]

    @property
    def schema(self) -> dict:
        """The OpenAI-style function schema chat templates take."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": self.parameters, "required": list(self.required)}}}


def parse_tool_call(body: str) -> tuple[str, dict]:
    """``(name, arguments)`` of a ``<tool_call>`` body; raises ``ValueError`` saying what is malformed."""
    try:
        call = json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError(f"the tool call is not valid JSON ({error.msg})") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise ValueError('a tool call needs {"name": ..., "arguments": {...}}')
    arguments = call.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            raise ValueError("the tool call's arguments are not valid JSON") from None
    if not isinstance(arguments, dict):
        raise ValueError("the tool call's arguments must be an object")
    return call["name"], arguments


class Toolbox:
    """The catalog calls of one turn, with ``retrieved`` (id -> item), ``numbered`` (items in the order they were
    found, numbered from 1 in ``numbers``), ``steps`` and the search time added to ``timings["search"]``."""

    def __init__(self, catalog: Catalog, settings: Settings, timings: dict):
        self.catalog, self.settings, self.timings = catalog, settings, timings
        #: The turn's photo: every search of the turn also looks for products whose pictures look like it.
        self.photo = None
        self._photo_vector: object = None
        self.retrieved: dict[str, Item] = {}
        self.numbered: list[Item] = []
        self.numbers: dict[str, int] = {}
        self.steps: list[Step] = []

    def where(self, filters: dict) -> tuple[str | None, list[str]]:
        """SQL for the settings' category plus known ``filters``; the names of filters that were ignored."""
        clauses = [category_filter(self.settings.category)] if self.settings.category else []
        ignored = []
        for name, value in filters.items():
            if name in FILTERS and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                if name.endswith("price") and not isinstance(value, (int, float)):
                    try:
                        value = float(value)
                    except ValueError:
                        ignored.append(name)
                        continue
                clauses.append(FILTERS[name].format(sql_literal(value)))
            else:
                ignored.append(name)
        return " AND ".join(clauses) or None, ignored

    def search(self, query: str, filters: dict, k: int, note: str | None = None):
        """``search_catalog``: the ``k`` best items for ``query`` within ``filters``."""
        started = time.perf_counter()
        where, ignored = self.where(filters)
        photo = self.photo_vector()
        mode = self.settings.search_mode
        if mode == "image" and photo is None and not self._can_search_pictures():
            mode, note = "hybrid", f"{note or ''}; image search is unavailable, searched the words".lstrip("; ")
        items = self.catalog.search(query, mode=mode, k=k, where=where, image=photo)
        error = f"ignored unknown filters: {', '.join(ignored)}" if ignored else None
        arguments = {"query": query, "filters": filters, "k": k, **({"photo": True} if photo is not None else {})}
        yield self._record(Step("search_catalog", arguments, [item.id for item in items],
                                time.perf_counter() - started, error, note), items)
        return items

    def _can_search_pictures(self) -> bool:
        try:
            self.catalog.check_model("image_vector")
        except MMSupportError as error:
            logger.info("Image mode searches the words: %s", error)
            return False
        return True

    def photo_vector(self):
        """The turn's photo as an image vector, embedded once per turn; ``None`` without a photo or when image
        search is off or unavailable (the log says why, once per turn)."""
        if self.photo is not None and self._photo_vector is None:
            try:
                self._photo_vector = self.catalog.embed_photo(self.photo)
            except MMSupportError as error:
                logger.info("The photo is searched by its description only: %s", error)
                self._photo_vector = False
        return self._photo_vector if self._photo_vector is not False else None

    def get_item(self, item_id: str):
        """``get_item``: the item with this id (a list of one, or empty)."""
        started = time.perf_counter()
        item = self.catalog.get(item_id)
        items = [item] if item else []
        yield self._record(Step("get_item", {"id": item_id}, [item.id] if item else [], time.perf_counter() - started,
                                None if item else f"no item with id {item_id!r}"), items)
        return items

    def variants(self, item: Item, colour: str | None, note: str):
        """``get_variants``: ``item``'s family and, when it lacks ``colour``, the closest items in that colour."""
        started = time.perf_counter()
        variants: Variants = find_variants(self.catalog, item, colour, where=self.where({})[0],
                                           mode=self.settings.search_mode)
        found = "no variant in that colour" if colour and variants.match is None else "the family's variants"
        yield self._record(Step("get_variants", {"id": item.id, "colour": colour}, [i.id for i in variants.items],
                                time.perf_counter() - started, note=f"{note}; {found}"), variants.items)
        return variants

    def best_cosine(self, query: str, found: list[Item]) -> float:
        """Cosine similarity of the query to its closest catalog item (within the category filter). Items ``found``
        by a vector or hybrid search for this query carry their similarity, which saves a second search."""
        if found and all(item.similarity is not None for item in found):
            return max(item.similarity for item in found)
        started = time.perf_counter()
        best = self.catalog.search(query, mode="vector", k=1, where=self.where({})[0])
        self.timings["search"] += time.perf_counter() - started
        return best[0].score if best else 0.0

    def call(self, body: str):
        """Run one ``<tool_call>`` body from the model; return ``(tool name, items)``. A malformed or failed call is
        recorded as a failed step and raises ``ValueError`` saying why."""
        name, arguments = "invalid", {}
        try:
            name, arguments = parse_tool_call(body)
            if name not in MODEL_TOOLS:
                raise ValueError(f"unknown tool {name!r}; the tools are {' and '.join(MODEL_TOOLS)}")
            items = yield from MODEL_TOOLS[name].run(self, arguments)
        except (ValueError, InvalidInput) as error:
            yield self._record(Step(name, arguments, [], 0.0, str(error)), [])
            raise ValueError(str(error)) from None
        return name, items

    def _record(self, step: Step, items: list[Item]) -> Step:
        for item in items:
            if item.id not in self.retrieved:
                self.retrieved[item.id] = item
                self.numbered.append(item)
                self.numbers[item.id] = len(self.numbered)
        self.timings["search"] += step.seconds
        self.steps.append(step)
        return step


def _run_search(toolbox: Toolbox, arguments: dict):
    query = str(arguments.get("query") or "").strip()
    if not query:
        raise ValueError("search_catalog needs a non-empty query")
    filters = arguments.get("filters") or {}
    if not isinstance(filters, dict):
        raise ValueError("search_catalog filters must be an object")
    try:
        k = min(max(int(arguments.get("k") or toolbox.settings.top_k), 1), MAX_TOOL_K)
    except (TypeError, ValueError):
        k = toolbox.settings.top_k
    return (yield from toolbox.search(query, filters, k))


def _run_get_item(toolbox: Toolbox, arguments: dict):
    return (yield from toolbox.get_item(str(arguments.get("id") or "")))


MODEL_TOOLS = {tool.name: tool for tool in [
    Tool("search_catalog", "Search the shop's products and support articles.", {
        "query": {"type": "string", "description": "what to look for"},
        "filters": {"type": "object", "description": "optional: kind (product|article), category, colour, "
                                                     "min_price, max_price"},
        "k": {"type": "integer", "description": f"how many results, 1-{MAX_TOOL_K}"},
    }, ("query",), _run_search),
    Tool("get_item", "Fetch one catalog item by its id.", {"id": {"type": "string"}}, ("id",), _run_get_item),
]}
#: The schemas of the tools the model may call, as chat templates take them.
TOOLS = [tool.schema for tool in MODEL_TOOLS.values()]
