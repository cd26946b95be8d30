"""Every turn and every piece of feedback lands in the conversation store (SQLite here), also when the turn fails,
and a database that goes away costs no answer: the failure is counted instead."""

import hashlib
import secrets
import shutil
import socket
from datetime import timedelta

import gradio as gr
import pytest
import sqlalchemy as sa
from fakes import ScriptedVLM

from mmsupport import store as tables
from mmsupport.app.admin import Admin
from mmsupport.app.api import Api
from mmsupport.app.chat import Chat
from mmsupport.app.resolution import Resolution
from mmsupport.app.resources import Resources
from mmsupport.config import REPO_DIR, load_settings
from mmsupport.errors import CatalogError
from mmsupport.store import ConversationStore, open_store

PHOTO = REPO_DIR / "data" / "images" / "customer" / "sneaker_angle.png"
VARIANTS = "variants:\n  control: {weight: 1}\n  fts: {weight: 1, search_mode: fts, top_k: 3}\n"


def cite_first(messages) -> str:
    """A scripted reply citing the first catalog item the model was given."""
    from mmsupport.safety import data_items

    content = messages[-1]["content"]
    text = content if isinstance(content, str) else " ".join(part.get("text", "") for part in content)
    found = data_items(text)
    return f"The best match is [{found[0]['id']}]." if found else "Nothing matched."


@pytest.fixture(scope="module")
def catalog(sample_catalog_settings):
    from mmsupport.catalog import Catalog

    return Catalog.open(sample_catalog_settings)


@pytest.fixture
def app(tmp_path, sample_catalog_settings, catalog):
    """A Chat and its Api over the sample catalog, a scripted model, two variants and an SQLite store in tmp_path."""
    (tmp_path / "variants.yaml").write_text(VARIANTS)
    settings = load_settings({}, db_dir=sample_catalog_settings.db_dir, variants=tmp_path / "variants.yaml",
                             database_url=f"sqlite:///{tmp_path / 'log' / 'conversations.db'}")
    (tmp_path / "log").mkdir()
    vlm = ScriptedVLM(default=cite_first, description="a running shoe", chunk=3)
    chat = Chat(settings, Resources(settings, vlm=vlm, catalog=catalog), open_store(settings))
    return chat, Api(chat)


def rows(store: ConversationStore, table) -> list[dict]:
    store.flush()
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(table))]


def browser_turn(chat, text, session, files=(), turns=()):
    history = [{"role": "user", "content": {"path": str(f)}} for f in files] + [{"role": "user", "content": text}]
    *_, (shown, _cards, _items, turns) = chat.respond(history, "hybrid", 5, "All", list(turns), {}, session)
    return shown, turns


def test_a_browser_turn_is_logged_with_every_field(app):
    chat, _ = app
    session = chat.visitors.arrive(None)[1]
    shown, turns = browser_turn(chat, "Do you sell these?", session, files=[PHOTO])
    [row] = rows(chat.store, tables.turns)
    assert row["id"] == turns[-1]["turn_id"] and row["session_id"] == session["id"]
    assert row["variant"] == session["variant"] and row["question"] == "Do you sell these?"
    assert row["image_hashes"] == [hashlib.sha256(PHOTO.read_bytes()).hexdigest()]
    cited = row["retrieved_ids"][0]
    assert row["answer"] == f"The best match is [{cited}]." and row["citations"] == [cited]
    assert 0 < row["top_score"] <= 1
    assert (row["no_match"], row["intent"], row["focus_used"], row["error"]) == (False, "search", False, None)
    assert row["search"] == {"mode": "hybrid", "k": 5, "category": None}
    assert row["model"] == chat.resources.vlm.name
    assert 0 < row["first_token_s"] <= row["answer_s"]
    [started] = rows(chat.store, tables.sessions)
    assert (started["id"], started["variant"], started["channel"]) == (session["id"], session["variant"], "web")


