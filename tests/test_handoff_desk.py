"""Hand-off to a person: tickets in the store, the offers, the shopper's page following a ticket, the staff desk,
the webhook and the ``/handoff`` + ``/ticket`` API."""

import hashlib
import http.server
import json
import logging
import secrets
import threading
from types import SimpleNamespace

import gradio as gr
import pytest
from fakes import ScriptedVLM

from mmsupport.agent import prompts
from mmsupport.app.chat import Chat
from mmsupport.app.desk import Desk
from mmsupport.app.resources import Resources
from mmsupport.app.tickets import Tickets
from mmsupport.config import REPO_DIR, load_settings
from mmsupport.handoff import REFERENCE, StoreHandoff, Webhook, repeats
from mmsupport.store import ConversationStore

PHOTO = REPO_DIR / "data" / "images" / "customer" / "sneaker_angle.png"


@pytest.fixture(scope="module")
def catalog(sample_catalog_settings):
    from mmsupport.catalog import Catalog

    return Catalog.open(sample_catalog_settings)


@pytest.fixture
def page(sample_catalog_settings, catalog, tmp_path):
    """The shopper's handlers and the desk over one store, with a staff password."""
    settings = load_settings(db_dir=sample_catalog_settings.db_dir, desk_password="staff-only",
                             database_url=f"sqlite:///{tmp_path / 'conversations.db'}")
    resources = Resources(settings, vlm=ScriptedVLM(default="The best match is [P0001]."), catalog=catalog)
    store = ConversationStore.from_settings(settings)
    chat = Chat(settings, resources, store)
    return SimpleNamespace(tickets=Tickets(chat), desk=Desk(settings, store), store=store,
                           session={"id": secrets.token_hex(16), "variant": "control", "channel": "web"})


def send(page, text, history=(), turns=(), following=None):
    """The shopper sends ``text``; returns (history, turns, following) as the page holds them after the answer."""
    history = [*history, {"role": "user", "content": text}]
    turns, shown = list(turns), history
    for chat, _, _, new_turns, new_following, _ in page.tickets.respond(
            history, "hybrid", 5, "All", turns, {}, page.session, following):
        shown = shown if chat == gr.skip() else chat
        turns = turns if new_turns == gr.skip() else new_turns
        following = following if new_following == gr.skip() else new_following
    return shown, turns, following


def staff_login(desk, name="Sam", password="staff-only"):
    token, *_ = desk.login(name, password, None)
    return token


def test_a_store_handoff_keeps_transcript_photo_hashes_and_items(tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'c.db'}", store_images=True)
    session = secrets.token_hex(16)
    photo = PHOTO.read_bytes()
    items = [{"id": "P0001", "title": "Trail runner"}]
    reference = StoreHandoff(store, session).handoff(
        [{"role": "user", "content": "Do you sell these?", "photos": [PHOTO]},
         {"role": "assistant", "content": "Yes [P0001]."}, {"role": "user", "content": "a person please"}],
        reason="no_match", items=items)
    ticket = store.ticket(reference)
    assert REFERENCE.fullmatch(reference) and ticket["session_id"] == session and ticket["reason"] == "no_match"
    assert ticket["transcript"][0] == {"role": "user", "content": "Do you sell these?",
                                       "images": [hashlib.sha256(photo).hexdigest()]}
    assert ticket["items"] == items and store.image(hashlib.sha256(photo).hexdigest()) == photo
    with pytest.raises(ValueError):
        StoreHandoff(store, session).handoff([], reason="bored")


@pytest.mark.parametrize(("text", "earlier", "same"), [
    ("How do I wash a down jacket?", ["how do i wash a down jacket"], True),
    ("how do I wash my down jaket?", ["How do I wash a down jacket?"], True),
    ("Do you have it in blue?", ["Do you have it in red?"], False),
    ("and red?", ["and red?"], False),  # too short to count
    ("What is your return policy?", ["Where is my order?"], False)])
def test_a_repeated_question_is_the_same_words_in_nearly_the_same_order(text, earlier, same):
    assert repeats(text, earlier) is same


