"""Text on its way into the model's prompt or out to the customer: one normaliser, one sanitiser, one data encoder.

- :func:`normalize`: NFKC, and invisible characters removed (zero-width characters, bidi controls, Unicode tag
  characters, variation selectors, control characters other than newline and tab). Look-alike spellings become the
  plain letters, so a check on words cannot be dodged with a zero-width space inside a word.
- :func:`clean`: :func:`normalize`, then markup removed that could end the data block, fake a tool call or open a
  chat-template turn (``</data>``, ``<tool_call>``, ``<|im_start|>``, ``<end_of_utterance>``, any ``<tag>``).
  Every piece of text from customers, catalog rows and photo descriptions passes it before it reaches the prompt.
- :func:`data_line`: one catalog item as one line of JSON, its strings cleaned and ``<``, ``>``, ``&`` written as
  ``\\u003c``-style escapes, so no field can close the data block or start a new message, whatever it holds.
  :func:`data_items` reads them back.
- :func:`readings`: a text as the leak check should read it: normalised, plus the decoding of every base64 run in it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata

#: Characters that render as nothing (or only steer rendering) and can hide text from a word-by-word check.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164"
    "\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
#: Control characters other than tab and newline.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: A tag or a chat-template token: ``<data>``, ``</ tool_call >``, ``<|im_end|>``, ``<end_of_utterance>``, ``<b>``
#: (a bare comparison such as ``a < b and c > d`` is left alone).
MARKUP = re.compile(r"<\s*/?\s*(?:data|tool_call|tool_response|system|user|assistant)\b[^<>\n]{0,80}>"
                    r"|</?[|A-Za-z_][^<>\s][^<>\n]{0,80}>|</?[A-Za-z]>", re.I)
#: A run that may be base64 (standard or URL-safe alphabet), long enough to hold a sentence, possibly wrapped over
#: several lines.
BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}(?:[ \t]*\n[ \t]*[A-Za-z0-9+/_-]{4,}={0,2})*")
#: The inside of a data block.
DATA_BLOCK = re.compile(r"<data>\n(.*?)\n</data>", re.S)
#: Share of printable characters a decoded run needs to count as text.
PRINTABLE_SHARE = 0.95
#: Base64 inside base64 is decoded this many levels deep.
DECODE_DEPTH = 2


def normalize(text: str) -> str:
    """``text`` in NFKC with invisible and control characters (other than newline and tab) removed."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return CONTROL.sub("", INVISIBLE.sub("", text))


def clean(text: str | None) -> str:
    """``text`` normalised and without markup that could end the data block, call a tool or open a turn."""
    text = normalize(text or "")
    while True:  # "<da<data>ta>" must not become "<data>"
        stripped = MARKUP.sub(" ", text)
        if stripped == text:
            return text
        text = stripped


def data_line(fields: dict) -> str:
    """One JSON object on one line: strings :func:`clean`-ed, ``None`` left out, ``<``, ``>``, ``&`` escaped."""
    values = {key: clean(value) if isinstance(value, str) else value
              for key, value in fields.items() if value is not None}
    line = json.dumps(values, ensure_ascii=False)
    return line.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def data_items(prompt: str) -> list[dict]:
    """The items of the ``<data>`` blocks in ``prompt``, as :func:`data_line` wrote them (for stand-in models)."""
    return [json.loads(line) for block in DATA_BLOCK.findall(prompt) for line in block.splitlines()
            if line.startswith("{")]


def _decode(run: str) -> str | None:
    run = re.sub(r"\s+", "", run).rstrip("=").replace("-", "+").replace("_", "/")
    if len(run) % 4 == 1:
        return None
    try:
        text = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    printable = sum(char.isprintable() or char in "\n\t" for char in text)
    return text if text and printable >= PRINTABLE_SHARE * len(text) else None


def decoded_runs(text: str) -> list[tuple[str, str]]:
    """``(run, decoded text)`` for each run of ``text`` that is base64 of UTF-8 text (line-wrapped runs included)."""
    found = []
    for run in BASE64_RUN.findall(text):
        lines = run.split("\n")
        for end in range(len(lines), 0, -1):  # a wrapped run may end in an ordinary word on its last line
            part = "\n".join(lines[:end])
            decoded = _decode(part)
            if decoded is not None:
                found.append((part, decoded))
                break
    return found


def readings(text: str, depth: int = DECODE_DEPTH) -> list[str]:
    """``text`` normalised, then the normalised decoding of each base64 run in it (and of runs inside those)."""
    text = normalize(text)
    found = [text]
    if depth > 0:
        for _, decoded in decoded_runs(text):
            found += readings(decoded, depth - 1)
    return found
