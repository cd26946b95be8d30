"""Thumbs up/down on answers, kept in an append-only JSON Lines log.

One line per vote, holding the turn it is about (question, answer, cited and retrieved ids, search settings, model)
and nothing about the person beyond the text they typed: no session id, IP address or uploaded image.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from mmsupport.jsonl import JsonlLog


class FeedbackLog:
    """Append-only feedback log at ``path`` (``settings.feedback_path``); safe to share between threads."""

    def __init__(self, path: str | Path):
        self._log = JsonlLog(path, "feedback")
        self.path = self._log.path

    def record(self, *, liked: bool, turn: dict) -> dict:
        """Append one vote on ``turn`` (the turn's question, answer, ids and settings) and return the entry."""
        return self._log.append({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 "rating": "up" if liked else "down", **turn})

    def entries(self) -> list[dict]:
        """Every vote recorded so far, oldest first."""
        return self._log.entries()
