"""Passing a conversation to a person: one small interface, and a default that records the request.

The agent calls :meth:`Handoff.handoff` when a shopper asks for a person ("talk to a human", "yes please, pass it to
support" right after the offer). A support desk implements it to open a ticket; until then :class:`RecordedHandoff`
appends the conversation to a JSON Lines file beside the feedback log and the shopper is told how to reach the shop
(``settings.contact``).
"""

from __future__ import annotations

import json
import secrets
import threading
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path

from mmsupport.errors import MMSupportError

#: File name of the recorded requests, in the folder of ``settings.feedback_path``.
HANDOFF_FILE = "handoffs.jsonl"


class Handoff(ABC):
    """Hands a conversation to the support team."""

    @abstractmethod
    def handoff(self, conversation: list[dict]) -> str:
        """Open a hand-off for ``conversation`` (``{"role", "content"}`` messages with text content, oldest first,
        ending with the shopper's request) and return its reference, which the shopper is shown.

        Raises :class:`~mmsupport.errors.MMSupportError` when the request could not be passed on."""


class RecordedHandoff(Handoff):
    """Appends each request to ``path`` (JSON Lines: time, reference, conversation); safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> RecordedHandoff:
        """The log beside ``settings.feedback_path``."""
        return cls(Path(settings.feedback_path).parent / HANDOFF_FILE)

    def handoff(self, conversation: list[dict]) -> str:
        reference = f"H-{datetime.now(timezone.utc):%Y%m%d}-{secrets.token_hex(3).upper()}"
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reference": reference,
                 "conversation": conversation}
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        except OSError as error:
            raise MMSupportError(f"Could not record the hand-off in {self.path}: {error.strerror}.",
                                 hint="Point MMSUPPORT_FEEDBACK_PATH at a writable folder.") from None
        return reference

    def entries(self) -> list[dict]:
        """Every request recorded so far, oldest first."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.strip()]
