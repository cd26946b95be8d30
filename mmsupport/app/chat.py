"""The chat's turn handlers: plain functions of ``(message, history)`` style, callable without a browser.

:class:`Chat` holds what every handler needs (settings, the background-loaded resources, the feedback log); its
methods are wired to the page in :mod:`mmsupport.app.layout` and reused by the API (:mod:`mmsupport.app.api`).
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from mmsupport.app import views
from mmsupport.app.resources import Resources
from mmsupport.config import Settings
from mmsupport.errors import InvalidInput
from mmsupport.feedback import FeedbackLog

try:  # On Hugging Face ZeroGPU hardware the model call must run inside a `spaces.GPU` function.
    import spaces
except ImportError:
    spaces = None

#: Image types the chat accepts (checked by extension here, then by decoding with mmsupport.images.load_image).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}


def validate_upload(path: str | Path, settings: Settings):
    """Check an uploaded file is an image within ``settings.max_upload_mb`` and return it decoded (RGB PIL image).

    Raises :class:`InvalidInput` with a message for the person who uploaded it.
    """
    from mmsupport.images import load_image

    path = Path(path)
    name = path.name
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InvalidInput(f"{name} is not an image.",
                           hint=f"Upload a photo ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    size_mb = path.stat().st_size / 1024 / 1024
    if size_mb > settings.max_upload_mb:
        raise InvalidInput(f"{name} is {size_mb:.1f} MB, over the {settings.max_upload_mb:g} MB limit.",
                           hint="Upload a smaller or more compressed photo.")
    try:
        return load_image(path, max_side=settings.image_max_side)
    except InvalidInput as error:
        raise InvalidInput(f"{name}: {error.message}", hint=error.hint) from None


def _text_of(content) -> str:
    """The text parts of a chat message's content (a string or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") if content.get("type") == "text" else ""
    return " ".join(_text_of(part) for part in content)


def _files_of(content) -> list[str]:
    """The file paths in a chat message's content."""
    if isinstance(content, dict):
        if "path" in content:
            return [content["path"]]
        if content.get("type") == "file":
            return [content["file"]["path"]]
        return []
    if isinstance(content, list):
        return [path for part in content for path in _files_of(part)]
    return []


def last_user_turn(history: list[dict]) -> tuple[int, str, list[str]]:
    """Index where the last user turn starts, its text and its image paths."""
    start = len(history)
    while start > 0 and history[start - 1]["role"] == "user":
        start -= 1
    if start == len(history):
        raise InvalidInput("There is no question to answer yet.", hint="Type a question or attach a photo first.")
    turn = history[start:]
    text = " ".join(_text_of(m["content"]) for m in turn).strip()
    files = [path for m in turn for path in _files_of(m["content"])]
    return start, text, files