def test_a_follow_up_records_that_it_used_the_conversations_focus(app):
    chat, _ = app
    session = chat.visitors.arrive(None)[1]
    shown, turns = browser_turn(chat, "Do you sell these?", session, files=[PHOTO])
    history = shown + [{"role": "user", "content": "Is it waterproof?"}]
    *_, (_, _, _, turns) = chat.respond(history, "hybrid", 5, "All", turns, {}, session)
    logged = {row["id"]: row for row in rows(chat.store, tables.turns)}
    assert logged[turns[-1]["turn_id"]]["focus_used"] is True


def test_a_failed_turn_is_logged_with_its_error(app):
    chat, _ = app
    chat.resources.catalog = None
    chat.resources.catalog_error = CatalogError("The catalog folder is gone.", hint="Rebuild it.")
    session = chat.visitors.arrive(None)[1]
    shown, _ = browser_turn(chat, "Do you sell boots?", session)
    assert "cannot look things up right now" in shown[-1]["content"]
    [row] = rows(chat.store, tables.turns)
    assert row["error"] == "CatalogError: The catalog folder is gone. Rebuild it."
    assert row["answer"] == chat_text(shown) and row["answer_s"] is not None


def chat_text(shown):
    import html

    return html.unescape(shown[-1]["content"])


def test_the_api_returns_session_and_variant_and_a_session_keeps_its_variant(app):
    chat, api = app
    first = api.chat_turn("Do you sell running shoes?")
    assert len(first["session_id"]) == 32 and first["variant"] in ("control", "fts") and first["handoff"] is None
    again = api.chat_turn("And hiking boots?", session_id=first["session_id"])
    assert (again["session_id"], again["variant"]) == (first["session_id"], first["variant"])
    assert first["variant"] == chat.experiments.assign(first["session_id"]).name
    logged = {row["id"]: row for row in rows(chat.store, tables.turns)}
    assert {logged[first["turn_id"]]["session_id"], logged[again["turn_id"]]["session_id"]} == {first["session_id"]}
    [session] = rows(chat.store, tables.sessions)
    assert (session["channel"], session["variant"]) == ("api", first["variant"])


def test_an_api_turn_without_search_settings_uses_its_variants(app):
    chat, api = app
    ids = [secrets.token_hex(16) for _ in range(40)]
    fts = next(key for key in ids if chat.experiments.assign(key).name == "fts")
    control = next(key for key in ids if chat.experiments.assign(key).name == "control")
    searched = {}
    for key in (fts, control):
        reply = api.chat_turn("Do you sell running shoes?", session_id=key)
        searched[reply["variant"]] = {r["id"]: r for r in rows(chat.store, tables.turns)}[reply["turn_id"]]["search"]
    assert searched["fts"] == {"mode": "fts", "k": 3, "category": None}
    assert searched["control"] == {"mode": "hybrid", "k": 5, "category": None}
    explicit = api.chat_turn("Do you sell running shoes?", mode="vector", k=2, session_id=fts)
    assert {r["id"]: r for r in rows(chat.store, tables.turns)}[explicit["turn_id"]]["search"]["mode"] == "vector"


def test_a_bad_session_id_is_refused(app):
    _, api = app
    with pytest.raises(gr.Error, match="session_id must be 8 to 64 letters"):
        api.chat_turn("boots?", session_id="'; drop table turns; --")


def test_feedback_from_the_api_thumbs_the_buttons_and_the_rating_is_recorded(app):
    chat, api = app
    reply = api.chat_turn("Do you sell running shoes?")
    assert api.feedback(reply["session_id"], "resolved", 1, reply["turn_id"]) == {"recorded": True}
    with pytest.raises(gr.Error, match="Unknown feedback kind 'stars'"):
        api.feedback(reply["session_id"], "stars", 5)
    with pytest.raises(gr.Error, match="csat feedback takes 1, 2, 3, 4, 5, not 9"):
        api.feedback(reply["session_id"], "csat", 9)
    session = chat.visitors.arrive(None)[1]
    shown, turns = browser_turn(chat, "Do you sell these?", session, files=[PHOTO])
    chat.vote(turns, session, gr.LikeData(None, {"index": len(shown) - 1, "value": "", "liked": False}))
    outcome = Resolution(chat.store)
    outcome.solved(session, turns)
    outcome.rate(session, "4")
    recorded = [(r["session_id"], r["turn_id"], r["kind"], r["value"]) for r in rows(chat.store, tables.feedback)]
    turn_id = turns[-1]["turn_id"]
    assert recorded == [(reply["session_id"], reply["turn_id"], "resolved", 1), (session["id"], turn_id, "thumbs", 0),
                        (session["id"], turn_id, "resolved", 1), (session["id"], None, "csat", 4)]


