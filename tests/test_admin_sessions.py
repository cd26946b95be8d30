"""Admin log-ins: throttled password checks and server-side tokens, unit by unit and over HTTP against real apps.

The HTTP tests call the admin handlers the way any client can, through ``/gradio_api/call/<name>`` with a chosen
``session_hash``: a client that reuses another browser's session hash must not inherit its log-in, and an app
without ``MMSUPPORT_ADMIN_PASSWORD`` has no admin handlers at all.
"""

import logging
import shutil
import socket
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from mmsupport.app.sessions import LOGIN_FAILED, NOT_LOGGED_IN, AdminSessions
from mmsupport.errors import InvalidInput

PASSWORD = "open-sesame"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def refused(sessions, password, client="10.0.0.1") -> str:
    with pytest.raises(InvalidInput) as error:
        sessions.log_in(password, client)
    return error.value.message


def test_a_burst_of_wrong_passwords_locks_the_client_out_even_for_the_right_one(clock):
    sessions = AdminSessions(PASSWORD, clock=clock, free_tries=5, base_lock=2.0)
    messages = {refused(sessions, f"guess-{n}") for n in range(100)}
    messages.add(refused(sessions, PASSWORD))
    assert messages == {LOGIN_FAILED}  # one message, locked out or wrong alike
    assert sessions.log_in(PASSWORD, "10.0.0.2")  # another client is not locked by this one
    clock.now += 2.0  # the first lockout (2 s) is over; the guesses made during it did not count
    assert sessions.log_in(PASSWORD, "10.0.0.1")


def test_lockouts_double_with_each_failure_past_the_free_tries(clock):
    sessions = AdminSessions(PASSWORD, clock=clock, free_tries=2, base_lock=1.0, max_lock=5.0)
    refused(sessions, "a")
    refused(sessions, "b")
    assert sessions.log_in(PASSWORD, "10.0.0.9")  # two free tries from 10.0.0.1 cost nothing to others
    for expected_lock in (1.0, 2.0, 4.0, 5.0):  # doubling, capped at max_lock
        refused(sessions, "wrong")
        clock.now += expected_lock - 0.01
        assert refused(sessions, PASSWORD) == LOGIN_FAILED
        clock.now += 0.01
    assert sessions.log_in(PASSWORD, "10.0.0.1")
    refused(sessions, "wrong again")  # a success cleared the count: free tries again
    assert sessions.log_in(PASSWORD, "10.0.0.1")


def test_failures_from_many_clients_lock_everyone_out(clock):
    sessions = AdminSessions(PASSWORD, clock=clock, free_tries=5, global_free_tries=20, base_lock=2.0)
    for n in range(21):  # one guess each from 21 addresses: no client is over its own free tries
        refused(sessions, "guess", client=f"10.1.0.{n}")
    assert refused(sessions, PASSWORD, client="10.9.9.9") == LOGIN_FAILED
    clock.now += 2.0
    assert sessions.log_in(PASSWORD, "10.9.9.9")


def test_failures_are_logged_with_the_client(clock, caplog):
    sessions = AdminSessions(PASSWORD, clock=clock, free_tries=1)
    with caplog.at_level(logging.WARNING, logger="mmsupport.app.sessions"):
        refused(sessions, "a", client="10.3.3.3")
        refused(sessions, "b", client="10.3.3.3")
        refused(sessions, PASSWORD, client="10.3.3.3")
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "admin log-in failed from 10.3.3.3", "admin log-in failed from 10.3.3.3",
        "admin log-in refused: 10.3.3.3 is locked out"]


def test_old_failures_are_forgotten(clock):
    sessions = AdminSessions(PASSWORD, clock=clock, free_tries=1, base_lock=1.0, forget_after=60.0)
    refused(sessions, "a")
    clock.now += 61.0
    refused(sessions, "b")  # the first failure was forgotten, so this is a free try again: no lockout
    assert sessions.log_in(PASSWORD, "10.0.0.1")


def test_tokens_are_unguessable_checked_and_expire_after_idle_time(clock):
    sessions = AdminSessions(PASSWORD, clock=clock, ttl=60.0)
    first, second = sessions.log_in(PASSWORD, "a"), sessions.log_in(PASSWORD, "b")
    assert first != second and len(first) >= 40
    for bad in (None, "", "True", first[:-1], True):
        with pytest.raises(InvalidInput, match=NOT_LOGGED_IN):
            sessions.check(bad)
    clock.now += 50.0
    sessions.check(first)  # a use extends the session
    clock.now += 50.0
    sessions.check(first)
    with pytest.raises(InvalidInput, match=NOT_LOGGED_IN):
        sessions.check(second)  # idle for 100 s > 60 s
    sessions.log_out(first)
    with pytest.raises(InvalidInput, match=NOT_LOGGED_IN):
        sessions.check(first)


def test_no_password_configured_means_no_log_in(clock):
    assert refused(AdminSessions("", clock=clock), "") == LOGIN_FAILED


# --- over HTTP, against real apps on 127.0.0.1 -------------------------------------------------------------------


