"""Thumbs up/down on answers, kept in an append-only JSON Lines log.

One line per vote, holding the turn it is about (question, answer, cited and retrieved ids, search settings, model)
and nothing about the person beyond the text they typed: no session id, IP address or uploaded image.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

from mmsupport.errors import MMSupportError


class FeedbackLog:
    """Append-only feedback log at ``path`` (``settings.feedback_path``); safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, *, liked: bool, turn: dict) -> dict:
        """Append one vote on ``turn`` (the turn's question, answer, ids and settings) and return the entry."""
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "rating": "up" if liked else "down", **turn}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as log:
                    log.write(line)
        except OSError as error:
            raise MMSupportError(f"Could not save feedback to {self.path}: {error.strerror}.",
                                 hint="Point MMSUPPORT_FEEDBACK_PATH at a writable file.") from None
        return entry

    def entries(self) -> list[dict]:
        """Every vote recorded so far, oldest first."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.strip()]
