"""What files clients may send: uploads are checked by content, and inputs may only name files they uploaded.

Two doors, both before Gradio touches a file:

- :class:`UploadCheck` (ASGI middleware on ``POST /gradio_api/upload``) keeps an upload only if its bytes are one of
  the kinds the app takes (:data:`IMAGE_KIND`, :data:`AUDIO_KIND` with voice on; the admin tab adds
  :data:`ADMIN_KINDS`) and its name's extension is
  of that kind, so a page or an SVG cannot be stored under any name.
- :func:`check_inputs` runs before Gradio preprocesses an event's inputs: every file an input names must be a file
  in Gradio's upload cache (where uploads and the app's own outputs live), sent as ``FileData``; server paths and
  URLs are refused with one message that does not depend on whether the target exists. A chat history may not carry
  components, which the app never shows and which Gradio would build (copying the files they name) while reading it.
"""

from __future__ import annotations

import dataclasses
import html
import os
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from mmsupport.images import SUFFIXES, sniff_format
from mmsupport.speech import AUDIO_FORMATS, AUDIO_SUFFIXES, sniff_audio

#: Refusal for an input that names a file it did not upload (server path, URL, bare string).
FILE_REFUSED = ("Files must be uploaded to this app first: POST them to /gradio_api/upload (gradio_client's "
                "handle_file does) and send the returned path as FileData. Server paths and URLs are not accepted.")
#: Refusal for a chat history that carries what the app never shows.
HISTORY_REFUSED = ("The chat history sent holds content this app did not show (a component). Clear the chat and "
                   "ask again.")
#: Multipart overhead allowed on top of the upload size limit.
_MULTIPART_SLACK = 64 * 1024
#: Bytes of each uploaded file looked at.
_HEAD_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class Kind:
    """A kind of file the app takes: its name, the extensions it may carry and a test of its first bytes."""

    name: str
    suffixes: frozenset[str]
    matches: Callable[[bytes], bool]


def _is_text_table(head: bytes) -> bool:
    """Text without NUL bytes (or UTF-16 with a BOM) that does not open with markup."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head[2:].decode("utf-16-le" if head[0] == 0xFF else "utf-16-be", errors="ignore")
    elif b"\0" in head:
        return False
    else:
        text = head.removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    return not text.lstrip().startswith("<")


#: What the chat takes (mmsupport.images decodes it later).
IMAGE_KIND = Kind("an image in a supported format (PNG, JPEG, WebP or GIF)",
                  SUFFIXES, lambda head: sniff_format(head) is not None)
#: Voice messages (mmsupport.speech checks the header and decodes them later).
AUDIO_KIND = Kind(f"an audio recording ({AUDIO_FORMATS})", AUDIO_SUFFIXES, lambda head: sniff_audio(head) is not None)
#: What the catalog admin tab uploads, accepted only when admin is enabled.
ADMIN_KINDS = (Kind("a CSV file", frozenset({".csv"}), _is_text_table),
               Kind("a zip file", frozenset({".zip"}), lambda head: head.startswith((b"PK\x03\x04", b"PK\x05\x06"))))


def upload_problem(name: str, head: bytes, kinds: tuple[Kind, ...]) -> str | None:
    """Why a file called ``name`` whose first bytes are ``head`` is refused, or None if it is one of ``kinds``."""
    if not head:
        return f"{html.escape(name)} is empty (0 bytes): upload the file again."
    suffix = Path(name).suffix.lower()
    if any(suffix in kind.suffixes and kind.matches(head) for kind in kinds):
        return None
    names = [kind.name for kind in kinds]
    wanted = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"{html.escape(name)}: the file is not {wanted}."


class UploadCheck:
    """ASGI middleware: refuse (415) uploads that are not of ``kinds`` by content, and (413) requests over the limit.

    The request is read into memory (it is at most ``max_bytes`` plus multipart overhead), checked, and handed to
    Gradio unchanged.
    """

    def __init__(self, app, *, kinds: tuple[Kind, ...], max_bytes: int):
        self.app = app
        self.kinds = kinds
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/upload"):
            return await self.app(scope, receive, send)
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes + _MULTIPART_SLACK:
                return await _plain(send, 413, f"The upload is over the {self.max_bytes / 2**20:g} MB limit.")
        problem = await self._problem(scope, bytes(body))
        if problem:
            return await _plain(send, 415, problem)
        return await self.app(scope, _replay(bytes(body), receive), send)

    async def _problem(self, scope, body: bytes) -> str | None:
        from starlette.requests import Request

        request = Request(scope, _replay(body, None))
        try:
            form = await request.form()
        except Exception:  # malformed multipart: let Gradio answer it as it does today
            return None
        try:
            for value in form.values():
                if not isinstance(value, str):
                    problem = upload_problem(value.filename or "", await value.read(_HEAD_BYTES), self.kinds)
                    if problem:
                        return problem
        finally:
            await form.close()
        return None


def upload_check(settings) -> Middleware:
    """The :class:`UploadCheck` for an app with ``settings``: images, recordings when voice is on, plus CSV and zip
    files when admin is enabled."""
    kinds = (IMAGE_KIND, *([AUDIO_KIND] if settings.asr else []), *(ADMIN_KINDS if settings.admin_password else ()))
    return Middleware(UploadCheck, kinds=kinds, max_bytes=int(settings.max_upload_mb * 1024 * 1024))


def _replay(body: bytes, receive):
    """An ASGI ``receive`` that yields ``body`` once, then defers to ``receive`` (for the disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if sent and receive is not None:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _plain(send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})


def check_inputs(blocks: list, payloads: list) -> None:
    """Refuse (``gr.Error``) an event whose inputs name files outside Gradio's upload cache, or a forged history."""
    for block, payload in zip(blocks, payloads):
        if payload is None:
            continue
        if isinstance(block, gr.Chatbot) and any(part.get("type") == "component" for part in _dicts(payload)):
            raise gr.Error(HISTORY_REFUSED, print_exception=False)
        if isinstance(payload, str) and isinstance(block, (gr.File, gr.Image, gr.Audio, gr.Video)):
            raise gr.Error(FILE_REFUSED, print_exception=False)
        if any("path" in part and not _uploaded(part) for part in _dicts(payload)):
            raise gr.Error(FILE_REFUSED, print_exception=False)


def _dicts(value) -> Iterator[dict]:
    """Every dict inside ``value`` (nested lists and dicts), outermost first."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _dicts(item)


def uploaded_file_url(url: str) -> str | None:
    """The upload-cache path a ``…/gradio_api/file=<path>`` URL of this app names (what ``gradio upload-mcp`` and
    the upload route hand back), or None for any other URL or a path outside the cache."""
    parts = urllib.parse.urlsplit(url)
    prefix = "/gradio_api/file="
    if parts.scheme not in ("http", "https") or prefix not in parts.path:
        return None
    path = urllib.parse.unquote(parts.path.split(prefix, 1)[1])
    return path if _uploaded({"path": path, "meta": {"_type": "gradio.FileData"}}) else None


def _uploaded(file: dict) -> bool:
    """True for FileData naming a path inside Gradio's upload cache (whether the file exists does not matter)."""
    from gradio.utils import get_upload_folder

    path, folder = file.get("path"), Path(get_upload_folder()).resolve()
    if not isinstance(path, str) or file.get("meta") != {"_type": "gradio.FileData"} or "://" in path:
        return False
    resolved = Path(os.path.abspath(path)).resolve()
    return resolved != folder and resolved.is_relative_to(folder)
