"""The app in a real headless Chromium (Debian's, driven by Playwright): what a customer and a shop owner do.

Screenshots go to tests/artifacts/ (gitignored); the README's docs/screenshot.png is a copy of chat.png.
"""

import json
import re
from pathlib import Path

import pytest

from mmsupport.config import REPO_DIR

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_DIR / "tests" / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
XSS = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=1</script>"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, ui_server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    page.goto(ui_server.url)
    page.wait_for_selector("#message textarea", timeout=60_000)
    page.wait_for_selector("#status.ready", state="attached", timeout=300_000)
    yield page
    assert page.dialogs == [], "a script from a message or a catalog row ran"
    assert page.evaluate("window.__xss") is None
    page.close()


def send(page, text: str, photo: Path | None = None) -> None:
    if photo is not None:
        page.set_input_files("#message input[type=file]", str(photo))
        page.wait_for_selector("#message img", timeout=30_000)
    page.fill("#message textarea", text)
    page.keyboard.press("Enter")


def open_tab(page, name: str) -> None:
    """Click the tab ``name``: in the tab bar, or in Gradio's "More tabs" menu, where tabs go that do not fit the bar
    (on a phone, depending on when the page's font arrived)."""
    tab = page.get_by_role("tab", name=name)
    if tab.is_visible():
        tab.click()
    else:
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown").get_by_role("button", name=name).click()


def wait_for_answers(page, count: int) -> str:
    """Wait until ``count`` answers are there and nothing is pending any more; return the chat's text."""
    page.wait_for_function(
        f"document.querySelectorAll('#chat button[aria-label=\"Like\"]').length >= {count}"
        " && !document.querySelector('#chat [data-testid=\"status-tracker\"]:not(.hide)')", timeout=120_000)
    return page.inner_text("#chat")


def test_customer_asks_with_a_photo_clicks_a_card_and_likes_the_answer(page, ui_server):
    photo = REPO_DIR / "data" / "images" / "customer" / "sneaker_angle.png"
    seen_while_streaming = []
    send(page, "Do you sell these running shoes?", photo)
    for _ in range(200):  # watch the answer grow while it streams
        text = page.inner_text("#chat")
        if not seen_while_streaming or text != seen_while_streaming[-1]:
            seen_while_streaming.append(text)
        if page.locator("#items .thumbnail-item").count():
            break
        page.wait_for_timeout(50)
    chat = wait_for_answers(page, 1)
    assert len(seen_while_streaming) >= 3, "the answer should appear piece by piece"
    assert "Search catalog" in chat  # the agent step, shown as a collapsible message
    assert page.locator("#chat img").count() >= 1  # the customer's photo, in the conversation
    cards = page.locator("#items .thumbnail-item")
    assert cards.count() >= 1
    assert "score" not in page.inner_text("#items")  # title, colour, price and id only
    caption_box = page.locator("#items .thumbnail-item .caption-label").first.bounding_box()
    image_box = page.locator("#items .thumbnail-item img").first.bounding_box()
    assert caption_box["y"] >= image_box["y"] + image_box["height"] - 1, "the caption must not cover the image"
    citation = page.locator('#chat a[href^="#item-"]').first
    citation.click()
    page.wait_for_selector("#items .thumbnail-item.cited", timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "chat.png"))

    title = page.locator("#items .thumbnail-item .caption-label").nth(0).inner_text().split(" · ")[0]
    cards.nth(0).click()
    chat = wait_for_answers(page, 2)
    assert f"What sizes and colours does the {title}" in chat and "Tell me more" not in chat
    assert title in page.inner_text("#item-details")
    page.screenshot(path=str(ARTIFACTS / "card_clicked.png"))

    page.locator('#chat button[aria-label="Like"]').last.click()
    page.wait_for_function("document.body.innerText.includes('Thanks for the feedback')", timeout=30_000)
    vote, turn = feedback_on_turns(ui_server)[-1]
    assert (vote["kind"], vote["value"]) == ("thumbs", 1) and turn["question"].startswith("What sizes and colours")
    assert turn["retrieved_ids"] and turn["session_id"] == vote["session_id"]


