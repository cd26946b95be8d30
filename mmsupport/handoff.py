"""Passing a conversation to a person: one small interface, a store-backed default, and when to offer it.

The agent calls :meth:`Handoff.handoff` when a shopper asks for a person ("talk to a human", "yes please, pass it to
support" right after an offer); the chat's "Talk to a person" button and the ``/handoff`` API call it too.
:class:`StoreHandoff` opens a ticket in the conversation store (:meth:`ConversationStore.open_ticket`) with the
transcript (photos as their SHA-256, the photos themselves only when ``settings.store_images`` is on), the items the
assistant found and the reason, and optionally POSTs the ticket to ``settings.handoff_webhook`` on a thread of its own
(:class:`Webhook`), so a slow or broken webhook never holds up the shopper.

The assistant offers a person after a no-match, after two thumbs-down in a row, and when the same question comes back
(:func:`repeats`).
"""

from __future__ import annotations

import difflib
import io
import json
import logging
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from mmsupport.errors import MMSupportError

logger = logging.getLogger(__name__)

#: Why a ticket was opened: the shopper asked, or said yes to the offer made after a no-match, after two thumbs-down
#: in a row, or when the same question came back.
REASONS = ("asked", "no_match", "thumbs_down", "repeated")
#: A ticket reference as the shopper is shown it (``H-YYYYMMDD-XXXXXX``).
REFERENCE = re.compile(r"\bH-\d{8}-[0-9A-F]{6}\b", re.I)
#: How alike two questions must read (difflib ratio of their lists of lower-case words) to count as the same one.
REPEAT_RATIO = 0.85
#: How alike two words must be spelled to count as the same word ("jaket", "jacket").
TYPO_RATIO = 0.8
#: Fewest words a question needs before a repeat of it counts ("hi", "and red?" may well come twice).
REPEAT_MIN_WORDS = 3


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def repeats(text: str, earlier: Sequence[str]) -> bool:
    """Whether ``text`` asks again one of the ``earlier`` questions (nearly the same words, typos allowed, in
    nearly the same order).

    >>> repeats("Where is my ORDER #123?", ["where is my order 123"])
    True
    >>> repeats("Do you have it in blue?", ["Do you have it in red?"])
    False
    """
    words = _words(text)
    if len(words) < REPEAT_MIN_WORDS:
        return False
    for other in map(_words, earlier):
        spelled = [next(iter(difflib.get_close_matches(word, other, n=1, cutoff=TYPO_RATIO)), word) for word in words]
        if difflib.SequenceMatcher(None, spelled, other).ratio() >= REPEAT_RATIO:
            return True
    return False


def item_summary(item) -> dict:
    """What a ticket keeps about a retrieved catalog item."""
    return {"id": item.id, "kind": item.kind, "title": item.title, "category": item.category,
            "colour": item.colour, "price": item.price}


def photo_bytes(photo) -> bytes:
    """The bytes a ticket hashes (and stores) for a photo: a file's or the given bytes, a PIL image as PNG."""
    if isinstance(photo, (bytes, bytearray)):
        return bytes(photo)
    if isinstance(photo, (str, Path)):
        return Path(photo).read_bytes()
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    return buffer.getvalue()


class Handoff(ABC):
    """Hands a conversation to the support team."""

    @abstractmethod
    def handoff(self, conversation: list[dict], *, reason: str = "asked", items: Sequence[dict] = ()) -> str:
        """Open a hand-off for ``conversation`` and return its reference, which the shopper is shown.

        ``conversation``: ``{"role", "content"}`` messages with text content, oldest first, ending with the
        shopper's request; a message may carry ``"photos"`` (paths, bytes or PIL images) or, for photos already
        recorded, ``"images"`` (their SHA-256). ``reason`` is one of
        :data:`REASONS`, ``items`` the retrieved items (:func:`item_summary`).

        Raises :class:`~mmsupport.errors.MMSupportError` when the request could not be passed on."""