def test_two_thumbs_down_in_a_row_offer_a_person_and_yes_opens_a_thumbs_down_ticket(page):
    history, turns, _ = send(page, "Do you sell running shoes?")
    history, turns, _ = send(page, "And trail shoes?", history, turns)
    downs = []
    answers = [i for i, m in enumerate(history) if m["role"] == "assistant" and "best match" in m["content"]]
    shown, _, downs = page.tickets.vote(history, turns, downs, SimpleNamespace(index=answers[0], liked=False))
    assert shown == gr.skip() and downs == [answers[0]]
    # the same answer again, then a thumbs-up: still no offer, and the run starts over
    assert page.tickets.vote(history, turns, downs, SimpleNamespace(index=answers[0], liked=False))[2] == downs
    assert page.tickets.vote(history, turns, downs, SimpleNamespace(index=answers[1], liked=True))[2] == []
    page.tickets.vote(history, turns, [], SimpleNamespace(index=answers[0], liked=False))
    shown, turns, downs = page.tickets.vote(history, turns, [answers[0]], SimpleNamespace(index=answers[1],
                                                                                          liked=False))
    assert shown[-1]["content"] == prompts()["offer_thumbs_down"] and downs == []
    history, turns, following = send(page, "yes please", shown, turns)
    assert following["status"] == "open"
    assert page.store.ticket(following["reference"])["reason"] == "thumbs_down"


def test_talk_to_a_person_opens_a_ticket_and_says_what_happens_next(page):
    history, turns, _ = send(page, "Do you sell running shoes?")
    shown, following, timer = page.tickets.talk(history, turns, page.session, None)
    ticket = page.store.ticket(following["reference"])
    assert following["reference"] in shown[-1]["content"] and "type your reference" in shown[-1]["content"]
    assert ticket["reason"] == "asked" and ticket["transcript"][0]["content"] == "Do you sell running shoes?"
    assert ticket["items"] and timer.active
    again, _, _ = page.tickets.talk(shown, turns, page.session, following)
    assert "already" in again[-1]["content"] and len(page.store.tickets()) == 1


def test_without_a_store_talk_to_a_person_gives_the_contact(page):
    page.tickets.store = page.tickets.chat.store = None
    shown, following, _ = page.tickets.talk([], [], page.session, None)
    assert shown[-1]["content"] == prompts()["handoff_failed"].format(contact=page.tickets.settings.contact)
    assert following == gr.skip()


def test_desk_log_in_needs_a_name_and_the_staff_password(page):
    assert staff_login(page.desk, password="wrong") is None
    assert staff_login(page.desk, password="") is None
    assert staff_login(page.desk, name="  ") is None
    with pytest.raises(gr.Error, match="not logged in to the support desk"):
        page.desk.queue(None)
    with pytest.raises(gr.Error, match="not logged in"):
        page.desk.claim("H-20260101-ABCDEF", "made-up-token")
    assert staff_login(page.desk) is not None


def test_staff_claim_reply_and_close_and_the_shopper_page_follows(page):
    history, turns, _ = send(page, "Do you sell running shoes?")
    history, following, _ = page.tickets.talk(history, turns, page.session, None)
    reference = following["reference"]
    token = staff_login(page.desk)
    table, _ = page.desk.queue(token)
    assert table["Reference"].tolist() == [reference] and table["Status"].tolist() == ["open"]
    assert page.tickets.poll(history, following)[0] == gr.skip()  # nothing new yet

    view, _ = page.desk.claim(reference, token)
    assert "with Sam" in view and "Do you sell running shoes?" in view
    history, following, timer = page.tickets.poll(history, following)
    assert history[-1]["content"] == "*Sam from support joined the chat.*" and timer.active

    # While Sam has the ticket, the shopper's messages go to Sam, not to the assistant.
    shown, turns_after, following = send(page, "It's for trail running, size 44", history, turns, following)
    assert shown[-1]["role"] == "user" and len(turns_after) == len(turns)
    page.desk.reply(reference, "We have the Trail runner in 44, shall I reserve one?", token)
    history, following, _ = page.tickets.poll(shown, following)
    assert history[-1]["content"] == "**Sam from support:** We have the Trail runner in 44, shall I reserve one?"
    assert "It's for trail running" in page.desk.show(reference, token)[0]
    assert page.tickets.poll(history, following)[0] == gr.skip()  # each reply is shown once

    other = staff_login(page.desk, name="Alex")
    with pytest.raises(gr.Error, match="Sam already has"):
        page.desk.reply(reference, "Hello from Alex", other)
    with pytest.raises(gr.Error, match="how the ticket ended"):
        page.desk.close(reference, None, token)
    page.desk.close(reference, "resolved", token)
    history, following, timer = page.tickets.poll(history, following)
    assert "closed this conversation (resolved)" in history[-1]["content"] and not timer.active
    assert page.store.ticket(reference)["outcome"] == "resolved" and page.desk.queue(token)[0].empty
    shown, turns_after, _ = send(page, "And do you sell trail running shoes?", history, turns, following)
    assert shown[-1]["role"] == "assistant" and len(turns_after) == len(turns) + 1  # the assistant answers again


