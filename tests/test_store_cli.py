"""``python -m mmsupport forget SESSION_ID`` and ``purge --days N``: privacy requests and retention from the shell."""

import json
import secrets
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mmsupport import store as tables
from mmsupport.__main__ import main
from mmsupport.store import ConversationStore


def filled_store(tmp_path, ages_in_days: list[float]) -> tuple[str, list[str]]:
    """An SQLite store with one session per age, each with a turn, a photo, a rating and a ticket."""
    url = f"sqlite:///{tmp_path / 'conversations.db'}"
    store = ConversationStore(url, store_images=True)
    ids = [secrets.token_hex(16) for _ in ages_in_days]
    for session_id in ids:
        turn_id = store.log_turn(session_id, {"question": "Red light?", "answer": "See [A1]."},
                                 photos=[session_id.encode()])
        store.record_feedback(session_id, "csat", 4, turn_id=turn_id)
    store.flush()
    for session_id in ids:
        store.open_ticket(session_id, reason="asked", transcript=[{"role": "user", "content": "a person please"}])
    with store.engine.begin() as connection:
        for session_id, age in zip(ids, ages_in_days):
            connection.execute(tables.sessions.update().where(tables.sessions.c.id == session_id)
                               .values(started=tables.now() - timedelta(days=age)))
    return url, ids


def left(url: str) -> dict[str, set[str]]:
    """Session ids still found in each table."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        found = {table.name: {row.session_id for row in connection.execute(sa.select(table.c.session_id))}
                 for table in (tables.turns, tables.images, tables.feedback, tables.tickets)}
        found["sessions"] = {row.id for row in connection.execute(sa.select(tables.sessions.c.id))}
    engine.dispose()
    return found


def test_forget_deletes_one_session_and_everything_about_it(tmp_path, capsys):
    url, (gone, kept) = filled_store(tmp_path, [1, 1])
    assert main(["forget", gone, "--db-url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"session_id": gone, "deleted": 1}
    assert all(ids == {kept} for ids in left(url).values()), left(url)
    assert main(["forget", gone, "--db-url", url]) == 0
    assert "nothing to delete" in capsys.readouterr().out


def test_purge_deletes_the_sessions_older_than_the_days_given(tmp_path, capsys):
    url, (old, older, recent) = filled_store(tmp_path, [31, 400, 2])
    assert main(["purge", "--days", "30", "--db-url", url]) == 0
    assert "deleted 2 sessions started more than 30 days ago" in capsys.readouterr().out
    assert all(ids == {recent} for ids in left(url).values()), left(url)


def test_purge_refuses_a_negative_number_of_days(tmp_path, capsys):
    url, _ = filled_store(tmp_path, [1])
    with pytest.raises(SystemExit) as stopped:
        main(["purge", "--days", "-3", "--db-url", url])
    assert stopped.value.code == 2
    assert "'-3' is not a number of days" in capsys.readouterr().err
    assert len(left(url)["sessions"]) == 1


def test_forget_says_how_to_fix_an_unreachable_store(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'missing' / 'folder' / 'conversations.db'}"
    assert main(["forget", secrets.token_hex(16), "--db-url", url]) == 2
    assert "Check MMSUPPORT_DATABASE_URL" in capsys.readouterr().err