class Chat:
    """The chat's handlers, for one app: ``add_message``, ``respond``, ``retry``, ``undo``, ``ask_about``, ``vote``.

    ``turns`` (a per-session ``gr.State``) holds one record per answered turn: where it sits in the chat, what
    feedback stores about it, and the agent's conversation after it (photos included), which the next turn
    continues from.
    """

    def __init__(self, settings: Settings, resources: Resources, feedback: FeedbackLog):
        self.settings = settings
        self.resources = resources
        self.feedback = feedback
        self.placeholder = views.placeholder_image()
        if spaces is not None:
            self.run_turn = spaces.GPU(self.run_turn)

    def turn_settings(self, mode: str, k: float, category: str | None) -> Settings:
        """The app's settings with this turn's search mode, ``k`` and category."""
        if mode not in ("vector", "fts", "hybrid"):
            raise InvalidInput(f"Unknown search mode {mode!r}.", hint="Use vector, fts or hybrid.")
        return dataclasses.replace(self.settings, search_mode=mode, top_k=max(1, min(int(k), 50)),
                                   category=None if category in (None, "", "All") else category)

    def run_turn(self, text: str, image_paths: list[str], history: list[dict], turn: Settings) -> Iterator:
        """The agent's events for one turn; the one place the model runs (wrapped for ZeroGPU)."""
        images = [validate_upload(path, turn) for path in image_paths]
        from mmsupport.agent import Agent

        agent = Agent(self.resources.vlm, self.resources.wait_for_catalog(), turn)
        yield from agent.stream_turn(text, images, history=history)

    def add_message(self, message: dict | None, history: list[dict]):
        """Put the person's text and photo into the conversation; reject bad input without losing it."""
        settings = self.settings
        message = message or {}
        text, files = (message.get("text") or "").strip(), message.get("files") or []
        with views.ui_errors():
            if not text and not files:
                raise InvalidInput("The message is empty.", hint="Type a question or attach a photo.")
            if len(text) > settings.max_message_chars:
                raise InvalidInput(f"The message is {len(text)} characters long, over the "
                                   f"{settings.max_message_chars} limit.", hint="Shorten it and send again.")
            for path in files:
                validate_upload(path, settings)
        history = history + [{"role": "user", "content": {"path": path}} for path in files]
        if text:
            history.append({"role": "user", "content": views.escape(text)})
        return history, gr.MultimodalTextbox(value=None)

    def respond(self, history: list[dict], mode: str, k: float, category: str | None, turns: list[dict]):
        """Stream the answer to the last user turn: step messages, then the answer, then the item cards."""
        from mmsupport.agent import Step, TurnResult

        with views.ui_errors():
            turn = self.turn_settings(mode, k, category)
            start, text, files = last_user_turn(history)
            question = html.unescape(text)  # the chat shows it escaped
            turns = [t for t in turns if t["first"] < start]  # a retried turn is answered afresh
            steps, answer, result = [], "", None
            for event in self.run_turn(question, files, turns[-1]["history"] if turns else [], turn):
                if isinstance(event, TurnResult):
                    result = event
                    continue
                if isinstance(event, Step):
                    steps.append(views.step_message(event))
                else:
                    answer += event
                partial = [{"role": "assistant", "content": views.escape(answer)}] if answer else []
                yield history + steps + partial, gr.skip(), gr.skip(), gr.skip()
        shown = history + steps + [{"role": "assistant",
                                    "content": views.link_citations(views.escape(result.answer), result.items)}]
        record = {"first": start, "last": len(shown) - 1, "log": self._log(question, result, turn, files),
                  "history": result.history}
        yield (shown, [views.card(item, self.placeholder) for item in result.items], result.items,
               turns + [record])

    def _log(self, question: str, result, turn: Settings, files: list[str]) -> dict:
        """What the feedback log stores about a turn."""
        return {"question": question, "answer": result.answer, "citations": result.citations,
                "item_ids": [item.id for item in result.items], "no_match": result.no_match, "images": len(files),
                "search": {"mode": turn.search_mode, "k": turn.top_k, "category": turn.category},
                "model": self.resources.vlm.name if self.resources.vlm is not None else None}

    def retry(self, history: list[dict], retry_data: gr.RetryData):
        """Drop the answer being retried (and its steps) so ``respond`` answers the same question again."""
        return history[: retry_data.index + 1]

    def undo(self, history: list[dict], turns: list[dict], undo_data: gr.UndoData):
        """Remove the last turn and put its text and photo back into the textbox."""
        start, text, files = last_user_turn(history[: undo_data.index + 1])
        return (history[:start], [t for t in turns if t["first"] < start],
                gr.MultimodalTextbox(value={"text": html.unescape(text), "files": files}))

    def ask_about(self, items: list, history: list[dict], selected: gr.SelectData):
        """Clicking a card shows the item's details and asks about it."""
        item = items[selected.index]
        question = {"role": "user", "content": views.escape(f"Tell me more about {item.title} [{item.id}].")}
        return history + [question], views.details(item)

    def vote(self, turns: list[dict], like: gr.LikeData):
        """Store a thumbs up/down with the turn it is about."""
        index = like.index[0] if isinstance(like.index, (list, tuple)) else like.index
        turn = next((t for t in reversed(turns) if t["first"] <= index <= t["last"]), None)
        if turn is None:
            return
        with views.ui_errors():
            self.feedback.record(liked=bool(like.liked), turn=turn["log"])
        gr.Info("Thanks for the feedback!" if like.liked else "Thanks, we will use this to improve.")
