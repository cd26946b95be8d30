"""The grounded support agent: one chat turn from a question (and photos) to an answer that cites what it found.

A turn runs in this order:

1. **Check** the message: empty → :class:`InvalidInput`; longer than ``settings.max_message_chars`` → truncated with a
   notice.
2. **Describe** each photo with the VLM (cached per image by :meth:`VLM.describe`).
3. **Build the search query** from the text and the descriptions. A follow-up without a new photo ("do you have it in
   blue?", "how do I reset it?") also gets the conversation's focus: the latest earlier photo's description and the
   item the assistant last cited (or last found), so it resolves against the item being discussed.
4. **Retrieve** with ``settings.search_mode``, ``settings.category`` and ``settings.top_k`` (step 1,
   ``search_catalog``). When the best cosine similarity between the retrieved items and the query (or between the
   catalog and the customer's own words, so a poor photo description cannot hide a match) is below
   :data:`NO_MATCH_COSINE`, the turn ends with an honest "nothing matched" and a human handoff; no model call, so no
   invented product.
5. **Answer**: the VLM sees the system rules, the trimmed history and the current message with the retrieved items as
   numbered data between ``<data>`` tags. Models whose chat template takes tools may call ``search_catalog`` and
   ``get_item`` until ``settings.max_agent_steps`` steps are used; every step is recorded.
6. **Verify**: ``[id]`` citations of items not retrieved in this turn are removed and flagged (``[n]`` pointing at data
   item *n* becomes its id); sentences that repeat the system prompt are removed; tool-call markup never reaches
   the customer.

Without a VLM (``vlm=None``, or the model fails mid-turn) the answer lists the retrieved items with citations and says
the model is unavailable.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from mmsupport.catalog import Catalog, Item, category_filter, sql_literal
from mmsupport.config import Settings
from mmsupport.errors import InvalidInput, ModelUnavailable
from mmsupport.images import load_image
from mmsupport.messages import images_of as _images_of
from mmsupport.messages import text_of as _text_of
from mmsupport.vlm import VLM, Message

#: Below this cosine similarity between the turn's search query and its closest catalog item, nothing matches.
#: Calibrated with ``bench/agent.py --calibrate`` (README, "Agent"): matching turns of data/conversations.jsonl and
#: queries/dev.jsonl sit above it, off-topic shopping questions below.
NO_MATCH_COSINE = 0.40
#: Context budget assumed per image in the current message, and characters per token for text.
IMAGE_TOKENS = 256
CHARS_PER_TOKEN = 4
#: Longest catalog text shown to the model per item.
ITEM_TEXT_CHARS = 700
#: Most results a tool call may ask for.
MAX_TOOL_K = 10
#: Words in a row shared with the system prompt that make a sentence a leak; shorter sentences leak when they are
#: wholly a piece of the system prompt and at least LEAK_MIN_WORDS long.
LEAK_WORDS = 8
LEAK_MIN_WORDS = 4

#: ``[P0001]``-style citations: a bracketed token that contains a digit and no spaces.
CITATION = re.compile(r"\[([A-Za-z_\-]*\d[\w.\-]*)\]")
TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
#: Markup that could close the data block or fake a tool call; removed from catalog rows and user text.
MARKUP = re.compile(r"<\s*/?\s*(data|tool_call)\s*>", re.I)
#: Words that make a message refer back to the item being discussed.
FOLLOW_UP = re.compile(r"\b(it|its|it's|them|they|their|this|these|that|those|one|ones|same|mine)\b", re.I)
#: Messages this short without a photo are follow-ups too ("In pink?").
SHORT_FOLLOW_UP_WORDS = 4

#: Filters ``search_catalog`` accepts, and the SQL they become.
FILTERS = {"kind": "kind = {}", "category": "category = {}", "colour": "lower(colour) = lower({})",
           "min_price": "price >= {}", "max_price": "price <= {}"}

TOOLS = [
    {"type": "function", "function": {
        "name": "search_catalog",
        "description": "Search the shop's products and support articles.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "what to look for"},
            "filters": {"type": "object", "description": "optional: kind (product|article), category, colour, "
                                                         "min_price, max_price"},
            "k": {"type": "integer", "description": f"how many results, 1-{MAX_TOOL_K}"},
        }, "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "get_item",
        "description": "Fetch one catalog item by its id.",
        "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}},
]


@dataclass
class Step:
    """One tool call of a turn: which tool, with what, which items it returned and how long it took."""

    tool: str
    arguments: dict
    result_ids: list[str]
    seconds: float
    error: str | None = None


@dataclass
class TurnResult:
    """The outcome of a turn.

    ``items`` are all items retrieved in the turn (best first, with scores; empty when ``no_match``), ``citations``
    the ids the answer cites (all among ``items``), ``flagged`` what verification removed, ``timings`` seconds per
    phase (``describe``, ``search``, ``generate``, ``total`` and ``overhead`` = total minus model time), ``history``
    the conversation including this turn, ready to pass to the next one (its assistant message also carries
    ``item_ids``: the cited items, or the retrieved ones when the answer cites none, so follow-ups find the item).
    """

    answer: str
    citations: list[str]
    items: list[Item]
    steps: list[Step]
    no_match: bool
    flagged: list[str]
    timings: dict
    query: str = ""
    notices: list[str] = field(default_factory=list)
    history: list[Message] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """Plain JSON (``history`` left out: it may hold images)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "history"}
        data["items"] = [dataclasses.asdict(item) for item in self.items]
        data["steps"] = [dataclasses.asdict(step) for step in self.steps]
        return data


