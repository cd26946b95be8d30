"""Append-only JSON Lines logs (feedback votes, hand-off requests): one JSON object per line, safe across threads."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from mmsupport.errors import MMSupportError


class JsonlLog:
    """An append-only JSON Lines file at ``path``; ``what`` names its entries in error messages ("feedback")."""

    def __init__(self, path: str | Path, what: str):
        self.path = Path(path)
        self.what = what
        self._lock = threading.Lock()

    def append(self, entry: dict) -> dict:
        """Write ``entry`` as one line and return it; raise :class:`MMSupportError` when the file cannot be written."""
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as log:
                    log.write(line)
        except OSError as error:
            raise MMSupportError(f"Could not save the {self.what} to {self.path}: {error.strerror}.",
                                 hint="Point MMSUPPORT_FEEDBACK_PATH at a writable folder.") from None
        return entry

    def entries(self) -> list[dict]:
        """Every entry recorded so far, oldest first."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.strip()]
