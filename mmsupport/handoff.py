"""Passing a conversation to a person: one small interface, and a default that records the request.

The agent calls :meth:`Handoff.handoff` when a shopper asks for a person ("talk to a human", "yes please, pass it to
support" right after the offer). A support desk implements it to open a ticket; until then :class:`RecordedHandoff`
appends the conversation to a JSON Lines file beside the feedback log and the shopper is told how to reach the shop
(``settings.contact``).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path

from mmsupport.jsonl import JsonlLog

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
        self._log = JsonlLog(path, "hand-off request")
        self.path = self._log.path

    @classmethod
    def from_settings(cls, settings) -> RecordedHandoff:
        """The log beside ``settings.feedback_path``."""
        return cls(Path(settings.feedback_path).parent / HANDOFF_FILE)

    def handoff(self, conversation: list[dict]) -> str:
        reference = f"H-{datetime.now(timezone.utc):%Y%m%d}-{secrets.token_hex(3).upper()}"
        self._log.append({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reference": reference,
                          "conversation": conversation})
        return reference

    def entries(self) -> list[dict]:
        """Every request recorded so far, oldest first."""
        return self._log.entries()
