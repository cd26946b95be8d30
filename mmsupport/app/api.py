"""The app's named API for scripts: ``/chat`` (one grounded turn), ``/search`` (catalog search) and ``/feedback``.

They take the same inputs as the browser and follow the same rules (:func:`~mmsupport.app.chat.check_message`,
:meth:`~mmsupport.app.chat.Chat.turn_settings`); bad input comes back as an error that says what to fix. A ``/chat``
call belongs to the session it names (``session_id``, or a new one), runs with that session's A/B variant and is
recorded in the conversation store like a browser turn.
"""

from __future__ import annotations

import gradio as gr

from mmsupport.app import views
from mmsupport.app.chat import Chat, check_message
from mmsupport.app.turnlog import TurnClock
from mmsupport.app.visitors import api_session
from mmsupport.catalog import category_filter
from mmsupport.errors import InvalidInput
from mmsupport.store import FEEDBACK_KINDS

#: How many ``/search`` calls run at once (each takes about 0.1 s of CPU).
SEARCH_CONCURRENCY = 8


class Api:
    """The API handlers, over the same :class:`~mmsupport.app.chat.Chat` the browser uses."""

    def __init__(self, chat: Chat):
        self.chat = chat
        self.settings = chat.settings

    def chat_turn(self, message: str, image: str | None = None, mode: str = "", k: int | None = None,
                  category: str | None = None, session_id: str | None = None, audio: str | None = None) -> dict:
        """One question (typed, or spoken in ``audio``, or both; optional photo) in, the grounded answer with
        citations and items out, with the ``session_id`` (the caller's or a new one), its ``variant``, the
        ``turn_id`` feedback can name, the ``handoff`` reference (or ``None``) and the ``transcript`` of ``audio``
        (``None`` without audio). ``mode`` "" and ``k`` ``None`` mean the variant's search settings."""
        from mmsupport.agent import TurnResult

        with views.ui_errors():
            session = api_session(self.chat.experiments, session_id)
            text = (message or "").strip()
            transcript = self.chat.voice.heard(audio) if audio else None
            text = f"{text} {transcript or ''}".strip()
            check_message(text, self.settings, has_images=bool(image))
            base = self.chat.variant_settings(session)
            turn = self.chat.turn_settings(mode or base.search_mode, base.top_k if k is None else k, category, base)
            files = [image] if image else []
            clock, result = TurnClock(), None
            try:
                for event in self.chat.run_turn(text, self.chat.images(files, {}), [], turn,
                                                self.chat.handoff_for(session)):
                    clock.saw(event)
                    result = event if isinstance(event, TurnResult) else result
            except Exception as error:
                clock.done()
                self.chat.record(session, text, turn, clock, files, error=f"{type(error).__name__}: {error}")
                raise
            clock.done()
            turn_id = self.chat.record(session, text, turn, clock, files, result=result)
        return {"answer": result.answer, "citations": result.citations, "no_match": result.no_match,
                "items": [views.item_dict(item) for item in result.items], "session_id": session["id"],
                "variant": session["variant"], "turn_id": turn_id, "handoff": result.handoff,
                "transcript": transcript}

    def feedback(self, session_id: str, kind: str, value: int, turn_id: str | None = None) -> dict:
        """Record feedback on a session (or one of its turns): ``kind`` thumbs (1 up, 0 down), resolved (1 solved,
        0 still need help) or csat (1-5)."""
        with views.ui_errors():
            if not (session_id or "").strip():
                raise InvalidInput("session_id is empty.", hint="Send the session_id that /chat returned.")
            session = api_session(self.chat.experiments, session_id)
            allowed = FEEDBACK_KINDS.get(kind)
            if allowed is None:
                raise InvalidInput(f"Unknown feedback kind {kind!r}.", hint=f"Use one of: {', '.join(FEEDBACK_KINDS)}.")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in allowed:
                raise InvalidInput(f"{kind} feedback takes {', '.join(map(str, allowed))}, not {value!r}.",
                                   hint=f"Send one of {', '.join(map(str, allowed))}.")
            self.chat.store.record_feedback(session["id"], kind, int(value), turn_id=(turn_id or None),
                                            variant=session["variant"], channel="api")
        return {"recorded": True}

    def search(self, query: str, mode: str = "", k: int | None = None, category: str | None = None,
               image: str | None = None) -> list[dict]:
        """Search the catalog: items best first, each with id, kind, title, text, price, score. ``image``: a photo
        to search with (mode ``image``: the pictures alone; other modes: fused with the words' results)."""
        with views.ui_errors():
            turn = self.chat.turn_settings(mode or self.settings.search_mode,
                                           self.settings.top_k if k is None else k, category)
            if not (query or "").strip() and not image:
                raise InvalidInput("The query is empty.", hint="Send some words to search for, or a photo.")
            photo = self.chat.images([image], {})[0] if image else None
            catalog = self.chat.resources.wait_for_catalog()
            items = catalog.search(query or "", mode=turn.search_mode, k=turn.top_k,
                                   where=category_filter(turn.category), image=photo)
            return [views.item_dict(item) for item in items]

    def register(self) -> None:
        """Add ``/chat``, ``/search`` and ``/feedback`` to the Blocks being built (call inside its ``with`` block).

        Hidden components give the endpoints their documented names and defaults (``image``, ``category`` and
        ``audio`` are optional) and let Gradio check that an uploaded ``image`` or ``audio`` is an upload of this
        server.
        """
        with gr.Column(visible=False):
            message = gr.Textbox(label="message")
            query = gr.Textbox(label="query")
            image = gr.File(label="image", type="filepath")
            audio = gr.File(label="audio", type="filepath")
            mode = gr.Textbox("", label="mode")
            k = gr.Number(None, label="k", precision=0)
            category = gr.Textbox("", label="category")
            session_id = gr.Textbox(None, label="session_id")
            kind, value = gr.Textbox(label="kind"), gr.Number(label="value", precision=0)
            turn_id = gr.Textbox(None, label="turn_id")
            answer = gr.JSON(label="answer")
            result = gr.JSON(label="result")
            recorded = gr.JSON(label="recorded")
            chat_button, search_button, feedback_button = gr.Button(), gr.Button(), gr.Button()
        chat_button.click(self.chat_turn, [message, image, mode, k, category, session_id, audio], answer,
                          api_name="chat", concurrency_id="turn")
        feedback_button.click(self.feedback, [session_id, kind, value, turn_id], recorded, api_name="feedback",
                              concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
        # Searches have their own queue slots: they never wait behind model turns, which run two at a time.
        search_button.click(self.search, [query, mode, k, category, image], result, api_name="search",
                            concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