@contextmanager
def running_app(settings):
    """A real app (scripted model, catalog opened up front) on a free port; yields ``url``, ``catalog``."""
    from fakes import ScriptedVLM

    from mmsupport.app import build_demo
    from mmsupport.catalog import Catalog

    catalog = Catalog.open(settings)
    demo = build_demo(settings, vlm=ScriptedVLM(default="Here it is."), catalog=catalog)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", catalog=catalog, settings=settings)
    finally:
        demo.close()


def app_settings(tmp_path, sample_catalog_settings, **overrides):
    from mmsupport.config import load_settings

    shutil.copytree(sample_catalog_settings.db_dir, tmp_path / "db")
    return load_settings(db_dir=tmp_path / "db", **overrides)


@pytest.fixture(scope="module")
def admin_app(tmp_path_factory, sample_catalog_settings):
    with running_app(app_settings(tmp_path_factory.mktemp("admin_app"), sample_catalog_settings,
                                  admin_password=PASSWORD)) as app:
        yield app


def call(url: str, name: str, data: list, session_hash: str | None = None) -> tuple[str, object]:
    """POST /gradio_api/call/<name>, then read its event stream: the last event's name and data."""
    import json

    import httpx

    body = {"data": data, **({"session_hash": session_hash} if session_hash else {})}
    response = httpx.post(f"{url}/gradio_api/call/{name}", json=body, timeout=30)
    if response.status_code != 200:
        return f"http {response.status_code}", response.text
    stream = httpx.get(f"{url}/gradio_api/call/{name}/{response.json()['event_id']}", timeout=300).text
    events = [block.splitlines() for block in stream.strip().split("\n\n")]
    event, data_line = events[-1][0], events[-1][-1]
    return event.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))


def uploaded(url: str, name: str, data: bytes) -> dict:
    import httpx

    response = httpx.post(f"{url}/gradio_api/upload", files={"files": (name, data)}, timeout=30)
    response.raise_for_status()
    return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}


ROWS = ("kind,id,title,category,colour,price,description,image\n"
        "product,{id},Harbour Wool Beanie (Navy),headwear,navy,24.50,A warm ribbed merino beanie.,\n")


@pytest.mark.slow
def test_a_reused_session_hash_does_not_carry_the_admin_log_in(admin_app):
    event, data = call(admin_app.url, "login", [PASSWORD], session_hash="shop-owner-tab")
    token = data[0]
    assert event == "complete" and isinstance(token, str) and token != "shop-owner-tab"
    assert {"visible": True, "__type__": "update"}.items() <= data[2].items()  # the admin controls open
    csv = uploaded(admin_app.url, "rows.csv", ROWS.format(id="Z900").encode())
    for forged in ([csv, None], [csv, None, None], [csv, None, "True"], [csv, None, "shop-owner-tab"]):
        event, data = call(admin_app.url, "ingest", forged, session_hash="shop-owner-tab")
        assert event != "complete", (forged, data)
    assert admin_app.catalog.get("Z900") is None
    # The token is what counts, not the session hash: the owner's browser ingests with it.
    event, data = call(admin_app.url, "ingest", [csv, None, token], session_hash="shop-owner-tab")
    assert event == "complete", data
    assert admin_app.catalog.get("Z900").title == "Harbour Wool Beanie (Navy)"
    event, data = call(admin_app.url, "preview", [csv, "not-a-token"])
    assert event == "error" and "not logged in" in data["error"]


@pytest.mark.slow
def test_wrong_passwords_over_http_lock_the_client_out(admin_app):
    """Runs last in this module: it leaves 127.0.0.1 locked out of ``admin_app``."""
    def opened(data) -> bool:
        """Whether a log-in's outputs open the admin controls (a visible column) or hand out a token."""
        return any(isinstance(d, dict) and d.get("visible") is True or isinstance(d, str) and len(d) > 20
                   for d in data)

    for n in range(8):
        event, data = call(admin_app.url, "login", [f"guess-{n}"])
        assert event == "complete" and not opened(data)
    event, data = call(admin_app.url, "login", [PASSWORD])
    assert event == "complete" and not opened(data), "the right password must not work during a lockout"


@pytest.mark.slow
def test_without_an_admin_password_there_are_no_admin_endpoints(tmp_path, sample_catalog_settings):
    import httpx

    with running_app(app_settings(tmp_path, sample_catalog_settings)) as app:
        names = {d["api_name"] for d in httpx.get(f"{app.url}/config", timeout=30).json()["dependencies"]}
        assert {"chat", "search"} <= names and not names & {"login", "preview", "ingest"}
        for name, data in (("login", [PASSWORD]), ("ingest", [None, None, None]), ("preview", [None, None])):
            event, _ = call(app.url, name, data)
            assert event != "complete", name
        # Nor are CSV or zip uploads taken: only the chat's images.
        response = httpx.post(f"{app.url}/gradio_api/upload",
                              files={"files": ("rows.csv", ROWS.format(id="Z901").encode())}, timeout=30)
        assert response.status_code == 415 and "rows.csv" in response.text
