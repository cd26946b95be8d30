"""Voice messages in the chat: a recording in the message box becomes the shopper's words, marked as spoken.

A recording (the box's microphone) or an audio file is checked when it is attached (:func:`mmsupport.speech.
load_audio`: its header and content, no model), which also starts loading the speech model in the background. On
send, :meth:`Voice.hear` transcribes it (biased toward the catalog's own words) and the turn runs as if the
transcript had been typed, with the photo when one came along; the chat shows it after :data:`SPOKEN`. A wrong
transcript is corrected with the chat's Undo: the transcript (and the photo) go back into the box as text, to edit
and send again. A recording without speech is answered "I didn't catch that" under the box, and nothing is searched.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from mmsupport.config import Settings
from mmsupport.errors import InvalidInput, MMSupportError
from mmsupport.speech import AUDIO_SUFFIXES, NOT_CAUGHT, NOT_CAUGHT_HINT, catalog_prompt, load_audio

log = logging.getLogger(__name__)

#: What the chat shows before a message that was spoken (Markdown: "Spoken:" in italics; no emoji font needed).
SPOKEN = "*Spoken:* "
#: Told to shoppers when the speech model cannot be loaded (the reason goes to the log and the admin tab).
VOICE_UNAVAILABLE = InvalidInput("Voice messages are not available right now.", hint="Please type your question.")


def is_audio(path: str) -> bool:
    """True for a file the message box passes on as a recording (by its name; its content is checked later)."""
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def mark(text: str, spoken: bool) -> str:
    """A chat message's text, after :data:`SPOKEN` when it was spoken."""
    return SPOKEN + text if spoken else text


def unmark(text: str) -> str:
    """A chat message's text without the spoken mark: what the shopper said or typed."""
    return text.removeprefix(SPOKEN)


def without_recordings(message: dict):
    """The message box after a refused message: its recordings dropped (sending them again cannot help), its text
    and photos kept; unchanged when it held no recording."""
    files = message.get("files") or []
    if not any(is_audio(path) for path in files):
        return gr.skip()
    return gr.MultimodalTextbox(value={"text": message.get("text") or "",
                                       "files": [path for path in files if not is_audio(path)]})


def textbox_options(settings: Settings) -> dict:
    """The message box's options: with voice on, a microphone and audio files beside photos."""
    if not settings.asr:
        return {"placeholder": "Type a question, or add a product photo…", "file_types": ["image"],
                "file_count": "single", "sources": ["upload"]}
    return {"placeholder": "Type or record a question, or add a product photo…",
            "file_types": ["image", *sorted(AUDIO_SUFFIXES)], "file_count": "multiple",
            "sources": ["upload", "microphone"]}


class Voice:
    """Checks and transcribes the recordings of one app, with its settings and background-loaded resources."""

    def __init__(self, settings: Settings, resources):
        self.settings = settings
        self.resources = resources

    def check(self, path: str) -> None:
        """Check a recording when it is attached (raises :class:`InvalidInput` with the reason) and start loading
        the speech model, so it is ready by the time the message is sent."""
        if not self.settings.asr:
            raise InvalidInput("Voice messages are turned off here.", hint="Please type your question.")
        load_audio(path, max_seconds=self.settings.max_audio_seconds, max_mb=self.settings.max_upload_mb)
        self.resources.start_asr()

    def transcribe(self, path: str):
        """The :class:`~mmsupport.speech.Transcript` of a recording, biased toward the catalog's words."""
        if not self.settings.asr:
            raise InvalidInput("Voice messages are turned off here.", hint="Please type your question.")
        try:
            asr = self.resources.asr()
        except MMSupportError as error:
            log.warning("speech model unavailable: %s", error)
            raise VOICE_UNAVAILABLE from None
        catalog = self.resources.catalog
        prompt = catalog_prompt(catalog) if catalog is not None and len(catalog) else None
        transcript = asr.transcribe(path, max_seconds=self.settings.max_audio_seconds,
                                    max_mb=self.settings.max_upload_mb, prompt=prompt)
        log.info("transcribed %.1f s of audio in %.2f s", transcript.duration_s, transcript.seconds)
        return transcript

    def heard(self, path: str) -> str:
        """What a recording says; raises "I didn't catch that" when it holds no speech."""
        text = self.transcribe(path).text
        if not text:
            raise InvalidInput(NOT_CAUGHT, hint=NOT_CAUGHT_HINT)
        return text

    def hear(self, text: str, files: list[str]) -> tuple[str, list[str], bool]:
        """The message's text with what its recordings say added, the files left (photos), and whether it was
        spoken."""
        recordings = [path for path in files if is_audio(path)]
        if not recordings:
            return text, files, False
        said = [self.heard(path) for path in recordings]
        return " ".join([text, *said]).strip(), [path for path in files if not is_audio(path)], True
