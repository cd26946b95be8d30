"""The chat's turn handlers: plain functions of ``(message, history)`` style, callable without a browser.

:class:`Chat` holds what every handler needs (settings, the background-loaded resources, the conversation store and
the A/B variants); its methods are wired to the page in :mod:`mmsupport.app.layout` and reused by the API
(:mod:`mmsupport.app.api`).

Each attached photo is decoded and checked once, when it is attached (:func:`mmsupport.images.check_upload`), and
kept per session in ``uploads`` (path → image); the turn passes that image on, it is not read again.

Every turn, answered or failed, is recorded in the store with its session, variant and timings
(:mod:`mmsupport.app.turnlog`); the turn runs with its variant's settings (:mod:`mmsupport.experiments`).
"""

from __future__ import annotations

import dataclasses
import html
import logging
from collections.abc import Iterator

import gradio as gr

from mmsupport import messages
from mmsupport.app import turnlog, views, voice
from mmsupport.app.resources import Resources
from mmsupport.app.turnlog import TurnClock
from mmsupport.app.visitors import Visitors
from mmsupport.catalog import category_filter
from mmsupport.config import SEARCH_MODES, Settings
from mmsupport.errors import InvalidInput, MMSupportError
from mmsupport.experiments import Experiments
from mmsupport.handoff import StoreHandoff, Webhook
from mmsupport.images import check_upload
from mmsupport.store import ConversationStore

try:  # On Hugging Face ZeroGPU hardware the model call must run inside a `spaces.GPU` function.
    import spaces
except ImportError:
    spaces = None

log = logging.getLogger(__name__)

#: Most k a turn or a search may ask for.
MAX_K = 50
#: Decoded photos kept per session (the oldest are dropped and read again if a turn needs them).
MAX_UPLOADS = 16


def check_message(text: str, settings: Settings, *, has_images: bool = False) -> None:
    """The one rule for a message, in the browser and over the API: not empty, at most ``max_message_chars``."""
    if not text and not has_images:
        raise InvalidInput("The message is empty.", hint="Type a question or attach a photo.")
    if len(text) > settings.max_message_chars:
        raise InvalidInput(f"The message is {len(text)} characters long, over the {settings.max_message_chars} "
                           "limit.", hint="Shorten it and send again.")


def shopper_text(error: MMSupportError) -> str:
    """What a shopper is told when a turn fails: the reason for their own input, plain words for the rest."""
    if isinstance(error, InvalidInput):
        return str(error)
    log.warning("turn failed: %s", error)
    return "Sorry, I cannot look things up right now. Please try again in a few minutes."


def notice(reasons: list[str]) -> gr.Markdown:
    """The line under the message box that says why an input was not accepted (hidden when there is none)."""
    text = "  \n".join(f"⚠️ {views.escape(reason)}" for reason in reasons)
    return gr.Markdown(text, visible=bool(text))


def last_user_turn(history: list[dict]) -> tuple[int, str, list[str]]:
    """Index where the last user turn starts, its text and its image paths."""
    start = len(history)
    while start > 0 and history[start - 1]["role"] == "user":
        start -= 1
    if start == len(history):
        raise InvalidInput("There is no question to answer yet.", hint="Type a question or attach a photo first.")
    turn = history[start:]
    text = " ".join(voice.unmark(messages.text_of(m)) for m in turn).strip()
    files = [str(path) for m in turn for path in messages.images_of(m)]
    return start, text, files


def voted_turn(turns: list[dict], like: gr.LikeData) -> tuple[int, dict | None]:
    """Where in the chat a thumbs vote is, and the answered turn it is on (``None``: not one of the assistant's)."""
    index = like.index[0] if isinstance(like.index, (list, tuple)) else like.index
    return index, next((t for t in reversed(turns) if t["first"] <= index <= t["last"]), None)


def _before(turns: list[dict], start: int) -> list[dict]:
    """The turn records of the chat before position ``start``."""
    return [t for t in turns if t["first"] < start]


