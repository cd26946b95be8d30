"""How catalog items, agent steps and errors show in the browser: cards, details, citation links, escaping."""

from __future__ import annotations

import dataclasses
import html
import re
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from mmsupport.errors import MMSupportError

CITATION = re.compile(r"\[([A-Za-z0-9][\w.-]*)\]")


@contextmanager
def ui_errors():
    """Turn the errors mmsupport raises on purpose into messages in the browser (or for API clients)."""
    try:
        yield
    except MMSupportError as error:
        raise gr.Error(escape(str(error)), print_exception=False) from None  # gr.Error renders HTML


def escape(text: str) -> str:
    """Show text from people and catalogs as text: HTML is escaped, never rendered."""
    return html.escape(text, quote=False)


def link_citations(answer: str, items: list) -> str:
    """Turn ``[id]`` citations of retrieved items into links to their cards; leave any other brackets alone."""
    position = {item.id: index for index, item in enumerate(items)}

    def link(match: re.Match) -> str:
        item_id = match.group(1)
        if item_id not in position:
            return match.group(0)
        return f"[[{item_id}]](#card-{position[item_id]})"

    return CITATION.sub(link, answer)


def card(item, placeholder) -> tuple:
    """A gallery card: the item's image (or a placeholder for articles) and a caption with title, kind, price, score."""
    price = f" · {item.price:.2f}" if item.price is not None else ""
    caption = f"{item.title} [{item.id}] · {item.kind}{price} · score {item.score:.2f}"
    return (item.image if item.image and Path(item.image).is_file() else placeholder, caption)


def placeholder_image():
    """A plain card image for items without a picture (support articles)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (256, 256), (238, 240, 246))
    draw = ImageDraw.Draw(image)
    draw.rectangle((78, 58, 178, 198), fill=(255, 255, 255), outline=(120, 126, 150), width=4)
    for y in range(88, 180, 20):
        draw.line((96, y, 160, y), fill=(150, 156, 180), width=4)
    return image


def details(item) -> str:
    """Markdown for one item's full card: every field as text (catalog HTML is escaped, never rendered)."""
    facts = [item.kind, item.category, item.colour, f"{item.price:.2f}" if item.price is not None else None,
             f"score {item.score:.2f}"]
    line = " · ".join(escape(str(fact)) for fact in facts if fact)
    return f"**{escape(item.title)}** [{escape(item.id)}]  \n{line}\n\n{escape(item.text)}"


def item_dict(item) -> dict:
    """An item as plain JSON for API clients (image as its file name, never a server path)."""
    data = dataclasses.asdict(item)
    data["image"] = Path(item.image).name if item.image else None
    return data


def step_message(step) -> dict:
    """A collapsible chat message for one agent step: what it did and what it found."""
    arguments = step.arguments or {}
    query = arguments.get("query") or arguments.get("id") or ", ".join(f"{k}={v}" for k, v in arguments.items())
    found = len(step.result_ids)
    title = f"{step.tool.replace('_', ' ').capitalize()}: “{query}” → {found} item{'s' if found != 1 else ''}"
    body = f"failed: {step.error}" if step.error else ", ".join(step.result_ids) or "nothing matched"
    return {"role": "assistant", "content": escape(body),
            "metadata": {"title": escape(title), "status": "done", "duration": round(step.seconds, 2)}}
