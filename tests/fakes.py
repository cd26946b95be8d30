"""A scripted vision-language model for tests: fixed descriptions, fixed replies, tool calls on cue.

It implements :class:`mmsupport.vlm.VLM` for real (``describe``, ``generate``, ``generate_batch`` come from the base
class), so code under test cannot tell it from a backend, and records every conversation it was shown::

    vlm = ScriptedVLM(["<tool_call>{...}</tool_call>", "It is the Stride Runner [P0054]."],
                      description="a blue running shoe", supports_tools=True)

Each reply is a string or a callable ``(messages) -> str``; once the script runs out, ``default`` answers.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence

from mmsupport.vlm import DESCRIBE_PROMPT, VLM, Message

_names = itertools.count(1)

Reply = str | Callable[[list[Message]], str]


def tool_call(name: str, **arguments) -> str:
    """The text a model emits to call ``name`` with ``arguments``."""
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def is_describe_call(messages: list[Message]) -> bool:
    """True for the conversation :meth:`VLM.describe` sends (one image and the describe prompt)."""
    content = messages[-1].get("content")
    return isinstance(content, list) and any(part.get("text") == DESCRIBE_PROMPT for part in content)


class ScriptedVLM(VLM):
    """Replies from a script; describes every image as ``description`` (a string or ``callable(image) -> str``)."""

    def __init__(self, replies: Sequence[Reply] = (), *, description: str | Callable = "a photo of a product",
                 default: Reply = "Here is what I found.", supports_tools: bool = False, chunk: int = 7):
        # A unique name per instance, so the process-wide description cache never mixes two scripts.
        self.name = f"scripted-{next(_names)}"
        self.replies = list(replies)
        self.description = description
        self.default = default
        self.supports_tools = supports_tools
        self.chunk = chunk
        #: Every conversation passed to ``stream`` (describe calls included), with the ``tools`` it was given.
        self.calls: list[dict] = []

    @property
    def answer_calls(self) -> list[dict]:
        """The recorded calls other than image descriptions."""
        return [call for call in self.calls if not is_describe_call(call["messages"])]

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               tools: list[dict] | None = None) -> Iterator[str]:
        self.calls.append({"messages": list(messages), "tools": tools})
        if is_describe_call(messages):
            if callable(self.description):
                image = next(part["image"] for part in messages[-1]["content"] if part.get("type") == "image")
                text = self.description(image)
            else:
                text = self.description
        else:
            reply = self.replies.pop(0) if self.replies else self.default
            text = reply(messages) if callable(reply) else reply
        for start in range(0, len(text), self.chunk):
            yield text[start:start + self.chunk]
