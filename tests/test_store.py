"""The conversation store on SQLite and on a real PostgreSQL 15 server: every field kept, outages survived,
concurrent sessions kept apart, no partial turn after kill -9, schema versions checked, privacy deletes complete."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mmsupport import store as st
from mmsupport.errors import MMSupportError
from mmsupport.store import ConversationStore

ROOT = Path(__file__).resolve().parent.parent

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    """``(url, outage_url, outage)``: a fresh empty database, its URL for outage tests and a context manager during
    which it cannot be written."""
    if request.param == "sqlite":
        path = tmp_path / "conversations.db"

        @contextlib.contextmanager
        def outage():  # another process holds the write lock (a backup, a stuck writer)
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()

        return f"sqlite:///{path}", f"sqlite:///{path}?timeout=0.2", outage
    server = request.getfixturevalue("postgres_server")

    @contextlib.contextmanager
    def outage():  # the server goes down and comes back
        server.stop()
        try:
            yield
        finally:
            server.start()

    url = server.create_database(f"t_{secrets.token_hex(6)}")
    return url, url, outage


def rows(store: ConversationStore, table: sa.Table, *where) -> list[dict]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(table).where(*where))]


def full_turn(number: int, session: str) -> dict:
    return {"question": f"question {number} of {session}", "answer": f"answer {number} [P{number:04d}]",
            "citations": [f"P{number:04d}"], "retrieved_ids": [f"P{number:04d}", "A0001"],
            "top_score": 0.25 + number / 1000, "no_match": number % 2 == 1, "intent": "product_question",
            "focus_used": True, "search": {"mode": "hybrid", "k": 5, "category": None}, "model": "scripted",
            "first_token_s": 0.5 + number, "answer_s": 1.5 + number, "error": None}


def test_a_turn_is_kept_with_every_field(backend):
    url, _, _ = backend
    store = ConversationStore(url, store_images=True)
    session = secrets.token_hex(16)
    turn = full_turn(7, session) | {"error": "timeout while streaming"}
    photo = b"\x89PNG fake photo bytes"
    turn_id = store.log_turn(session, turn, variant="fts", channel="api", photos=[photo])
    store.record_feedback(session, "thumbs", 1, turn_id=turn_id, variant="fts", channel="api")
    store.flush()
    assert store.failures == 0
    [saved] = rows(store, st.turns)
    assert {key: saved[key] for key in turn} == turn
    assert saved["id"] == turn_id and saved["session_id"] == session and saved["variant"] == "fts"
    assert saved["image_hashes"] == [st.image_hash(photo)]
    [image] = rows(store, st.images)
    assert image["data"] == photo and image["hash"] == st.image_hash(photo)
    [session_row] = rows(store, st.sessions)
    assert (session_row["id"], session_row["variant"], session_row["channel"]) == (session, "fts", "api")
    [vote] = rows(store, st.feedback)
    assert (vote["turn_id"], vote["kind"], vote["value"]) == (turn_id, "thumbs", 1)
    assert abs(st.now().replace(tzinfo=None) - saved["time"].replace(tzinfo=None)) < timedelta(minutes=5)


def test_photos_are_kept_only_as_hashes_by_default(backend):
    url, _, _ = backend
    store = ConversationStore(url)
    store.log_turn(secrets.token_hex(16), full_turn(1, "s"), photos=[b"photo"])
    store.flush()
    assert rows(store, st.images) == []
    assert rows(store, st.turns)[0]["image_hashes"] == [st.image_hash(b"photo")]


def test_the_database_going_away_loses_no_answer_and_writes_resume(backend):
    _, url, outage = backend
    store = ConversationStore(url)
    session = secrets.token_hex(16)
    store.log_turn(session, full_turn(0, session))
    store.flush()
    with outage():
        during = [store.log_turn(session, full_turn(n, session)) for n in (1, 2)]  # returns at once, never raises
        store.record_feedback(session, "csat", 4)
        store.flush()
        assert store.failures == 3
        assert all(len(turn_id) == 32 for turn_id in during)
    after = store.log_turn(session, full_turn(3, session))
    store.record_feedback(session, "resolved", 1, turn_id=after)
    store.flush()
    assert store.failures == 3
    assert sorted(row["question"] for row in rows(store, st.turns)) == [f"question {n} of {session}" for n in (0, 3)]
    assert [(row["kind"], row["turn_id"]) for row in rows(store, st.feedback)] == [("resolved", after)]


def test_tickets_fail_with_a_fix_it_message_while_the_database_is_away(backend):
    _, url, outage = backend
    store = ConversationStore(url)
    with outage(), pytest.raises(MMSupportError, match="conversation store is not reachable"):
        store.open_ticket(secrets.token_hex(16), reason="asked", transcript=[])
    assert store.open_ticket(secrets.token_hex(16), reason="asked", transcript=[]).startswith("H-")


def test_twenty_concurrent_sessions_keep_their_own_rows(backend):
    url, _, _ = backend
    store = ConversationStore(url)
    sessions = [secrets.token_hex(16) for _ in range(20)]
    references: dict[str, str] = {}
    start = threading.Barrier(len(sessions))

    def shopper(number: int, session: str) -> None:
        variant = "control" if number % 2 else "fts"
        start.wait()
        for turn in range(5):
            turn_id = store.log_turn(session, full_turn(turn, session), variant=variant)
            store.record_feedback(session, "thumbs", turn % 2, turn_id=turn_id, variant=variant)
        references[session] = store.open_ticket(session, reason="asked", variant=variant,
                                                 transcript=[{"role": "user", "content": session}])

    threads = [threading.Thread(target=shopper, args=pair) for pair in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.flush()
    assert store.failures == 0
    all_turns = rows(store, st.turns)
    assert len(all_turns) == 100
    for number, session in enumerate(sessions):
        variant = "control" if number % 2 else "fts"
        mine = [row for row in all_turns if row["session_id"] == session]
        assert sorted(row["question"] for row in mine) == [f"question {n} of {session}" for n in range(5)]
        assert {row["variant"] for row in mine} == {variant}
        votes = rows(store, st.feedback, st.feedback.c.session_id == session)
        assert {vote["turn_id"] for vote in votes} == {row["id"] for row in mine}
        ticket = store.ticket(references[session])
        assert ticket["session_id"] == session and ticket["transcript"][0]["content"] == session
        [session_row] = rows(store, st.sessions, st.sessions.c.id == session)
        assert session_row["variant"] == variant


WRITER = """
import sys
from mmsupport.store import ConversationStore
store = ConversationStore(sys.argv[1], store_images=True)
session = sys.argv[2]
number = 0
while True:
    photo = f"photo {number}".encode() * 2000
    turn_id = store.log_turn(session, {"question": f"q{number}", "answer": "a" * 5000 + str(number),
                                       "citations": [str(number)], "retrieved_ids": [str(number)] * 20,
                                       "answer_s": float(number)}, photos=[photo])
    store.record_feedback(session, "thumbs", number % 2, turn_id=turn_id)
    if number == 10:
        store.flush()
        print("writing", flush=True)
    number += 1