def feedback_on_turns(ui_server) -> list[tuple[dict, dict | None]]:
    """Every feedback row of the app's store, oldest first, with the turn it names (or ``None``)."""
    import sqlalchemy as sa

    from mmsupport.store import feedback, turns

    store = ui_server.demo.store
    store.flush()
    query = sa.select(feedback, turns).outerjoin(turns, turns.c.id == feedback.c.turn_id).order_by(feedback.c.id)
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    width = len(feedback.columns)
    return [(dict(zip(feedback.columns.keys(), row[:width])),
             dict(zip(turns.columns.keys(), row[width:])) if row[width] is not None else None) for row in rows]


def test_html_from_people_and_catalog_rows_is_shown_as_text(page):
    send(page, f"Is this safe? {XSS}")
    chat = wait_for_answers(page, 1)
    assert "<script>window.__xss=1</script>" in chat
    # A photo whose file name is markup and whose bytes are not an image: the upload is refused by content, and
    # the error names it, as text.
    page.set_input_files("#message input[type=file]", files=[
        {"name": "<img src=x onerror=window.__xss=1>.png", "mimeType": "image/png", "buffer": b"not a png"}])
    page.wait_for_function("document.body.innerText.includes('supported format')", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "bad_upload.png"))
    assert re.search(r"img src.?x onerror.?window.__xss.?1.?\.png: ", page.inner_text("body"))
    assert page.locator("#message .thumbnail-item").count() == 0  # nothing was attached
    # P0004's description carries <script> and <img onerror> markup: show its card and the answer about it.
    send(page, "Tell me about the Everyday Crew T-Shirt (Grey) with the limited print run")
    wait_for_answers(page, 2)
    captions = page.locator("#items .thumbnail-item .caption-label").all_inner_texts()
    hostile = next(i for i, caption in enumerate(captions) if caption.endswith(" · P0004"))
    page.locator("#items .thumbnail-item").nth(hostile).click()
    page.wait_for_function("document.querySelector('#item-details').innerText.includes('onerror')",
                           timeout=30_000)
    assert "<script>alert(1)</script>" in page.inner_text("#item-details")
    assert page.locator("#item-details img, #chat img[src='x']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "html_as_text.png"))


def test_shop_owner_logs_in_and_ingests_a_csv(page, browser, ui_server, tmp_path):
    csv = tmp_path / "new_rows.csv"
    csv.write_text("kind,id,title,category,colour,price,description,image\n"
                   "product,Z001,Harbour Wool Beanie (Navy),headwear,navy,24.50,A warm ribbed merino beanie.,\n"
                   "product,Z002,Broken Row,accessories,red,not-a-price,Price is not a number.,\n")
    shopper = browser.new_page()  # opened before the ingest: its category choices must still refresh
    shopper.goto(ui_server.url)
    shopper.wait_for_selector("#status.ready", state="attached", timeout=300_000)
    page.get_by_role("tab", name="Catalog admin").click()
    page.get_by_label("Admin password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_function("document.body.innerText.includes('Wrong admin password')", timeout=30_000)
    page.get_by_label("Admin password").fill(ui_server.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_function("(document.querySelector('#admin-status')?.innerText || '').includes('Ready')",
                           timeout=30_000)
    page.locator("#admin-csv input[type=file]").set_input_files(str(csv))
    page.wait_for_function("document.querySelector('#admin-preview').innerText.includes('Z001')", timeout=60_000)
    page.get_by_role("button", name="Ingest").click()
    page.wait_for_function("document.querySelector('#admin-summary').innerText.includes('1 added')",
                           timeout=180_000)
    assert "not-a-price" in page.inner_text("#admin-rejected")
    assert "1 rejected" in page.inner_text("#admin-summary")
    page.screenshot(path=str(ARTIFACTS / "admin.png"))
    assert ui_server.catalog().get("Z001").title == "Harbour Wool Beanie (Navy)"
    page.get_by_role("tab", name="Assistant").click()
    page.get_by_text("Search settings").click()
    page.get_by_label("Category").click()
    page.get_by_role("option", name="headwear").wait_for(timeout=30_000)  # the new category is offered at once
    shopper.get_by_text("Search settings").click()
    shopper.get_by_label("Category").click()
    shopper.get_by_role("option", name="headwear").wait_for(timeout=30_000)
    shopper.close()


def captions(page) -> list[str]:
    return page.locator("#items .thumbnail-item .caption-label").all_inner_texts()


def test_retry_undo_and_clear_keep_the_gallery_in_step(page):
    send(page, "Do you sell waterproof hiking boots?")
    wait_for_answers(page, 1)
    first = captions(page)
    send(page, "How do I wash a down jacket?")
    wait_for_answers(page, 2)
    assert captions(page) != first
    page.locator('#chat button[aria-label="Retry"]').last.click()
    chat = wait_for_answers(page, 2)
    assert chat.count("How do I wash a down jacket?") == 2  # the question once, and in its one search step
    page.locator('#chat button[aria-label="Undo"]').last.click()
    page.wait_for_function("!document.querySelector('#chat').innerText.includes('down jacket')", timeout=30_000)
    assert page.input_value("#message textarea") == "How do I wash a down jacket?"
    page.wait_for_function(f"document.querySelector('#items').innerText.includes({json.dumps(first[0])})",
                           timeout=30_000)
    assert captions(page) == first  # the undone turn's cards are gone with it
    page.focus("#message textarea")
    page.keyboard.press("Enter")  # the undone question, sent again as it was
    wait_for_answers(page, 2)
    page.locator('#chat button[aria-label="Clear"]').click()
    page.wait_for_function("document.querySelectorAll('#items .thumbnail-item').length === 0", timeout=30_000)
    assert "How do I wash" not in page.inner_text("#chat")


def test_rejected_input_is_shown_under_the_box_and_the_chat_stays(page, ui_server):
    send(page, "Do you sell waterproof hiking boots?")
    before = wait_for_answers(page, 1)
    too_long = "boots " * (ui_server.settings.max_message_chars // 6 + 1)
    page.fill("#message textarea", too_long)
    page.keyboard.press("Enter")
    page.wait_for_function("(document.querySelector('#message-error')?.innerText || '').includes('limit')",
                           timeout=30_000)
    page.wait_for_timeout(500)  # time for an answer step to start, were one wrongly run
    assert f"over the {ui_server.settings.max_message_chars} limit" in page.inner_text("#message-error")
    assert page.inner_text("#chat") == before and "Error" not in page.inner_text("#chat")
    assert page.input_value("#message textarea").strip() == too_long.strip()  # kept, to shorten and resend
    page.fill("#message textarea", "")
    send(page, "And trail shoes?")  # fixing it clears the notice
    wait_for_answers(page, 2)
    assert page.locator("#message-error").count() == 0 or not page.inner_text("#message-error").strip()


def test_citation_links_in_older_answers_find_their_own_item(page):
    for count, question in enumerate(["Do you sell waterproof hiking boots?", "My watch flashes red",
                                      "What is your return policy?"], start=1):
        send(page, question)
        wait_for_answers(page, count)
    link = page.locator('#chat a[href^="#item-"]').first  # in the first answer, two turns ago
    item_id = link.get_attribute("href").removeprefix("#item-")
    assert item_id not in " ".join(captions(page))
    link.click()
    page.wait_for_function(
        f"(document.querySelector('#item-details')?.innerText || '').includes({json.dumps(item_id)})", timeout=30_000)
    page.wait_for_selector("#items .thumbnail-item.cited", timeout=10_000)
    assert page.locator("#items .thumbnail-item.cited .caption-label").inner_text().endswith(f" · {item_id}")


@pytest.mark.parametrize("moment", ["load", "answer"])
def test_phone_layout_keeps_the_message_box_in_view(browser, ui_server, moment):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(ui_server.url)
    page.wait_for_selector("#status.ready", state="attached", timeout=300_000)
    if moment == "answer":
        send(page, "Do you sell waterproof hiking boots?")
        wait_for_answers(page, 1)
        items = page.locator("#items").bounding_box()
        assert items["y"] < 844, "the retrieved items should be right under the message box"
        for label in ("Like", "Dislike", "Retry", "Undo"):
            box = page.locator(f'#chat button[aria-label="{label}"]').last.bounding_box()
            assert min(box["width"], box["height"]) >= 40, f"{label} is {box} on a phone"
    page.screenshot(path=str(ARTIFACTS / f"phone_{moment}.png"))
    for selector in ("#message textarea", "#message button.submit-button, #message button[aria-label*='ubmit']"):
        box = page.locator(selector).first.bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 844, f"{selector} at {box}"
    page.close()


@pytest.fixture(scope="module")
def shop_without_admin(ui_server):
    import dataclasses
    import socket

    from fakes import ScriptedVLM

    from mmsupport.app import build_demo

    settings = dataclasses.replace(ui_server.settings, admin_password=None)
    demo = build_demo(settings, vlm=ScriptedVLM(), catalog=ui_server.catalog())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}"
    demo.close()


def test_no_admin_tab_without_an_admin_password(browser, shop_without_admin):
    page = browser.new_page()
    page.goto(shop_without_admin)
    page.wait_for_selector("#message textarea", timeout=60_000)
    assert page.get_by_role("tab", name="Catalog admin").count() == 0
    assert page.get_by_label("Admin password").count() == 0
    body = page.inner_text("body")
    assert "MMSUPPORT_" not in body and "http://" not in body
    page.close()


def test_on_a_phone_the_shopper_marks_the_answer_solved_and_rates_the_chat(browser, ui_server):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(ui_server.url)
    page.wait_for_selector("#status.ready", state="attached", timeout=300_000)
    assert not page.locator("#solved").is_visible()  # nothing to mark before an answer
    send(page, "What is your return policy?")
    wait_for_answers(page, 1)
    page.wait_for_selector("#solved", state="visible", timeout=30_000)
    for selector in ("#solved", "#unsolved", "#message textarea"):
        box = page.locator(selector).bounding_box()
        assert box["y"] + box["height"] <= 844 and min(box["width"], box["height"]) >= 40, (selector, box)
    page.screenshot(path=str(ARTIFACTS / "phone_outcome.png"))
    page.locator("#solved").tap()
    page.wait_for_selector("#csat", state="visible", timeout=30_000)
    ratings = page.locator("#csat label")
    assert ratings.count() == 5 and all(min(ratings.nth(i).bounding_box()["width"],
                                            ratings.nth(i).bounding_box()["height"]) >= 40 for i in range(5))
    page.screenshot(path=str(ARTIFACTS / "phone_rating.png"))
    ratings.nth(3).tap()
    page.wait_for_function("document.body.innerText.includes('Thanks for rating the chat')", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "phone_rated.png"))
    page.close()
    solved, rated = feedback_on_turns(ui_server)[-2:]
    assert (solved[0]["kind"], solved[0]["value"], solved[1]["question"]) == ("resolved", 1,
                                                                              "What is your return policy?")
    assert (rated[0]["kind"], rated[0]["value"], rated[0]["session_id"]) == ("csat", 4, solved[0]["session_id"])


def test_a_recorded_question_is_answered_marked_as_spoken_and_undo_gives_the_words_back(page, tmp_path):
    from speech_audio import say

    recording = say("My watch button is flashing red. What does that mean?", tmp_path / "audio.wav")
    assert page.locator("#message button[aria-label*='ecord'], #message .microphone-button, "
                        "#message button[title*='ecord']").count() >= 1, "the box should offer the microphone"
    page.set_input_files("#message input[type=file]", str(recording))
    page.wait_for_selector("#message .thumbnail-item", timeout=60_000)
    page.focus("#message textarea")
    page.keyboard.press("Enter")
    chat = wait_for_answers(page, 1)
    spoken = next(line for line in chat.splitlines() if line.startswith("Spoken:"))
    assert "flashing red" in spoken.lower(), chat
    assert page.locator('#chat a[href="#item-A001"]').count() >= 1  # answered from the watch article
    page.screenshot(path=str(ARTIFACTS / "voice.png"))
    page.locator('#chat button[aria-label="Undo"]').last.click()
    page.wait_for_function("!document.querySelector('#chat').innerText.includes('flashing')", timeout=30_000)
    # the words as heard (tiny.en's int8 kernels differ by CPU: "button" is "photo" on some hosts), without the mark
    assert page.input_value("#message textarea") == spoken.removeprefix("Spoken:").strip()


def test_a_text_file_named_like_a_recording_is_refused_under_the_box(page, tmp_path):
    page.set_input_files("#message input[type=file]", files=[
        {"name": "question.wav", "mimeType": "audio/wav", "buffer": b"this is not a recording"}])
    page.wait_for_function("document.body.innerText.includes('an audio recording (WAV')", timeout=30_000)
    assert "question.wav" in page.inner_text("body")
    send(page, "Do you sell waterproof hiking boots?")  # the app keeps serving
    wait_for_answers(page, 1)