@cache
def prompts() -> dict[str, str]:
    """The agent's prompt templates (``mmsupport/prompts/agent.yaml``)."""
    import yaml

    return yaml.safe_load(resources.files("mmsupport").joinpath("prompts/agent.yaml").read_text(encoding="utf-8"))


def _tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i:i + LEAK_WORDS]) for i in range(len(words) - LEAK_WORDS + 1)}


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


class Agent:
    """Answers support and shopping questions from ``catalog``; ``vlm=None`` gives retrieval-only answers."""

    def __init__(self, vlm: VLM | None, catalog: Catalog, settings: Settings):
        self.vlm = vlm
        self.catalog = catalog
        self.settings = settings
        self.prompts = prompts()
        self.system = self.prompts["system"] + ("\n" + self.prompts["tools"] if vlm and vlm.supports_tools else "")
        self.system_words = " " + " ".join(_words(self.system)) + " "
        self.system_shingles = _shingles(self.system)

    def run_turn(self, message: str, images=(), history: list[Message] | None = None) -> TurnResult:
        """Run a turn to the end and return its :class:`TurnResult`."""
        for event in self.stream_turn(message, images, history):
            if isinstance(event, TurnResult):
                return event
        raise AssertionError("stream_turn ended without a result")

    def stream_turn(self, message: str, images=(), history: list[Message] | None = None) -> Iterator:
        """Run a turn, yielding each :class:`Step` when done, answer text as ``str`` pieces, then the
        :class:`TurnResult`.

        ``images``: paths, bytes or PIL images for this turn. ``history``: earlier messages (``{"role", "content"}``
        with string or list-of-parts content, e.g. a previous result's ``history``); images in it stay available.
        """
        return _Turn(self, message, list(images), list(history or [])).run()