def test_the_database_going_away_mid_run_loses_no_answer_and_is_counted(app, tmp_path):
    chat, api = app
    store = chat.store
    api.chat_turn("Do you sell running shoes?")
    assert len(rows(store, tables.turns)) == 1 and store.failures == 0
    database = tmp_path / "log" / "conversations.db"
    shutil.move(tmp_path / "log", tmp_path / "moved")
    (tmp_path / "log" / "conversations.db").mkdir(parents=True)  # the file is now a folder SQLite cannot open
    store.engine.dispose()  # as when the pool's connections are renewed
    reply = api.chat_turn("And hiking boots?")
    assert reply["answer"] and reply["citations"]
    store.flush()
    assert store.failures == 1
    shutil.rmtree(tmp_path / "log")
    shutil.move(tmp_path / "moved", tmp_path / "log")
    store.engine.dispose()
    api.chat_turn("Any sandals?")
    assert [row["question"] for row in rows(store, tables.turns)] == ["Do you sell running shoes?", "Any sandals?"]
    assert database.is_file() and store.failures == 1


def test_an_unreachable_database_at_start_still_answers_and_counts_each_lost_write(tmp_path, sample_catalog_settings,
                                                                                    catalog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    settings = load_settings({}, db_dir=sample_catalog_settings.db_dir,
                             database_url=f"postgresql+psycopg://shop:secret@127.0.0.1:{port}/support")
    store = open_store(settings)
    resources = Resources(settings, vlm=ScriptedVLM(default=cite_first), catalog=catalog)
    api = Api(Chat(settings, resources, store))
    replies = [api.chat_turn(q) for q in ("Do you sell running shoes?", "Any hiking boots?")]
    assert all(reply["answer"] for reply in replies)
    api.feedback(replies[0]["session_id"], "csat", 5)
    store.flush()
    assert store.failures == 3
    status = Admin(settings, resources, store).status()
    assert "3 writes failed" in status and "secret" not in status


def test_retention_deletes_old_sessions_at_start(tmp_path, sample_catalog_settings):
    url = f"sqlite:///{tmp_path / 'conversations.db'}"
    store = ConversationStore(url)
    old, new = secrets.token_hex(16), secrets.token_hex(16)
    for session_id in (old, new):
        store.log_turn(session_id, {"question": "q", "answer": "a"})
    store.flush()
    with store.engine.begin() as connection:
        connection.execute(tables.sessions.update().where(tables.sessions.c.id == old)
                           .values(started=tables.now() - timedelta(days=40)))
    reopened = open_store(load_settings({}, db_dir=tmp_path / "db", database_url=url, retention_days=30))
    assert [row["id"] for row in rows(reopened, tables.sessions)] == [new]
    assert [row["session_id"] for row in rows(reopened, tables.turns)] == [new]


def test_a_browser_keeps_its_visitor_id_and_variant_and_clear_starts_a_new_session(app):
    chat, _ = app
    visitor, first = chat.visitors.arrive(None)
    again, second = chat.visitors.arrive(visitor)  # the next visit brings the id back from local storage
    assert again == visitor and first["id"] != second["id"]
    assert first["variant"] == second["variant"] == chat.experiments.assign(visitor).name
    cleared = chat.visitors.restart(second, visitor)
    assert cleared["id"] != second["id"] and (cleared["variant"], cleared["channel"]) == (second["variant"], "web")
    assert chat.visitors.arrive("<script>")[0] != "<script>"  # a tampered id is replaced
