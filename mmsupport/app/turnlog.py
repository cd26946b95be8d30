"""What the conversation store records about a turn, and the clock that times it.

The browser (:meth:`mmsupport.app.chat.Chat.respond`) and the API (:meth:`mmsupport.app.api.Api.chat_turn`) both
time a turn with a :class:`TurnClock` around the agent's event stream and record it with :func:`log_turn`: answered
or failed, every turn has a row. Recording never raises and never waits for the database
(:meth:`mmsupport.store.ConversationStore.log_turn` writes in the background).
"""

from __future__ import annotations

import logging
import time

from mmsupport.config import Settings
from mmsupport.store import ConversationStore

log = logging.getLogger(__name__)


class TurnClock:
    """Seconds from the start of a turn to its first streamed answer text and to its full answer."""

    def __init__(self):
        self.started = time.perf_counter()
        self.first_token_s: float | None = None
        self.answer_s: float | None = None

    def saw(self, event) -> None:
        """Note an event of the agent's stream: the first non-empty text is the first token."""
        if self.first_token_s is None and isinstance(event, str) and event:
            self.first_token_s = time.perf_counter() - self.started

    def done(self) -> None:
        """The answer is complete (or the turn failed)."""
        self.answer_s = time.perf_counter() - self.started


def turn_row(question: str, turn: Settings, clock: TurnClock, *, result=None, answer: str = "",
             model: str | None = None, error: str | None = None) -> dict:
    """The store's columns for a turn: from its :class:`~mmsupport.agent.TurnResult`, or ``answer`` and ``error``
    when it failed."""
    row = {"question": question, "answer": answer, "model": model, "error": error,
           "search": {"mode": turn.search_mode, "k": turn.top_k, "category": turn.category},
           "first_token_s": clock.first_token_s, "answer_s": clock.answer_s}
    if result is not None:
        row.update(answer=result.answer, citations=result.citations,
                   retrieved_ids=[item.id for item in result.items], top_score=result.top_score,
                   no_match=result.no_match, intent=result.intent,
                   focus_used=bool(result.focus.get("used")))
    return row


def log_turn(store: ConversationStore, session: dict, row: dict, photos: list[bytes]) -> str | None:
    """Record a turn of ``session`` (``{"id", "variant", "channel"}``); its id, or ``None`` if it could not even be
    queued (logged and counted, the shopper's answer is not affected)."""
    try:
        return store.log_turn(session["id"], row, variant=session["variant"], channel=session["channel"],
                              photos=photos)
    except Exception:  # recording must never cost the shopper their answer
        store.failures += 1
        log.exception("could not record a turn")
        return None


def photo_bytes(paths: list[str]) -> list[bytes]:
    """The raw bytes of a turn's photos (their hashes identify them in the store); unreadable ones are skipped."""
    data = []
    for path in paths:
        try:
            with open(path, "rb") as file:
                data.append(file.read())
        except OSError:
            log.warning("could not read a photo to record its hash")
    return data
