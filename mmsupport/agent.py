"""The grounded support agent: one chat turn from a question (and photos) to an answer that cites what it found.

A turn runs in this order:

1. **Check** the message: empty → :class:`InvalidInput`; longer than ``settings.max_message_chars`` → truncated with a
   notice.
2. **Intent** (:mod:`mmsupport.intents`): a request for a person opens a hand-off (:mod:`mmsupport.handoff`); thanks,
   goodbye and small talk get a short reply. None of them is searched.
3. **Describe** each photo with the VLM (cached per image by :meth:`VLM.describe`). A photo with no words and no model
   to look at it gets a friendly request to say what the product is.
4. **Focus** (:mod:`mmsupport.focus`): a message that refers back to the item being discussed ("is it waterproof?",
   "in black?") and names no other product type is searched with the conversation's focus (the latest earlier photo's
   description and the item the assistant last cited, or last found); anything else is searched on its own. The search
   step's ``note`` says which and why.
5. **Retrieve** with ``settings.search_mode``, ``settings.category`` and ``settings.top_k`` (step ``search_catalog``).
   A variant question about the item in focus ("do you have it in black?") reads that item's family instead (step
   ``get_variants``, :mod:`mmsupport.variants`). When the best cosine similarity between the retrieved items and the
   query (or between the catalog and the customer's own words, so a poor photo description cannot hide a match) is
   below ``settings.no_match_threshold``, the turn ends with an honest "nothing matched" and offers a person; no
   model call, so no invented product.
6. **Answer**: the VLM sees the system rules, the trimmed history and the current message with the retrieved items as
   numbered data between ``<data>`` tags, one JSON object per item. A photo described in step 3 is given as its
   description, not sent again, so a photo costs one vision pass per turn; only a photo left undescribed is sent.
   Every text from customers, catalog rows and photo descriptions is cleaned by :mod:`mmsupport.safety` first, so none
   can end the data block or fake a tool call.
   Models whose chat template takes tools may call ``search_catalog`` and ``get_item`` until
   ``settings.max_agent_steps`` steps are used; every step is recorded.
7. **Verify**: ``[id]`` citations of items not retrieved in this turn are removed and flagged (``[n]`` pointing at data
   item *n* becomes its id); sentences that repeat the system prompt are removed, also when disguised with zero-width
   or look-alike characters or base64; tool-call markup never reaches the customer.

Without a VLM (``vlm=None``, or the model fails mid-turn) the answer is extractive (:mod:`mmsupport.extractive`): the
sentences of the best article that answer the question, or one line per product, quoted and cited, after a plain
notice that answers are shorter right now. Why the model failed goes to the log, not to the shopper.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from mmsupport.catalog import Catalog, Item
from mmsupport.config import Settings
from mmsupport.errors import InvalidInput, MMSupportError, ModelUnavailable
from mmsupport.extractive import ShortAnswers
from mmsupport.focus import Focus, Vocabulary, asked_variant, decide
from mmsupport.handoff import Handoff, StoreHandoff, item_summary, repeats
from mmsupport.images import load_image
from mmsupport.intents import ASKS_FOR_PERSON, HANDOFF, SEARCH, Intent, classify
from mmsupport.messages import images_of, text_of
from mmsupport.safety import clean, data_line, decoded_runs, normalize, readings
from mmsupport.tools import TOOLS, Step, Toolbox
from mmsupport.variants import Variants
from mmsupport.vlm import VLM, Message

logger = logging.getLogger(__name__)

#: Context budget assumed per image in the current message, and characters per token for text.
IMAGE_TOKENS = 256
CHARS_PER_TOKEN = 4
#: Longest catalog text shown to the model per item.
ITEM_TEXT_CHARS = 700
#: Words in a row shared with the system prompt that make a sentence a leak; shorter sentences leak when they are
#: wholly a piece of the system prompt and at least LEAK_MIN_WORDS long.
LEAK_WORDS = 8
LEAK_MIN_WORDS = 4
#: How many characters back from the newest text the streaming guard reads for the start of such a copy (the longest
#: run of eight words in the system prompt spans about 60).
LEAK_LOOKBACK_CHARS = 160
#: A word as the leak checks read it (:func:`_words`, without lower-casing the text first).
_WORD = re.compile(r"[a-z0-9]+", re.IGNORECASE | re.ASCII)

#: ``[P0001]``-style citations: a bracketed token that contains a digit and no spaces.
CITATION = re.compile(r"\[([A-Za-z_\-]*\d[\w.\-]*)\]")
TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
#: An answer that offers to pass the question to a person (a "yes" to it is a hand-off request).
OFFER = re.compile(r"\b(?:pass|hand)\w*\b[^.?!]*\b(?:support|team|colleague|person)\b", re.I)

@dataclass
class TurnResult:
    """The outcome of a turn.

    ``items`` are all items retrieved in the turn (best first, with scores; empty when ``no_match``), ``citations``
    the ids the answer cites (all among ``items``), ``flagged`` what verification removed, ``timings`` seconds per
    phase (``describe``, ``search``, ``generate``, ``total`` and ``overhead`` = total minus model time), ``history``
    the conversation including this turn, ready to pass to the next one (its assistant message also carries
    ``item_ids``: the cited items, or the retrieved ones when the answer cites none, so follow-ups find the item, and
    ``offered_handoff`` with ``offer_reason``, the hand-off reason of the offer). ``intent`` is what the message
    asked for (:mod:`mmsupport.intents`), ``focus`` whether the conversation's focus was used (``{"used", "reason",
    "item"}``), ``handoff`` the reference of a hand-off opened and ``top_score`` the best cosine similarity between
    the query (or the customer's words) and the catalog, which the no-match threshold is compared with (``None`` when
    nothing was searched).
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
    intent: str = SEARCH
    focus: dict = field(default_factory=dict)
    handoff: str | None = None
    top_score: float | None = None

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