class _Turn:
    """The state of one turn while it runs."""

    def __init__(self, agent: Agent, message: str, images: list, history: list[Message]):
        self.agent, self.settings, self.catalog, self.vlm = agent, agent.settings, agent.catalog, agent.vlm
        self.history = history
        self.started = time.perf_counter()
        self.timings = {"describe": 0.0, "search": 0.0, "generate": 0.0}
        self.steps: list[Step] = []
        self.retrieved: dict[str, Item] = {}
        self.numbered: list[Item] = []  # items in the order they were shown to the model, numbered from 1
        self.numbers: dict[str, int] = {}
        self.flagged: list[str] = []
        self.notices: list[str] = []
        self.text = self._check(message or "", images)
        self.images = [load_image(image, max_side=self.settings.image_max_side) for image in images]

    # -- the turn ------------------------------------------------------------------------------------------------

    def run(self) -> Iterator:
        prompts = self.agent.prompts
        descriptions = [self._describe(image) for image in self.images]
        focus, context = self._context() if self._is_follow_up() else ([], [])
        query = " ".join([self.text, *descriptions, *focus]).strip()
        if not query:
            raise InvalidInput("There is nothing to search for: the message is empty and no vision model is loaded "
                               "to describe the photo.", hint="Describe the product or the problem in words.")
        items = yield from self._search(query, {}, self.settings.top_k)
        relevant = any(self._best_cosine(q, items if q == query else []) >= NO_MATCH_COSINE
                       for q in dict.fromkeys([query, self.text]) if q)
        no_match = not (items and relevant)
        if no_match:
            answer = prompts["no_match"]
            yield answer
        elif self.vlm is None:
            answer = self._retrieval_only()
            yield answer
        else:
            try:
                answer = yield from self._answer(descriptions, context)
            except ModelUnavailable as error:
                self.notices.append(f"The model failed during this turn: {error}")
                answer = self._retrieval_only()
                yield "\n\n" + answer
            answer = self._finish(answer)
        for notice in reversed(self.notices):
            answer = f"{notice}\n\n{answer}"
        total = time.perf_counter() - self.started
        self.timings.update(total=total, overhead=total - self.timings["describe"] - self.timings["generate"])
        citations = list(dict.fromkeys(CITATION.findall(answer)))
        user = {"role": "user", "content": [*({"type": "image", "image": image} for image in self.images),
                                            {"type": "text", "text": self.text}]}
        yield TurnResult(
            answer=answer, citations=citations, items=[] if no_match else list(self.retrieved.values()),
            steps=self.steps, no_match=no_match, flagged=self.flagged, timings=self.timings, query=query,
            notices=self.notices, history=[*self.history, user, {"role": "assistant", "content": answer,
                                                                 "item_ids": [] if no_match else citations or list(self.retrieved)}])

    def _check(self, message: str, images: list) -> str:
        text = MARKUP.sub(" ", message).strip()
        if not text and not images:
            raise InvalidInput("The message is empty.", hint="Type a question or attach a photo of the product.")
        limit = self.settings.max_message_chars
        if len(text) > limit:
            text = text[:limit]
            self.notices.append(self.agent.prompts["truncated"].format(limit=limit))
        return text

    # -- understanding the question ------------------------------------------------------------------------------

    def _describe(self, image) -> str:
        if self.vlm is None:
            return ""
        started = time.perf_counter()
        try:
            return self.vlm.describe(image)
        except ModelUnavailable as error:
            self.notices.append(f"I could not look at the photo: {error}")
            return ""
        finally:
            self.timings["describe"] += time.perf_counter() - started

    def _is_follow_up(self) -> bool:
        return bool(self.history) and not self.images and (
            bool(FOLLOW_UP.search(self.text)) or len(self.text.split()) <= SHORT_FOLLOW_UP_WORDS)

    def _context(self) -> tuple[list[str], list[str]]:
        """The conversation's focus (the latest earlier photo's description and the item last cited): as words for
        the search query and as notes for the model."""
        prompts, focus, context = self.agent.prompts, [], []
        photos = [image for message in self.history for image in _images_of(message)]
        if photos:
            description = self._describe(photos[-1])
            if description:
                focus.append(description)
                context.append(prompts["photo"].format(description=description))
        for message in reversed(self.history):
            if message.get("role") != "assistant":
                continue
            ids = CITATION.findall(_text_of(message)) or message.get("item_ids", [])
            started = time.perf_counter()
            found = [item for item in map(self.catalog.get, dict.fromkeys(ids)) if item is not None]
            self.timings["search"] += time.perf_counter() - started
            if found:
                item = next((item for item in found if item.kind == "product"), found[0])
                focus.append(item.title)
                context.append(prompts["discussed"].format(title=item.title, id=item.id))
                break
        return focus, context

    # -- tools -----------------------------------------------------------------------------------------------------

    def _where(self, filters: dict) -> tuple[str | None, list[str]]:
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

    def _search(self, query: str, filters: dict, k: int):
        """Run ``search_catalog``: record the step, yield it, return the items."""
        started = time.perf_counter()
        where, ignored = self._where(filters)
        items = self.catalog.search(query, mode=self.settings.search_mode, k=k, where=where)
        self._remember(items)
        step = Step("search_catalog", {"query": query, "filters": filters, "k": k}, [item.id for item in items],
                    time.perf_counter() - started, f"ignored unknown filters: {', '.join(ignored)}" if ignored else None)
        self.timings["search"] += step.seconds
        self.steps.append(step)
        yield step
        return items

    def _get_item(self, item_id: str):
        started = time.perf_counter()
        item = self.catalog.get(item_id)
        if item is not None:
            self._remember([item])
        step = Step("get_item", {"id": item_id}, [item.id] if item else [], time.perf_counter() - started,
                    None if item else f"no item with id {item_id!r}")
        self.timings["search"] += step.seconds
        self.steps.append(step)
        yield step
        return [item] if item else []

    def _remember(self, items: list[Item]) -> None:
        for item in items:
            if item.id not in self.retrieved:
                self.retrieved[item.id] = item
                self.numbered.append(item)
                self.numbers[item.id] = len(self.numbered)

    def _best_cosine(self, query: str, found: list[Item]) -> float:
        """Cosine similarity of the query to its closest catalog item (within the category filter). Items ``found``
        by a vector or hybrid search for this query carry their similarity, which saves a second search."""
        if found and all(item.similarity is not None for item in found):
            return max(item.similarity for item in found)
        started = time.perf_counter()
        where, _ = self._where({})
        best = self.catalog.search(query, mode="vector", k=1, where=where)
        self.timings["search"] += time.perf_counter() - started
        return best[0].score if best else 0.0

    def _run_tool(self, body: str):
        """Execute one ``<tool_call>`` body; return the text the model gets back."""
        prompts = self.agent.prompts
        name, arguments = "invalid", {}
        try:
            name, arguments = parse_tool_call(body)
            if name == "search_catalog":
                query = str(arguments.get("query") or "").strip()
                if not query:
                    raise ValueError("search_catalog needs a non-empty query")
                filters = arguments.get("filters") or {}
                if not isinstance(filters, dict):
                    raise ValueError("search_catalog filters must be an object")
                try:
                    k = min(max(int(arguments.get("k") or self.settings.top_k), 1), MAX_TOOL_K)
                except (TypeError, ValueError):
                    k = self.settings.top_k
                items = yield from self._search(query, filters, k)
            elif name == "get_item":
                items = yield from self._get_item(str(arguments.get("id") or ""))
            else:
                raise ValueError(f"unknown tool {name!r}; the tools are search_catalog and get_item")
        except (ValueError, InvalidInput) as error:
            step = Step(name, arguments, [], 0.0, str(error))
            self.steps.append(step)
            yield step
            return prompts["tool_error"].format(error=error)
        return prompts["tool_result"].format(tool=name, result=self._data(items))

    # -- answering ---------------------------------------------------------------------------------------------------

    def _data(self, items: list[Item]) -> str:
        """Items as the numbered data block (numbers continue across the turn's tool calls)."""
        prompts = self.agent.prompts
        if not items:
            return prompts["data_empty"]
        rows = []
        for item in items:
            facts = [item.category, item.colour, f"price {item.price:.2f}" if item.price is not None else None]
            rows.append(prompts["item"].format(
                number=self.numbers[item.id], id=item.id, kind=item.kind, title=MARKUP.sub(" ", item.title),
                facts="".join(f" | {fact}" for fact in facts if fact),
                text=MARKUP.sub(" ", item.text)[:ITEM_TEXT_CHARS]))
        return prompts["data"].format(items="\n".join(rows))

    def _model_history(self, budget: int) -> list[Message]:
        """Earlier messages as text (photos as their descriptions), newest kept first, within ``budget`` tokens."""
        kept: list[Message] = []
        for message in reversed(self.history):
            photos = [f"[photo: {self._describe(image) or 'not described'}]" for image in _images_of(message)]
            text = MARKUP.sub(" ", " ".join([*photos, _text_of(message)])).strip()
            if message.get("role") not in ("user", "assistant") or not text:
                continue
            budget -= _tokens(text)
            if budget < 0:
                break
            kept.append({"role": message["role"], "content": text})
        while kept and kept[-1]["role"] != "user":  # templates want the conversation to open with the customer
            kept.pop()
        return kept[::-1]

    def _answer(self, descriptions: list[str], context: list[str]):
        """Stream the model's answer, running its tool calls; return the visible text."""
        prompts, settings = self.agent.prompts, self.settings
        notes = [prompts["photo"].format(description=d) for d in descriptions if d] + context
        text = "\n\n".join([self.text or "(the customer sent only a photo)",
                            *([prompts["context"].format(context="; ".join(notes))] if notes else []),
                            self._data(self.numbered)])
        current = {"role": "user", "content": [*({"type": "image", "image": image} for image in self.images),
                                               {"type": "text", "text": text}]}
        budget = (settings.context_tokens - settings.max_new_tokens - _tokens(self.agent.system) - _tokens(text)
                  - IMAGE_TOKENS * len(self.images))
        messages = [{"role": "system", "content": self.agent.system}, *self._model_history(budget), current]
        answer = ""
        while True:
            tools = TOOLS if self.vlm.supports_tools and len(self.steps) < settings.max_agent_steps else None
            raw, shown = yield from self._generate(messages, tools)
            answer += shown
            calls = TOOL_CALL.findall(raw)
            if not calls or tools is None:
                return answer
            results = []
            for body in calls[: settings.max_agent_steps - len(self.steps)]:
                results.append((yield from self._run_tool(body)))
            if len(self.steps) >= settings.max_agent_steps:
                results.append(prompts["final"])
            messages += [{"role": "assistant", "content": raw}, {"role": "user", "content": "\n\n".join(results)}]

    def _generate(self, messages: list[Message], tools: list[dict] | None):
        """Stream one generation, yielding the customer-visible part with citations checked.

        Returns ``(raw text, visible text)``."""
        started = time.perf_counter()
        raw, shown, visible = "", 0, []
        try:
            for piece in self.vlm.stream(messages, tools=tools):
                raw += piece
                safe = self._safe_end(raw)
                if safe > shown:
                    visible.append(self._verify(raw[shown:safe]))
                    shown = safe
                    yield visible[-1]
            if "<tool_call>" not in raw and shown < len(raw):
                visible.append(self._verify(raw[shown:]))
                yield visible[-1]
        finally:
            self.timings["generate"] += time.perf_counter() - started
        return raw, "".join(visible)

    @staticmethod
    def _safe_end(raw: str) -> int:
        """How much of ``raw`` can be shown now: not a tool call, not a citation still being written."""
        end = raw.find("<tool_call>")
        if end >= 0:
            return end
        end = len(raw)
        tag = "<tool_call>"
        for size in range(min(len(tag) - 1, len(raw)), 0, -1):
            if raw.endswith(tag[:size]):
                return end - size
        bracket = raw.rfind("[")
        if bracket >= 0 and "]" not in raw[bracket:] and end - bracket < 64:
            return bracket
        return end

    def _verify(self, text: str) -> str:
        """Keep citations of items retrieved in this turn, turn ``[n]`` into data item n's id, drop the rest."""
        def check(match: re.Match) -> str:
            ref = match.group(1)
            if ref in self.retrieved:
                return match.group(0)
            if ref.isdigit() and 1 <= int(ref) <= len(self.numbered):
                return f"[{self.numbered[int(ref) - 1].id}]"
            self.flagged.append(f"removed citation [{ref}]: not retrieved in this turn")
            return ""

        return CITATION.sub(check, text)

    def _finish(self, answer: str) -> str:
        """The final answer: no sentence repeating the system prompt, tidy spacing, never empty."""
        sentences = re.findall(r"[^.!?\n]*(?:[.!?]+|\n|$)\s*", answer)
        kept = [s for s in sentences if not self._leaks(s)]
        if len(kept) < len(sentences):
            self.flagged.append("removed text repeating the system prompt")
            kept = [s for s in kept if re.search(r"[^\W\d_]", s)]  # and the rules' numbers left behind
        answer = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", "".join(kept))).strip()
        if not answer:
            self.flagged.append("the model gave no answer; listed the retrieved items instead")
            answer = self._item_list()
        return answer

    def _leaks(self, sentence: str) -> bool:
        words = _words(sentence)
        if len(words) >= LEAK_MIN_WORDS and f" {' '.join(words)} " in self.agent.system_words:
            return True
        return bool(_shingles(sentence) & self.agent.system_shingles)

    def _item_list(self) -> str:
        line = self.agent.prompts["retrieval_only_item"]
        return "\n".join(line.format(title=item.title, id=item.id,
                                     price=f" — {item.price:.2f}" if item.price is not None else "")
                         for item in self.retrieved.values())

    def _retrieval_only(self) -> str:
        return self.agent.prompts["retrieval_only"].format(
            photo_note=self.agent.prompts["photo_note"] if self.images else "", items=self._item_list())
