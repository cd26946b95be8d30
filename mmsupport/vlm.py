"""Vision-language models: one small interface, swappable backends.

Messages use the Hugging Face / OpenAI chat shape::

    {"role": "user", "content": [{"type": "image", "image": <PIL.Image>}, {"type": "text", "text": "What is this?"}]}

``content`` may also be a plain string. Backends implement :meth:`VLM.stream`; everything else is built on it.
Tool calls come back inside the generated text as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
whatever the backend, so the agent parses one format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

Message = dict


class VLM(ABC):
    """A chat model that can see images."""

    #: Short name shown in the UI and recorded with results.
    name: str = "vlm"
    #: True when the chat template accepts ``tools=`` and the model emits ``<tool_call>`` blocks.
    supports_tools: bool = False

    @abstractmethod
    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               tools: list[dict] | None = None) -> Iterator[str]:
        """Yield the reply to ``messages`` piece by piece."""

    def generate(self, messages: list[Message], **kwargs) -> str:
        """The whole reply to ``messages``."""
        return "".join(self.stream(messages, **kwargs))
