"""Chat messages: the one place that knows how a message's content is split into text and image parts.

A message is ``{"role": ..., "content": ...}`` in the Hugging Face / OpenAI chat shape; ``content`` is a string, one
part or a list of parts. Text parts are ``{"type": "text", "text": ...}``. Image parts are ``{"type": "image",
"image": <PIL image, path or bytes>}`` (also under ``path`` or ``url``) or OpenAI's ``{"type": "image_url",
"image_url": {"url": ...}}``; Gradio's chat gives files as ``{"type": "file", "file": {"path": ...}}`` or
``{"path": ...}``.

>>> message = {"role": "user", "content": [{"type": "image", "image": "shoe.png"}, {"type": "text", "text": "Blue?"}]}
>>> text_of(message), images_of(message)
('Blue?', ['shoe.png'])
"""

from __future__ import annotations

from mmsupport.errors import InvalidInput

Message = dict

#: Part types that carry an image.
IMAGE_PART_TYPES = ("image", "image_url", "file")


def parts(message: Message) -> list[dict]:
    """The message's content as a list of parts (a plain string becomes one text part)."""
    content = message.get("content")
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, dict):
        return [content]
    return list(content)


def is_image(part: dict) -> bool:
    """True for a part that carries an image (or an uploaded file)."""
    return part.get("type") in IMAGE_PART_TYPES or ("type" not in part and "path" in part)


def image_source(part: dict):
    """The image inside an image part, whichever key the caller used (OpenAI's ``image_url`` gives its ``url``)."""
    for key in ("image", "path", "url", "image_url", "file"):
        value = part.get(key)
        if isinstance(value, dict):
            value = value.get("url") if key == "image_url" else value.get("path")
        if value is not None:
            return value
    raise InvalidInput("An image part of the message has no image.", hint='Give it as {"type": "image", "image": ...}.')


def text_of(message: Message) -> str:
    """The message's text parts, joined by spaces."""
    return " ".join(part.get("text", "") for part in parts(message) if part.get("type") == "text")


def images_of(message: Message) -> list:
    """The images (PIL images, paths or URLs, as given) in the message's image parts."""
    return [image_source(part) for part in parts(message) if is_image(part)]