class StoreHandoff(Handoff):
    """Opens tickets for one session in a conversation store (``store``, or ``None`` when it could not be opened:
    then every hand-off fails and the shopper is told how to reach the shop).

    ``store`` may also be a function returning the store, called at the first hand-off (the CLI opens it only when
    asked for a person). ``webhook``: a :class:`Webhook` each new ticket is posted to.
    """

    def __init__(self, store, session_id: str, *, variant: str = "control", channel: str = "web",
                 webhook: Webhook | None = None):
        self._store = store
        self.session_id = session_id
        self.variant = variant
        self.channel = channel
        self.webhook = webhook

    @classmethod
    def from_settings(cls, settings, session_id: str | None = None, *, channel: str = "cli") -> StoreHandoff:
        """A hand-off into ``ConversationStore.from_settings(settings)`` (opened at the first hand-off), for
        ``session_id`` (default: a new one)."""
        from mmsupport.store import ConversationStore

        return cls(lambda: ConversationStore.from_settings(settings), session_id or secrets.token_hex(16),
                   channel=channel, webhook=Webhook.from_settings(settings))

    @property
    def store(self):
        """The store tickets go to (opened now if it was given as a function)."""
        if callable(self._store):
            self._store = self._store()
        if self._store is None:
            raise MMSupportError("The conversation store is not available, so no ticket can be opened.",
                                 hint="Check MMSUPPORT_DATABASE_URL and the database server, then restart the app.")
        return self._store

    def handoff(self, conversation: list[dict], *, reason: str = "asked", items: Sequence[dict] = ()) -> str:
        if reason not in REASONS:
            raise ValueError(f"hand-off reason {reason!r} is not one of {REASONS}")
        from mmsupport.store import image_hash

        store = self.store
        transcript, photos = [], []
        for message in conversation:
            data = []
            for photo in message.get("photos", ()):
                try:
                    data.append(photo_bytes(photo))
                except OSError as error:  # a temporary upload gone since: the ticket goes without it
                    logger.warning("hand-off: a photo of the conversation could not be read: %s", error)
            photos += data
            hashes = [*message.get("images", ()), *(image_hash(d) for d in data)]
            transcript.append({"role": message["role"], "content": message.get("content", ""),
                               **({"images": hashes} if hashes else {})})
        reference = store.open_ticket(self.session_id, reason=reason, transcript=transcript, items=list(items),
                                      variant=self.variant, channel=self.channel, photos=photos)
        if self.webhook is not None:
            self.webhook.send({"reference": reference, "session_id": self.session_id, "reason": reason,
                               "channel": self.channel, "variant": self.variant, "transcript": transcript,
                               "items": list(items)})
        return reference


class Webhook:
    """POSTs JSON to ``url`` on a background thread: ``retries`` more tries after a failure (waiting ``backoff``
    seconds, doubling), each with a ``timeout``; failures are logged and counted in :attr:`failures`, never raised."""

    def __init__(self, url: str, *, retries: int = 3, timeout: float = 5.0, backoff: float = 0.5):
        self.url = url
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.failures = 0

    @classmethod
    def from_settings(cls, settings) -> Webhook | None:
        """The webhook at ``settings.handoff_webhook``, or ``None`` when it is not set."""
        return cls(settings.handoff_webhook) if settings.handoff_webhook else None

    def send(self, payload: dict) -> threading.Thread:
        """Start posting ``payload``; returns the thread doing it (daemon: it never keeps the app up)."""
        thread = threading.Thread(target=self._post, args=(payload,), name="handoff-webhook", daemon=True)
        thread.start()
        return thread

    def _post(self, payload: dict) -> bool:
        body = json.dumps(payload, default=str).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                return True
            except (urllib.error.URLError, OSError, ValueError) as error:  # HTTPError, timeouts, refused
                logger.warning("hand-off webhook %s, try %d of %d: %s", self.url, attempt + 1, self.retries + 1,
                               error)
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** attempt)
        self.failures += 1
        logger.error("hand-off webhook %s failed for ticket %s after %d tries", self.url,
                     payload.get("reference"), self.retries + 1)
        return False