class Chat:
    """The chat's handlers for one app.

    ``turns`` (a per-session ``gr.State``) holds one record per answered turn: where it sits in the chat, its id in
    the store (``turn_id``, which feedback names), the items it retrieved and the agent's conversation after it
    (photos included), which the next turn continues from.
    """

    def __init__(self, settings: Settings, resources: Resources, store: ConversationStore,
                 experiments: Experiments | None = None):
        self.settings = settings
        self.resources = resources
        self.store = store
        self.experiments = experiments or Experiments.from_settings(settings)
        self.visitors = Visitors(self.experiments)
        self.placeholder = views.placeholder_image()
        self.voice = voice.Voice(settings, resources)
        self.webhook = Webhook.from_settings(settings)
        if spaces is not None:
            self.run_turn = spaces.GPU(self.run_turn)

    def handoff_for(self, session: dict | None) -> StoreHandoff:
        """Where the hand-offs of ``session`` (``{"id", "variant", "channel"}``) go: tickets of that session."""
        session = session or self.visitors.arrive(None)[1]
        return StoreHandoff(self.store, session["id"], variant=session["variant"], channel=session["channel"],
                            webhook=self.webhook)

    def variant_settings(self, session: dict | None) -> Settings:
        """The settings of the session's A/B variant (the app's own for the control or no session)."""
        return self.experiments.get(session["variant"]).apply(self.settings) if session else self.settings

    def turn_settings(self, mode: str, k: float, category: str | None, base: Settings | None = None) -> Settings:
        """``base`` (default: the app's settings) with this turn's search mode, ``k`` (1 to 50) and category ("All":
        every one)."""
        if mode not in SEARCH_MODES:
            raise InvalidInput(f"Unknown search mode {mode!r}.", hint=f"Use one of: {', '.join(SEARCH_MODES)}.")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k != int(k) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be a whole number from 1 to {MAX_K}, not {k!r}.",
                               hint="Ask for fewer items, e.g. k=5.")
        return dataclasses.replace(base or self.settings, search_mode=mode, top_k=int(k),
                                   category=None if category in (None, "", "All") else category)

    def images(self, paths: list[str], uploads: dict) -> list:
        """The decoded photos for ``paths``: from ``uploads`` when checked on attach, else checked now."""
        return [uploads.get(path) or check_upload(path, max_mb=self.settings.max_upload_mb,
                                                  max_side=self.settings.image_max_side) for path in paths]

    def run_turn(self, text: str, images: list, history: list[dict], turn: Settings, handoff=None) -> Iterator:
        """The agent's events for one turn; the one place the model runs (wrapped for ZeroGPU). ``handoff``: where
        a request for a person goes (:mod:`mmsupport.handoff`; default the agent's)."""
        from mmsupport.agent import Agent

        agent = Agent(self.resources.vlm_for(turn), self.resources.wait_for_catalog(), turn, handoff=handoff)
        yield from agent.stream_turn(text, images, history=history)

    # -- the message box ---------------------------------------------------------------------------------------------

    def attach(self, message: dict | None, uploads: dict):
        """Check photos and recordings when they are attached: keep the good ones (photos decoded), drop the others
        with the reason."""
        files = (message or {}).get("files") or []
        if all(path in uploads for path in files):
            return gr.skip(), gr.skip(), gr.skip()
        uploads, kept, reasons = dict(uploads), [], []
        for path in files:
            try:
                uploads[path] = self.voice.check(path) if voice.is_audio(path) else self.images([path], uploads)[0]
                kept.append(path)
            except InvalidInput as error:
                reasons.append(str(error))
        uploads = dict(list(uploads.items())[-MAX_UPLOADS:])
        box = gr.MultimodalTextbox(value={"text": message.get("text") or "", "files": kept}) if reasons else gr.skip()
        return box, uploads, notice(reasons)

    def add_message(self, message: dict | None, history: list[dict], uploads: dict):
        """Put the person's text (or what their recording says, marked as spoken) and photo into the conversation;
        a rejected message stays in the box, with the reason shown under it, and the chat is left as it was."""
        message = message or {}
        text, files = (message.get("text") or "").strip(), message.get("files") or []
        try:
            text, files, spoken = self.voice.hear(text, files)
            check_message(text, self.settings, has_images=bool(files))
            images = self.images(files, uploads)
        except InvalidInput as error:
            return gr.skip(), voice.without_recordings(message), notice([str(error)]), gr.skip()
        uploads = dict(list({**uploads, **dict(zip(files, images))}.items())[-MAX_UPLOADS:])
        history = history + [{"role": "user", "content": {"path": path}} for path in files]
        if text:
            history.append({"role": "user", "content": voice.mark(views.escape(text), spoken)})
        return history, gr.MultimodalTextbox(value=None), notice([]), uploads

    # -- answering -------------------------------------------------------------------------------------------------

    @staticmethod
    def waiting(history: list[dict]) -> None:
        """Stop the event chain, without a message, when no question waits for an answer (it was rejected)."""
        if not history or history[-1]["role"] != "user":
            raise gr.Error("No question waits for an answer.", visible=False, print_exception=False)

    def respond(self, history: list[dict], mode: str, k: float, category: str | None, turns: list[dict],
                uploads: dict, session: dict | None = None):
        """Stream the answer to the last user turn: step messages, then the answer, then the item cards.

        Does nothing when no question is waiting (the message was rejected). A turn that fails says why in the chat.
        The turn runs with ``session``'s variant and is recorded, with its timings, answered or not; a request for a
        person opens a ticket of ``session``, and the turn's record keeps its reference.
        """
        from mmsupport.agent import Step, TurnResult

        if not history or history[-1]["role"] != "user":
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        session = session or self.visitors.arrive(None)[1]
        start, text, files = last_user_turn(history)
        question = html.unescape(text)  # the chat shows it escaped
        turns = _before(turns, start)  # a retried turn is answered afresh
        steps, answer, result, clock, turn = [], "", None, TurnClock(), self.settings
        try:
            turn = self.turn_settings(mode, k, category, self.variant_settings(session))
            events = self.run_turn(question, self.images(files, uploads), turns[-1]["history"] if turns else [], turn,
                                   self.handoff_for(session))
            for event in events:
                clock.saw(event)
                if isinstance(event, TurnResult):
                    result = event
                    continue
                if isinstance(event, Step):
                    steps.append(views.step_message(event))
                else:
                    answer += event
                partial = [{"role": "assistant", "content": views.escape(answer)}] if answer else []
                yield history + steps + partial, gr.skip(), gr.skip(), gr.skip()
        except Exception as error:
            clock.done()
            said = shopper_text(error) if isinstance(error, MMSupportError) else ""
            self.record(session, question, turn, clock, files, answer=said, error=f"{type(error).__name__}: {error}")
            if not isinstance(error, MMSupportError):
                raise
            yield history + [{"role": "assistant", "content": views.escape(said)}], [], [], turns
            return
        clock.done()
        turn_id = self.record(session, question, turn, clock, files, result=result)
        shown = history + steps + [{"role": "assistant",
                                    "content": views.link_citations(views.escape(result.answer), result.items)}]
        record = {"first": start, "last": len(shown) - 1, "turn_id": turn_id, "items": result.items,
                  "history": result.history, "handoff": result.handoff}
        yield shown, views.cards(result.items, self.placeholder), result.items, turns + [record]

    def record(self, session: dict, question: str, turn: Settings, clock: TurnClock, files: list[str],
               **outcome) -> str | None:
        """Log a turn of ``session`` in the store (``outcome``: ``result=`` or ``answer=`` and ``error=``); its id."""
        vlm = self.resources.vlm_for(turn) if outcome.get("result") is not None else None
        row = turnlog.turn_row(question, turn, clock, model=vlm.name if vlm is not None else None, **outcome)
        return turnlog.log_turn(self.store, session, row, turnlog.photo_bytes(files))

    def _shown_items(self, turns: list[dict]):
        """The gallery and items state for the last of ``turns`` (empty when there is none)."""
        items = turns[-1]["items"] if turns else []
        return views.cards(items, self.placeholder), items

    # -- the chat's buttons and cards ------------------------------------------------------------------------------

    def retry(self, history: list[dict], turns: list[dict], retry_data: gr.RetryData):
        """Drop the answer being retried (and its steps) so ``respond`` answers the same question again; the cards
        go back to the turn before it until the new answer comes."""
        history = history[: retry_data.index + 1]
        return history, *self._shown_items(_before(turns, last_user_turn(history)[0]))

    def undo(self, history: list[dict], turns: list[dict], undo_data: gr.UndoData):
        """Remove the last turn, put its text and photo back into the textbox and its cards out of the gallery."""
        start, text, files = last_user_turn(history[: undo_data.index + 1])
        turns = _before(turns, start)
        return (history[:start], turns, gr.MultimodalTextbox(value={"text": html.unescape(text), "files": files}),
                *self._shown_items(turns))

    def clear(self):
        """An empty chat, gallery, item details and message notice."""
        return [], [], [], [], "", notice([])

    def ask_about(self, items: list, history: list[dict], selected: gr.SelectData):
        """Clicking a card shows the item's details and asks a follow-up question about that item."""
        item = items[selected.index]
        return history + [{"role": "user", "content": views.escape(views.follow_up(item))}], views.details(item)

    def choose(self, items: list, selected: gr.SelectData):
        """Remember the card clicked, and offer "More like this" when it is a product with a picture and image
        search is on."""
        item = items[selected.index]
        catalog = self.resources.catalog
        offer = (item.kind == "product" and bool(item.image) and catalog is not None
                 and catalog.image_embedder is not None)
        return item, gr.Button(visible=offer)

    def more_like_this(self, item, category: str | None):
        """The gallery's cards become the products whose pictures look most like ``item``'s (itself left out)."""
        if item is None:
            return gr.skip(), gr.skip(), gr.skip()
        turn = self.turn_settings("image", self.settings.top_k, category)
        try:
            found = self.resources.wait_for_catalog().search("", mode="image", image=item.image, k=turn.top_k + 1,
                                                             where=category_filter(turn.category))
        except MMSupportError as error:
            log.warning("More like this failed: %s", error)
            gr.Warning("Similar-looking items cannot be shown right now. Please try again later.")
            return gr.skip(), gr.skip(), gr.skip()
        found = [other for other in found if other.id != item.id][: turn.top_k]
        return (views.cards(found, self.placeholder), found,
                f"**Items that look like {views.escape(item.title)}** (tap one to ask about it)")

    def show_cited(self, target: str, turns: list[dict]):
        """A citation link was clicked (``target`` is ``"<id>|<nonce>"``): show the cards of the newest turn that
        retrieved that item, and its details."""
        item_id = (target or "").split("|", 1)[0]
        turn = next((t for t in reversed(turns) if any(item.id == item_id for item in t["items"])), None)
        if turn is None:
            return gr.skip(), gr.skip(), gr.skip()
        item = next(item for item in turn["items"] if item.id == item_id)
        return views.cards(turn["items"], self.placeholder), turn["items"], views.details(item)

    def vote(self, turns: list[dict], session: dict | None, like: gr.LikeData):
        """Store a thumbs up/down with the turn it is about."""
        _, turn = voted_turn(turns, like)
        if turn is None or session is None:
            return
        self.store.record_feedback(session["id"], "thumbs", int(bool(like.liked)), turn_id=turn.get("turn_id"),
                                   variant=session["variant"], channel=session["channel"])
        gr.Info("Thanks for the feedback!" if like.liked else "Thanks, we will use this to improve.")
