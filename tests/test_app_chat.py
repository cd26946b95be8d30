"""The chat handlers without a browser: what a turn does with a photo, rejected input, undo/retry and citations."""

from types import SimpleNamespace

import gradio as gr
import pytest
from fakes import ScriptedVLM
from PIL import Image

from mmsupport.app.chat import Chat
from mmsupport.app.resources import Resources
from mmsupport.config import REPO_DIR, load_settings
from mmsupport.store import ConversationStore

PHOTO = REPO_DIR / "data" / "images" / "customer" / "sneaker_angle.png"


@pytest.fixture(scope="module")
def chat(sample_catalog_settings, tmp_path_factory):
    from mmsupport.catalog import Catalog

    root = tmp_path_factory.mktemp("chat")
    settings = load_settings(db_dir=sample_catalog_settings.db_dir, max_upload_mb=2, max_message_chars=200)
    vlm = ScriptedVLM(default="The best match is [P0001].", description="a running shoe")
    resources = Resources(settings, vlm=vlm, catalog=Catalog.open(settings))
    return Chat(settings, resources, ConversationStore(f"sqlite:///{root / 'conversations.db'}"))


def answer(chat, history, turns, uploads):
    """Run ``respond`` to the end; its last outputs."""
    *_, last = chat.respond(history, "hybrid", 5, "All", turns, uploads)
    return last


def ask(chat, text, history=(), turns=(), files=(), uploads=None):
    """Attach, send and answer one message the way the page does; ``(history, turns, uploads, cards)``."""
    uploads = dict(uploads or {})
    message = {"text": text, "files": [str(f) for f in files]}
    _, checked, _ = chat.attach(message, uploads)
    uploads = checked if isinstance(checked, dict) else uploads
    history, _, _, uploads = chat.add_message(message, list(history), uploads)
    shown, cards, items, turns = answer(chat, history, list(turns), uploads)
    return shown, turns, uploads, cards


def test_a_photo_is_decoded_once_per_turn(chat, monkeypatch):
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    history, turns, uploads, cards = ask(chat, "Do you sell these?", files=[PHOTO])
    assert cards and len(opened) == 1
    ask(chat, "Any in blue?", history, turns, uploads=uploads)  # a follow-up reuses the photo, not the file
    assert len(opened) == 1


def test_a_rejected_message_leaves_the_chat_alone_and_says_why(chat, tmp_path):
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]
    shown, box, notice, uploads = chat.add_message({"text": "x" * 201, "files": []}, history, {})
    assert shown is gr.skip() or shown == gr.skip()
    assert "201 characters long, over the 200 limit" in notice.value and notice.visible
    outputs = next(chat.respond(history, "hybrid", 5, "All", [], {}))  # nothing waits: no answer, no "Error"
    assert all(output == gr.skip() for output in outputs)


def test_a_non_image_attachment_is_dropped_when_attached_with_the_reason(chat, tmp_path):
    fake = tmp_path / "invoice.png"
    fake.write_text("%PDF-1.4 not a picture")
    good = tmp_path / "shoe.png"
    Image.new("RGB", (40, 40), "red").save(good)
    box, uploads, notice = chat.attach({"text": "is this ok?", "files": [str(fake), str(good)]}, {})
    assert [f["orig_name"] for f in box.value["files"]] == ["shoe.png"] and box.value["text"] == "is this ok?"
    assert list(uploads) == [str(good)]
    assert "invoice.png: The file is not an image" in notice.value


def test_undo_and_retry_put_the_gallery_back_to_the_turn_before(chat):
    history, turns, uploads, first_cards = ask(chat, "waterproof hiking boots")
    history, turns, uploads, second_cards = ask(chat, "my watch flashes red", history, turns, uploads=uploads)
    assert [c[1] for c in first_cards] != [c[1] for c in second_cards]
    question = next(i for i in range(len(history) - 1, -1, -1) if history[i]["role"] == "user")
    shown, kept, box, cards, items = chat.undo(history, turns, SimpleNamespace(index=question))
    assert [c[1] for c in cards] == [c[1] for c in first_cards] and len(kept) == 1
    assert box.value["text"] == "my watch flashes red"
    shown, cards, items = chat.retry(history, turns, SimpleNamespace(index=question))
    assert shown[-1]["role"] == "user" and [c[1] for c in cards] == [c[1] for c in first_cards]
    _, cards, items = chat.retry(history[:2], turns[:1], SimpleNamespace(index=0))
    assert cards == [] and items == []


def test_a_citation_in_an_older_answer_finds_its_own_item(chat):
    history, turns, uploads, _ = ask(chat, "waterproof hiking boots")
    first_ids = [item.id for item in turns[0]["items"]]
    for question in ("my watch flashes red", "return policy"):
        history, turns, uploads, _ = ask(chat, question, history, turns, uploads=uploads)
    only_first = next(i for i in first_ids if all(i not in [x.id for x in t["items"]] for t in turns[1:]))
    cards, items, details = chat.show_cited(f"{only_first}|123", turns)
    assert [item.id for item in items] == first_ids
    assert f"[{only_first}]" in details


def test_a_card_click_asks_about_that_item(chat):
    history, turns, uploads, _ = ask(chat, "waterproof hiking boots")
    items = turns[-1]["items"]
    shown, details = chat.ask_about(items, history, SimpleNamespace(index=1))
    question = shown[-1]["content"]
    assert items[1].title in question and f"[{items[1].id}]" in question and "Tell me more" not in question
