"""The app's named API for scripts: ``/chat`` (one grounded turn) and ``/search`` (catalog search)."""

from __future__ import annotations

import gradio as gr

from mmsupport.app import views
from mmsupport.app.chat import Chat
from mmsupport.catalog import sql_literal
from mmsupport.errors import InvalidInput

#: How many ``/search`` calls run at once (each takes about 0.1 s of CPU).
SEARCH_CONCURRENCY = 8


class Api:
    """The API handlers, over the same :class:`~mmsupport.app.chat.Chat` the browser uses."""

    def __init__(self, chat: Chat):
        self.chat = chat
        self.settings = chat.settings

    def chat_turn(self, message: str, image: str | None, mode: str, k: float, category: str | None) -> dict:
        """One question (and optional photo) in, the grounded answer with citations and items out."""
        from mmsupport.agent import TurnResult

        with views.ui_errors():
            turn = self.chat.turn_settings(mode or self.settings.search_mode, k or self.settings.top_k, category)
            events = self.chat.run_turn(message or "", [image] if image else [], [], turn)
            result = next(event for event in events if isinstance(event, TurnResult))
        return {"answer": result.answer, "citations": result.citations, "no_match": result.no_match,
                "items": [views.item_dict(item) for item in result.items]}

    def search(self, query: str, mode: str = "hybrid", k: int = 5, category: str = "") -> list[dict]:
        """Search the catalog: items best first, each with id, kind, title, text, price, score."""
        with views.ui_errors():
            turn = self.chat.turn_settings(mode, k, category)
            if not (query or "").strip():
                raise InvalidInput("The query is empty.", hint="Send some words to search for.")
            where = f"category = {sql_literal(turn.category)}" if turn.category else None
            catalog = self.chat.resources.wait_for_catalog()
            items = catalog.search(query, mode=turn.search_mode, k=turn.top_k, where=where)
            return [views.item_dict(item) for item in items]

    def register(self) -> None:
        """Add ``/chat`` and ``/search`` to the Blocks being built (call inside its ``with`` block)."""
        with gr.Column(visible=False):
            message = gr.Textbox()
            image = gr.File(type="filepath")
            mode = gr.Textbox(self.settings.search_mode)
            k = gr.Number(self.settings.top_k, precision=0)
            category = gr.Textbox()
            result = gr.JSON()
            button = gr.Button()
        button.click(self.chat_turn, [message, image, mode, k, category], result, api_name="chat",
                     concurrency_id="turn")
        # Searches have their own queue slots: they never wait behind model turns, which run two at a time.
        gr.api(self.search, api_name="search", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