"""


@pytest.mark.slow  # runs a writer process and kills it
def test_kill_9_mid_write_leaves_no_partial_turn(backend):
    url, _, _ = backend
    session = secrets.token_hex(16)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, session], stdout=subprocess.PIPE, text=True,
                              env=environment)
    try:
        assert writer.stdout.readline().strip() == "writing"
        time.sleep(1.0)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    store = ConversationStore(url)
    saved = rows(store, st.turns)
    assert len(saved) > 10
    for row in saved:
        number = int(row["question"][1:])
        assert row["answer"] == "a" * 5000 + str(number)
        assert row["citations"] == [str(number)] and row["retrieved_ids"] == [str(number)] * 20
        assert row["answer_s"] == float(number)
        assert row["image_hashes"] == [st.image_hash(f"photo {number}".encode() * 2000)]
    numbers = sorted(int(row["question"][1:]) for row in saved)
    assert numbers == list(range(len(numbers)))  # written in order, none missing before the last
    images = {row["hash"]: row["data"] for row in rows(store, st.images)}
    assert all(images.get(row["image_hashes"][0]) is not None for row in saved)
    turn_ids = {row["id"] for row in saved}
    votes = rows(store, st.feedback)
    assert {vote["turn_id"] for vote in votes} <= turn_ids and len(votes) >= len(saved) - 1


def test_a_store_of_another_schema_version_is_refused_with_a_clear_message(backend):
    url, _, _ = backend
    store = ConversationStore(url)
    with store.engine.begin() as connection:
        connection.execute(st.schema_table.update().values(version=st.SCHEMA_VERSION + 1))
    store.engine.dispose()
    with pytest.raises(MMSupportError) as raised:
        ConversationStore(url)
    message = str(raised.value)
    assert f"schema version {st.SCHEMA_VERSION + 1}" in message and f"uses version {st.SCHEMA_VERSION}" in message
    assert "MMSUPPORT_DATABASE_URL" in message


def test_an_unreachable_store_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(MMSupportError, match="Could not open the conversation store"):
        ConversationStore(f"sqlite:///{tmp_path}/missing-folder/conversations.db")


def _fill(store: ConversationStore, session: str) -> None:
    turn_id = store.log_turn(session, full_turn(1, session), photos=[session.encode()])
    store.record_feedback(session, "resolved", 0, turn_id=turn_id)
    store.flush()
    reference = store.open_ticket(session, reason="no_match", transcript=[{"role": "user", "content": "help"}])
    store.add_message(reference, "Ana", "On it.")


def _everything(store: ConversationStore) -> dict[str, list]:
    """session ids found in each table (ticket messages through their ticket)."""
    found = {table.name: sorted(row["session_id"] for row in rows(store, table))
             for table in (st.turns, st.images, st.feedback, st.tickets)}
    found["sessions"] = sorted(row["id"] for row in rows(store, st.sessions))
    with store.engine.connect() as connection:
        found["ticket_messages"] = sorted(connection.execute(
            sa.select(st.tickets.c.session_id).join(st.ticket_messages)).scalars())
    return found


def test_retention_and_delete_remove_everything_of_a_session_and_nothing_else(backend):
    url, _, _ = backend
    store = ConversationStore(url, store_images=True)
    old, kept, deleted = (secrets.token_hex(16) for _ in range(3))
    for session in (old, kept, deleted):
        _fill(store, session)
    with store.engine.begin() as connection:
        connection.execute(st.sessions.update().where(st.sessions.c.id == old)
                           .values(started=st.now() - timedelta(days=40)))
    assert store.purge(30) == 1
    assert store.delete_session(deleted) == 1
    assert store.delete_session(deleted) == 0
    assert _everything(store) == {name: [kept] for name in
                                  ("turns", "images", "feedback", "tickets", "sessions", "ticket_messages")}
