"""How catalog items, agent steps and errors show in the browser: cards, details, citation links, escaping."""

from __future__ import annotations

import dataclasses
import html
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from mmsupport.agent import CITATION
from mmsupport.errors import MMSupportError

#: Longest search query shown in a step's title; longer ones end in "…".
STEP_QUERY_CHARS = 60


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


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with "…" when longer."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def link_citations(answer: str, items: list) -> str:
    """Turn ``[id]`` citations of retrieved items into links that name the item (``#item-<id>``), so a link in an
    older answer still finds its item after later turns; other brackets are left alone."""
    ids = {item.id for item in items}

    def link(match) -> str:
        item_id = match.group(1)
        return f"[[{item_id}]](#item-{item_id})" if item_id in ids else match.group(0)

    return CITATION.sub(link, answer)


def caption(item) -> str:
    """A card's caption: title, colour and price for products, "help article" for articles, then the id."""
    facts = [item.title]
    if item.kind == "article":
        facts.append("help article")
    else:
        facts += [item.colour, f"{item.price:.2f}" if item.price is not None else None]
    return " · ".join(str(fact) for fact in [*facts, item.id] if fact)


def card(item, placeholder) -> tuple:
    """A gallery card: the item's image (or a placeholder for articles) and its caption."""
    return (item.image if item.image and Path(item.image).is_file() else placeholder, caption(item))


def cards(items: list, placeholder) -> list[tuple]:
    """The gallery's cards for ``items``."""
    return [card(item, placeholder) for item in items]


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
    facts = [item.kind, item.category, item.colour, f"{item.price:.2f}" if item.price is not None else None]
    line = " · ".join(escape(str(fact)) for fact in facts if fact)
    return f"**{escape(item.title)}** [{escape(item.id)}]  \n{line}\n\n{escape(item.text)}"


def follow_up(item) -> str:
    """The question a click on ``item``'s card asks: about that item, not a repeat of the search."""
    if item.kind == "article":
        return f"What are the steps in “{item.title}” [{item.id}]?"
    return f"What sizes and colours does the {item.title} [{item.id}] come in, and what is it made of?"


def item_dict(item) -> dict:
    """An item as plain JSON for API clients (image as its file name, never a server path)."""
    data = dataclasses.asdict(item)
    data["image"] = Path(item.image).name if item.image else None
    return data


def step_message(step) -> dict:
    """A collapsible chat message for one agent step: what it did and what it found (long queries shortened)."""
    arguments = step.arguments or {}
    query = arguments.get("query") or arguments.get("id") or ", ".join(f"{k}={v}" for k, v in arguments.items())
    found = len(step.result_ids)
    title = (f"{step.tool.replace('_', ' ').capitalize()}: “{shorten(str(query), STEP_QUERY_CHARS)}” → "
             f"{found} item{'s' if found != 1 else ''}")
    body = f"failed: {step.error}" if step.error else ", ".join(step.result_ids) or "nothing matched"
    return {"role": "assistant", "content": escape(body),
            "metadata": {"title": escape(title), "status": "done", "duration": round(step.seconds, 2)}}
