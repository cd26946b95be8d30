"""The app's named API for scripts: ``/chat`` (one grounded turn) and ``/search`` (catalog search).

Both take the same inputs as the browser and follow the same rules (:func:`~mmsupport.app.chat.check_message`,
:meth:`~mmsupport.app.chat.Chat.turn_settings`); bad input comes back as an error that says what to fix.
"""

from __future__ import annotations

import gradio as gr

from mmsupport.app import views
from mmsupport.app.chat import Chat, check_message
from mmsupport.catalog import category_filter
from mmsupport.errors import InvalidInput

#: How many ``/search`` calls run at once (each takes about 0.1 s of CPU).
SEARCH_CONCURRENCY = 8


class Api:
    """The API handlers, over the same :class:`~mmsupport.app.chat.Chat` the browser uses."""

    def __init__(self, chat: Chat):
        self.chat = chat
        self.settings = chat.settings

    def chat_turn(self, message: str, image: str | None = None, mode: str = "hybrid", k: int = 5,
                  category: str | None = None, audio: str | None = None) -> dict:
        """One question (typed, or spoken in ``audio``, or both; optional photo) in, the grounded answer with
        citations and items out; ``transcript`` is what ``audio`` said (None without audio)."""
        from mmsupport.agent import TurnResult

        with views.ui_errors():
            text = (message or "").strip()
            transcript = self.chat.voice.heard(audio) if audio else None
            text = f"{text} {transcript or ''}".strip()
            check_message(text, self.settings, has_images=bool(image))
            turn = self.chat.turn_settings(mode or self.settings.search_mode,
                                           self.settings.top_k if k is None else k, category)
            events = self.chat.run_turn(text, self.chat.images([image] if image else [], {}), [], turn)
            result = next(event for event in events if isinstance(event, TurnResult))
        return {"answer": result.answer, "citations": result.citations, "no_match": result.no_match,
                "items": [views.item_dict(item) for item in result.items], "transcript": transcript}

    def search(self, query: str, mode: str = "hybrid", k: int = 5, category: str | None = None) -> list[dict]:
        """Search the catalog: items best first, each with id, kind, title, text, price, score."""
        with views.ui_errors():
            turn = self.chat.turn_settings(mode or self.settings.search_mode,
                                           self.settings.top_k if k is None else k, category)
            if not (query or "").strip():
                raise InvalidInput("The query is empty.", hint="Send some words to search for.")
            catalog = self.chat.resources.wait_for_catalog()
            items = catalog.search(query, mode=turn.search_mode, k=turn.top_k, where=category_filter(turn.category))
            return [views.item_dict(item) for item in items]

    def register(self) -> None:
        """Add ``/chat`` and ``/search`` to the Blocks being built (call inside its ``with`` block).

        Hidden components give the endpoints their documented names and defaults (``image``, ``category`` and
        ``audio`` are optional) and let Gradio check that an uploaded ``image`` or ``audio`` is an upload of this
        server.
        """
        settings = self.settings
        with gr.Column(visible=False):
            message = gr.Textbox(label="message")
            query = gr.Textbox(label="query")
            image = gr.File(label="image", type="filepath")
            audio = gr.File(label="audio", type="filepath")
            mode = gr.Textbox(settings.search_mode, label="mode")
            k = gr.Number(settings.top_k, label="k", precision=0)
            category = gr.Textbox("", label="category")
            answer = gr.JSON(label="answer")
            result = gr.JSON(label="result")
            chat_button, search_button = gr.Button(), gr.Button()
        chat_button.click(self.chat_turn, [message, image, mode, k, category, audio], answer, api_name="chat",
                          concurrency_id="turn")
        # Searches have their own queue slots: they never wait behind model turns, which run two at a time.
        search_button.click(self.search, [query, mode, k, category], result, api_name="search",
                            concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
