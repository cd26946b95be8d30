"""Who is talking: a sticky visitor id per browser, a session per conversation, and the A/B variant they get.

The visitor id lives in the browser (``gr.BrowserState``, local storage) and comes back on every visit, so a browser
keeps its variant. Each conversation (a page load, or Clear) is a new session with its own ``session_id``
(:func:`new_session_id`); the session carries the variant and the channel (``web`` in the browser, ``api`` for
scripts) to every turn and feedback it records. API callers pass their ``session_id`` or get a new one, and their
variant is assigned from it.
"""

from __future__ import annotations

import re
import secrets

import gradio as gr

from mmsupport.errors import InvalidInput
from mmsupport.experiments import Experiments

#: Where the browser keeps its visitor id. The id is not a secret (it only picks a variant), so the fixed key lets it
#: survive server restarts, which a random per-launch key would not.
VISITOR_KEY = "mmsupport-visitor"
#: What a session id from outside may look like (ours are 32 hex characters).
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


def new_session_id() -> str:
    """A new conversation's id: 32 hex characters."""
    return secrets.token_hex(16)


def visitor_state() -> gr.BrowserState:
    """The browser's visitor id (``None`` until the first page load makes one)."""
    return gr.BrowserState(None, storage_key=VISITOR_KEY, secret=VISITOR_KEY)


def session_for(experiments: Experiments, key: str, channel: str, session_id: str | None = None) -> dict:
    """A session record ``{"id", "variant", "channel"}``: the variant is assigned from ``key``."""
    return {"id": session_id or new_session_id(), "variant": experiments.assign(key).name, "channel": channel}


def api_session(experiments: Experiments, session_id: str | None) -> dict:
    """The session of an API call: the caller's ``session_id`` (checked) or a new one; its variant follows from it."""
    session_id = (session_id or "").strip() or new_session_id()
    if not SESSION_ID.fullmatch(session_id):
        raise InvalidInput("session_id must be 8 to 64 letters, digits, '-' or '_'.",
                           hint="Send the session_id a previous /chat call returned, or none for a new session.")
    return session_for(experiments, session_id, "api", session_id)


class Visitors:
    """The page's identity handlers: on load and on Clear."""

    def __init__(self, experiments: Experiments):
        self.experiments = experiments

    def arrive(self, visitor: str | None) -> tuple[str, dict]:
        """Page load: the browser's visitor id (made now on a first visit) and a new session in its variant."""
        visitor = visitor if isinstance(visitor, str) and SESSION_ID.fullmatch(visitor) else new_session_id()
        return visitor, session_for(self.experiments, visitor, "web")

    def restart(self, session: dict | None, visitor: str | None) -> dict:
        """Clear: a new session for the same visitor, in the same variant."""
        if session is None:
            return self.arrive(visitor)[1]
        return {**session, "id": new_session_id()}