@cache
def load_prompts(path: Path | None = None) -> dict[str, str]:
    """The prompt templates with those of the YAML file ``path`` (``settings.prompt_file``) replacing theirs.

    Raises :class:`InvalidInput` when the file is unreadable, not a mapping of text, or names a template that does
    not exist."""
    import yaml

    if path is None:
        return prompts()
    try:
        changed = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise InvalidInput(f"Cannot read the prompt file {path}: {error}.",
                           hint="Check the file (settings.prompt_file, or a variant's prompt_file).") from None
    if not isinstance(changed, dict) or not all(isinstance(v, str) for v in changed.values()):
        raise InvalidInput(f"The prompt file {path} must map template names to text.",
                           hint="Write it like mmsupport/prompts/agent.yaml.")
    unknown = sorted(set(changed) - set(prompts()))
    if unknown:
        raise InvalidInput(f"The prompt file {path} names unknown templates: {', '.join(map(str, unknown))}.",
                           hint=f"Use names from mmsupport/prompts/agent.yaml, e.g. {', '.join(list(prompts())[:3])}.")
    return {**prompts(), **changed}


def _tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i:i + LEAK_WORDS]) for i in range(len(words) - LEAK_WORDS + 1)}


class Agent:
    """Answers support and shopping questions from ``catalog``; ``vlm=None`` gives extractive answers.

    ``handoff`` passes conversations to a person when asked (default: a ticket in the conversation store,
    :class:`~mmsupport.handoff.StoreHandoff`)."""

    def __init__(self, vlm: VLM | None, catalog: Catalog, settings: Settings, handoff: Handoff | None = None):
        self.vlm = vlm
        self.catalog = catalog
        self.settings = settings
        self.handoff = handoff or StoreHandoff.from_settings(settings)
        self.prompts = load_prompts(settings.prompt_file)
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
        self.prompts = agent.prompts
        self.history = history
        self.started = time.perf_counter()
        self.timings = {"describe": 0.0, "search": 0.0, "generate": 0.0}
        self.tools = Toolbox(self.catalog, self.settings, self.timings)
        self.steps, self.retrieved = self.tools.steps, self.tools.retrieved
        self.numbered, self.numbers = self.tools.numbered, self.tools.numbers  # in the order found, from 1
        self.flagged: list[str] = []
        self.notices: list[str] = []
        self.text = self._check(message or "", images)
        self.images = [load_image(image, max_side=self.settings.image_max_side) for image in images]
        self.tools.photo = self.images[0] if self.images else None
        self.intent = Intent(SEARCH, "a question for the catalog")
        self.focus = Focus(reason="the message has its own photo" if images else "the conversation has just started")
        self.query = ""
        self.no_match = False
        self.top_score: float | None = None
        self.offer: str | None = None  # why this answer offers a person (a hand-off reason), if it does
        self.reference: str | None = None

    # -- the turn ------------------------------------------------------------------------------------------------

    def run(self) -> Iterator:
        if not self.images:
            self.intent = classify(self.text, offered_handoff=self._offered_handoff())
        if self.intent.name != SEARCH:
            self.focus.reason = f"not a search: {self.intent.reason}"
            answer = yield from self._reply()
            yield self._result(answer)
            return
        descriptions = [self._describe(image) for image in self.images]
        if not self.text and not any(descriptions):
            answer = self.prompts["photo_only"]
            yield answer
            yield self._result(answer)
            return
        if self.history and not self.images:
            self.focus = decide(self.text, self._focus(), Vocabulary.of(self.catalog))
        self.query = " ".join([self.text, *descriptions, *self.focus.terms()]).strip()
        items, variants = yield from self._retrieve(descriptions)
        answer = yield from self._respond(items, descriptions, variants)
        if self.offer is None and self.text and repeats(self.text, self._earlier_questions()):
            self.offer = "repeated"
            yield (offer := "\n\n" + self.prompts["offer_repeated"])
            answer += offer
        yield self._result(answer)

    def _check(self, message: str, images: list) -> str:
        text = clean(message).strip()
        if not text and not images:
            raise InvalidInput("The message is empty.", hint="Type a question or attach a photo of the product.")
        limit = self.settings.max_message_chars
        if len(text) > limit:
            text = text[:limit]
            self.notices.append(self.agent.prompts["truncated"].format(limit=limit))
        return text

    def _result(self, answer: str) -> TurnResult:
        for notice in reversed(self.notices):
            answer = f"{notice}\n\n{answer}"
        total = time.perf_counter() - self.started
        self.timings.update(total=total, overhead=total - self.timings["describe"] - self.timings["generate"])
        citations = list(dict.fromkeys(CITATION.findall(answer)))
        items = [] if self.no_match else list(self.retrieved.values())
        user = {"role": "user", "content": [*({"type": "image", "image": image} for image in self.images),
                                            {"type": "text", "text": self.text}]}
        offer = self.offer or ("asked" if OFFER.search(answer) else None)
        assistant = {"role": "assistant", "content": answer, "item_ids": citations or [item.id for item in items],
                     "offered_handoff": offer is not None, "offer_reason": offer}
        return TurnResult(
            answer=answer, citations=citations, items=items, steps=self.steps, no_match=self.no_match,
            flagged=self.flagged, timings=self.timings, query=self.query, notices=self.notices,
            history=[*self.history, user, assistant], intent=self.intent.name, focus=self.focus.to_dict(),
            handoff=self.reference, top_score=self.top_score)

    # -- messages that are not searches ------------------------------------------------------------------------------

    def _offered_handoff(self) -> bool:
        """Whether the previous answer offered to pass the question to a person."""
        last = next((m for m in reversed(self.history) if m.get("role") == "assistant"), None)
        if last is None:
            return False
        return bool(last.get("offered_handoff", OFFER.search(text_of(last))))

    def _earlier_questions(self) -> list[str]:
        return [text_of(m) for m in self.history if m.get("role") == "user"]

    def _handoff_items(self) -> list[dict]:
        """The items the conversation found or cited, oldest first (what the person taking over should see)."""
        ids = [i for m in self.history if m.get("role") == "assistant" for i in m.get("item_ids", [])]
        return [item_summary(item) for item in map(self.catalog.get, dict.fromkeys(ids)) if item is not None]

    def _reply(self):
        """The answer to a message that is not a search; a request for a person opens a hand-off."""
        if self.intent.name != HANDOFF:
            answer = self.prompts[self.intent.name]
            yield answer
            return answer
        conversation = [{"role": m["role"], "content": text_of(m), "photos": images_of(m)}
                        for m in self.history if m.get("role") in ("user", "assistant")]
        conversation.append({"role": "user", "content": self.text})
        last = next((m for m in reversed(self.history) if m.get("role") == "assistant"), {})
        reason = "asked" if self.intent.reason == ASKS_FOR_PERSON else last.get("offer_reason") or "asked"
        started, error = time.perf_counter(), None
        try:
            self.reference = self.agent.handoff.handoff(conversation, reason=reason, items=self._handoff_items())
        except MMSupportError as failure:
            logger.warning("Could not hand the conversation off: %s", failure)
            error = str(failure)
        step = Step("handoff", {"messages": len(conversation)}, [], time.perf_counter() - started, error,
                    note=f"{self.intent.reason}; reference {self.reference}" if self.reference else self.intent.reason)
        self.steps.append(step)
        yield step
        contact = self.settings.contact
        answer = (self.prompts["handoff_done"].format(reference=self.reference, contact=contact) if self.reference
                  else self.prompts["handoff_failed"].format(contact=contact))
        yield answer
        return answer

    # -- understanding the question ------------------------------------------------------------------------------

    def _describe(self, image) -> str:
        if self.vlm is None:
            return ""
        started = time.perf_counter()
        try:
            return clean(self.vlm.describe(image))
        except ModelUnavailable as error:
            logger.warning("Could not describe a photo: %s", error)
            if self.prompts["photo_failed"] not in self.notices:
                self.notices.append(self.prompts["photo_failed"])
            return ""
        finally:
            self.timings["describe"] += time.perf_counter() - started

    def _focus(self) -> Focus:
        """The conversation's focus: the latest earlier photo's description and the item last cited (or found), with
        notes about them for the model."""
        focus = Focus()
        photos = [image for message in self.history for image in images_of(message)]
        if photos:
            focus.photo = self._describe(photos[-1])
            if focus.photo:
                focus.notes.append(self.prompts["photo"].format(description=focus.photo))
        for message in reversed(self.history):
            if message.get("role") != "assistant":
                continue
            ids = CITATION.findall(text_of(message)) or message.get("item_ids", [])
            started = time.perf_counter()
            found = [item for item in map(self.catalog.get, dict.fromkeys(ids)) if item is not None]
            self.timings["search"] += time.perf_counter() - started
            if found:
                focus.item = next((item for item in found if item.kind == "product"), found[0])
                focus.notes.append(self.prompts["discussed"].format(title=clean(focus.item.title), id=clean(focus.item.id)))
                break
        return focus

    def _retrieve(self, descriptions: list[str]):
        """Search for the query (or read the family of the item a variant question is about); set ``no_match``.
        Returns ``(items, variants)``."""
        item = self.focus.item if self.focus.used and self.focus.item and self.focus.item.kind == "product" else None
        if item is not None:
            asked, colour = asked_variant(self.text, Vocabulary.of(self.catalog))
            if asked:
                variants = yield from self.tools.variants(item, colour, f"focus used: {self.focus.reason}")
                return variants.items, variants
        note = f"focus {'used' if self.focus.used else 'not used'}: {self.focus.reason}"
        items = yield from self.tools.search(self.query, {}, self.settings.top_k, note=note)
        cosines = [self.tools.best_cosine(q, items if q == self.query else [])
                   for q in dict.fromkeys([self.query, self.text]) if q]
        self.top_score = max(cosines, default=None)
        relevant = bool(Vocabulary.of(self.catalog).types_in(self.text)) or any(
            cosine >= self.settings.no_match_threshold for cosine in cosines)
        self.no_match = not (items and relevant)
        if not self.no_match and any(descriptions) and items[0].kind == "product":
            asked, colour = asked_variant(self.text, Vocabulary.of(self.catalog))
            if asked:  # "do you have this bag in black?" with a photo of the bag
                variants = yield from self.tools.variants(items[0], colour, "about the product in the photo")
                return variants.items, variants
        return items, None

    # -- responding --------------------------------------------------------------------------------------------------

    def _respond(self, items: list[Item], descriptions: list[str], variants: Variants | None):
        """The answer: "nothing matched", the model's answer or, without a model, the extractive one."""
        if self.no_match:
            self.offer = "no_match"
            answer = self.prompts["no_match"]
            yield answer
            return answer
        if self.vlm is None:
            self.notices.append(self.prompts["short_notice"])
            answer = self._short_answer(items, variants)
            yield answer
            return answer
        notes = self.focus.notes if self.focus.used else []
        if variants is not None:
            note = self.prompts["variant_note"].format(family=variants.name, colours=variants.colours())
            if variants.colour and variants.match is None:
                note += self.prompts["variant_note_missing"].format(colour=variants.colour)
            notes = [*notes, note]
        try:
            answer = yield from self._answer(descriptions, notes)
        except ModelUnavailable as error:
            logger.warning("The model failed during a turn; answering from the catalog: %s", error)
            self.notices.append(self.prompts["short_notice"])
            answer = self._short_answer(items, variants)
            yield "\n\n" + answer
        return self._finish(answer)

    def _short_answer(self, items: list[Item], variants: Variants | None = None) -> str:
        short = ShortAnswers(self.catalog, self.prompts)
        return short.variants(variants) if variants is not None else short.answer(items, self.query)

    def _run_tool(self, body: str):
        """Execute one ``<tool_call>`` body; return the text the model gets back."""
        try:
            name, items = yield from self.tools.call(body)
        except ValueError as error:
            return self.agent.prompts["tool_error"].format(error=clean(str(error)))
        return self.agent.prompts["tool_result"].format(tool=name, result=self._data(items))

    # -- answering ---------------------------------------------------------------------------------------------------

    def _data(self, items: list[Item]) -> str:
        """Items as the data block: one JSON object per item and line, numbered by ``n`` (numbers continue across
        the turn's tool calls), built so that no field can end the block (:func:`mmsupport.safety.data_line`)."""
        if not items:
            return self.agent.prompts["data_empty"]
        rows = [data_line({
            "n": self.numbers[item.id], "id": item.id, "kind": item.kind, "title": item.title,
            "category": item.category, "colour": item.colour,
            "price": round(item.price, 2) if item.price is not None else None,
            "text": clean(item.text)[:ITEM_TEXT_CHARS]}) for item in items]
        return self.agent.prompts["data"].format(items="\n".join(rows))

    def _model_history(self, budget: int) -> list[Message]:
        """Earlier messages as text (photos as their descriptions), newest kept first, within ``budget`` tokens."""
        kept: list[Message] = []
        for message in reversed(self.history):
            photos = [f"[photo: {self._describe(image) or 'not described'}]" for image in images_of(message)]
            text = clean(" ".join([*photos, text_of(message)])).strip()
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
        # A described photo reaches the model as its description only: one vision pass per photo and turn
        unseen = [image for image, description in zip(self.images, descriptions) if not description]
        current = {"role": "user", "content": [*({"type": "image", "image": image} for image in unseen),
                                               {"type": "text", "text": text}]}
        budget = (settings.context_tokens - settings.max_new_tokens - _tokens(self.agent.system) - _tokens(text)
                  - IMAGE_TOKENS * len(unseen))
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

        Words that could be the start of a copy of the system prompt wait until the next ones show they are not;
        once the text repeats it, nothing more is streamed and the customer sees the final answer, which leaves the
        copy out (:meth:`_finish`). Returns ``(raw text, visible text)``."""
        started = time.perf_counter()
        raw, shown, visible, copying = "", 0, [], False
        try:
            for piece in self.vlm.stream(messages, tools=tools):
                raw += piece
                if copying:
                    continue
                safe, copying = self._guard(raw, shown, self._safe_end(raw))
                if not copying and safe > shown:
                    visible.append(self._verify(raw[shown:safe]))
                    shown = safe
                    yield visible[-1]
            end = len(raw) if raw.find("<tool_call>") < 0 else raw.find("<tool_call>")
            if end > shown:
                visible.append(self._verify(raw[shown:end]))
                if not copying and not self._guard(raw, shown, end, final=True)[1]:
                    yield visible[-1]
        finally:
            self.timings["generate"] += time.perf_counter() - started
        return raw, "".join(visible)

    def _guard(self, raw: str, shown: int, end: int, *, final: bool = False) -> tuple[int, bool]:
        """How far ``raw`` may be shown now (up to ``end``), and whether ``raw[shown:end]`` completes
        :data:`LEAK_WORDS` words in a row of the system prompt (what came before ``shown`` was read already).

        Unless ``final``, the last words are held back when they are a run of the system prompt's words (up to
        :data:`LEAK_WORDS` - 1 of them; the last one may be the start of a word still being streamed), so a copy is
        caught before any of it is shown. Only the last
        :data:`LEAK_LOOKBACK_CHARS` characters are read, so each piece costs the same however long the answer is."""
        matches = list(_WORD.finditer(raw, max(0, shown - LEAK_LOOKBACK_CHARS), end))
        words = [match.group(0).lower() for match in matches]
        new = next((i for i, match in enumerate(matches) if match.end() > shown), len(matches))
        first = max(0, new - LEAK_WORDS + 1)
        runs = {tuple(words[i:i + LEAK_WORDS]) for i in range(first, len(words) - LEAK_WORDS + 1)}
        if runs & self.agent.system_shingles:
            return shown, True
        held, run = end, ""
        after = "" if matches and matches[-1].end() == end else " "  # a word touching the end may still grow
        for size in range(1, 0 if final else min(LEAK_WORDS - 1, len(words)) + 1):
            run = f" {words[-size]}{run}"
            if f"{run}{after}" not in self.agent.system_words:
                break
            held = matches[-size].start()
        return held, False

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
        """The final answer: normalised (:func:`mmsupport.safety.normalize`, citations checked again), no sentence
        or base64 run repeating the system prompt, tidy spacing, never empty."""
        answer = self._verify(normalize(answer))
        leaked = [run for run, decoded in decoded_runs(answer) if self._leaks(decoded)]
        for run in leaked:
            answer = answer.replace(run, " ")
        sentences = re.findall(r"[^.!?\n]*(?:[.!?]+|\n|$)\s*", answer)
        kept = [s for s in sentences if not self._leaks(s)]
        if leaked or len(kept) < len(sentences):
            self.flagged.append("removed text repeating the system prompt")
            kept = [s for s in kept if re.search(r"[^\W\d_]", s)]  # and the rules' numbers left behind
        answer = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", "".join(kept))).strip()
        if not answer:
            self.flagged.append("the model gave no answer; answered from the catalog instead")
            answer = self._short_answer(list(self.retrieved.values()))
        return answer

    def _leaks(self, sentence: str) -> bool:
        """Whether ``sentence`` repeats the system prompt, read normalised and with its base64 runs decoded."""
        for text in readings(sentence):
            words = _words(text)
            if len(words) >= LEAK_MIN_WORDS and f" {' '.join(words)} " in self.agent.system_words:
                return True
            if _shingles(text) & self.agent.system_shingles:
                return True
        return False