def test_a_shopper_who_types_their_reference_sees_the_staff_replies(page):
    history, turns, _ = send(page, "Do you sell running shoes?")
    _, following, _ = page.tickets.talk(history, turns, page.session, None)
    token = staff_login(page.desk)
    page.desk.reply(following["reference"], "Yes, in blue and black.", token)
    page.session = {**page.session, "id": secrets.token_hex(16)}  # another day, another page
    shown, turns, back = send(page, f"hi, my reference is {following['reference'].lower()}")
    assert "Sam from support is looking after it" in shown[-2]["content"]
    assert shown[-1]["content"] == "**Sam from support:** Yes, in blue and black."
    assert back["reference"] == following["reference"] and turns == []
    assert page.tickets.api_ticket(following["reference"])["replies"][0]["text"] == "Yes, in blue and black."
    with pytest.raises(gr.Error, match="no ticket"):
        page.tickets.api_ticket("H-20200101-000000")


class _Hook(http.server.BaseHTTPRequestHandler):
    """Fails the first ``fail`` requests with 503; waits for ``release`` before answering when it is set."""

    def do_POST(self):
        server = self.server
        server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        if server.release is not None:
            server.release.wait(30)
        failing = len(server.bodies) <= server.fail
        self.send_response(503 if failing else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    servers = []

    def start(fail=0, hang=False):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
        server.bodies, server.fail, server.release = [], fail, threading.Event() if hang else None
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/tickets"

    yield start
    for server in servers:
        if server.release is not None:
            server.release.set()
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_the_webhook_retries_after_a_failure(hook, tmp_path):
    server, url = hook(fail=1)
    webhook = Webhook(url, retries=2, timeout=5, backoff=0.05)
    store = ConversationStore(f"sqlite:///{tmp_path / 'c.db'}")
    reference = StoreHandoff(store, secrets.token_hex(16), webhook=webhook).handoff(
        [{"role": "user", "content": "a person please"}])
    for thread in threading.enumerate():
        if thread.name == "handoff-webhook":
            thread.join(30)
    assert [body["reference"] for body in server.bodies] == [reference, reference] and webhook.failures == 0
    assert server.bodies[-1]["transcript"] == [{"role": "user", "content": "a person please"}]


@pytest.mark.slow
def test_a_webhook_that_never_answers_times_out_and_the_shopper_still_gets_a_reference(hook, tmp_path, caplog):
    server, url = hook(hang=True)
    webhook = Webhook(url, retries=1, timeout=0.5, backoff=0.05)
    sent = []
    real_send = webhook.send
    webhook.send = lambda payload: sent.append(real_send(payload)) or sent[-1]
    store = ConversationStore(f"sqlite:///{tmp_path / 'c.db'}")
    with caplog.at_level(logging.WARNING, logger="mmsupport.handoff"):
        reference = StoreHandoff(store, secrets.token_hex(16), webhook=webhook).handoff(
            [{"role": "user", "content": "a person please"}])
        assert store.ticket(reference)["status"] == "open" and sent[0].is_alive()  # returned while it waits
        sent[0].join(30)
    assert webhook.failures == 1 and len(server.bodies) == 2
    assert "failed for ticket " + reference in caplog.text and "timed out" in caplog.text


@pytest.mark.slow
def test_the_api_hands_a_session_over_and_shows_the_staff_replies(ui_server):
    from gradio_client import Client

    client = Client(ui_server.url, verbose=False)
    session = secrets.token_hex(16)
    opened = client.predict(session, "My order never arrived", api_name="/handoff")
    store = ConversationStore.from_settings(ui_server.settings)
    ticket = store.ticket(opened["reference"])
    assert ticket["session_id"] == session and ticket["transcript"][-1]["content"] == "My order never arrived"
    assert client.predict(opened["reference"], api_name="/ticket")["status"] == "open"
    store.update_ticket(opened["reference"], status="claimed", claimed_by="Sam")
    store.add_message(opened["reference"], "Sam", "It ships tomorrow.")
    found = client.predict(opened["reference"], api_name="/ticket")
    assert found["claimed"] and found["replies"][0]["text"] == "It ships tomorrow."
    with pytest.raises(Exception, match="session_id"):
        client.predict("not a session id!", "", api_name="/handoff")


def test_the_desk_shows_a_tickets_photos_when_they_are_kept(tmp_path, sample_catalog_settings):
    settings = load_settings(db_dir=sample_catalog_settings.db_dir, desk_password="staff-only", store_images=True,
                             database_url=f"sqlite:///{tmp_path / 'conversations.db'}")
    store = ConversationStore.from_settings(settings)
    reference = StoreHandoff(store, secrets.token_hex(16)).handoff(
        [{"role": "user", "content": "It came torn", "photos": [PHOTO]}])
    desk = Desk(settings, store)
    view, gallery = desk.show(reference, staff_login(desk))
    assert "It came torn" in view and "📷 photo" in view
    assert gallery.visible and len(gallery.value) == 1
