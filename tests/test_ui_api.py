"""The app's named API (/chat, /search; /handoff and /ticket are in test_handoff_desk.py) through gradio_client
against a real server, and the README's example."""

import re

import pytest

from mmsupport.config import REPO_DIR

PHOTO = REPO_DIR / "data" / "images" / "customer" / "watch_red_light.png"

pytestmark = pytest.mark.slow  # a real app server (tests/conftest.py ui_server)


@pytest.fixture(scope="module")
def client(ui_server):
    from gradio_client import Client

    return Client(ui_server.url, verbose=False)


def test_only_the_shopper_endpoints_are_public(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(endpoints) == ["/chat", "/feedback", "/handoff", "/search", "/ticket"]


def test_search_returns_items_best_first_and_filters_by_category(client):
    items = client.predict("waterproof hiking boots", "hybrid", 3, "", api_name="/search")
    assert len(items) == 3
    assert [item["score"] for item in items] == sorted((item["score"] for item in items), reverse=True)
    assert {"id", "kind", "title", "text", "price", "score"} <= set(items[0])
    articles = client.predict("my watch flashes red", "fts", 5, "troubleshooting", api_name="/search")
    assert articles and {item["category"] for item in articles} == {"troubleshooting"}
    assert not any("/" in (item["image"] or "") for item in items), "server paths must not leak"


def test_chat_answers_a_photo_and_question_with_citations_of_retrieved_items(client):
    from gradio_client import handle_file

    reply = client.predict("My watch button is flashing red, what does that mean?", handle_file(str(PHOTO)),
                           "hybrid", 5, "", api_name="/chat")
    ids = {item["id"] for item in reply["items"]}
    assert reply["citations"] and set(reply["citations"]) <= ids
    assert f"[{reply['citations'][0]}]" in reply["answer"]
    assert not reply["no_match"]


def test_chat_says_what_is_wrong_with_bad_settings(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Unknown search mode 'semantic'"):
        client.predict("boots", None, "semantic", 5, "", api_name="/chat")
    with pytest.raises(AppError, match="The query is empty"):
        client.predict("  ", "hybrid", 5, "", api_name="/search")


def test_the_readme_api_example_runs(ui_server, capsys):
    readme = (REPO_DIR / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## API\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace("http://127.0.0.1:7860", ui_server.url).replace('"data/', f'"{REPO_DIR}/data/')
    exec(compile(code, "README.md", "exec"), {})
    *answer, first, second, third = capsys.readouterr().out.splitlines()
    assert re.search(r"\[\w+\]", " ".join(answer))  # cited answer, then the citations
    assert all(re.fullmatch(r"\w+ .+ [\d.]+", line) for line in (first, second, third))


def test_api_docs_mark_optional_inputs_and_name_outputs(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    chat = {p["parameter_name"]: p for p in endpoints["/chat"]["parameters"]}
    assert list(chat) == ["message", "image", "mode", "k", "category", "session_id", "audio"]
    assert not chat["message"]["parameter_has_default"]
    assert all(chat[name]["parameter_has_default"] for name in ("image", "mode", "k", "category", "session_id",
                                                                 "audio"))
    assert (chat["image"]["parameter_default"], chat["k"]["parameter_default"]) == (None, None)
    assert chat["audio"]["parameter_default"] is None
    feedback = {p["parameter_name"]: p for p in endpoints["/feedback"]["parameters"]}
    assert list(feedback) == ["session_id", "kind", "value", "turn_id"]
    assert [name for name, p in feedback.items() if p["parameter_has_default"]] == ["turn_id"]
    assert [r["label"] for r in endpoints["/chat"]["returns"]] == ["answer"]
    search = {p["parameter_name"]: p for p in endpoints["/search"]["parameters"]}
    assert [name for name, p in search.items() if not p["parameter_has_default"]] == ["query"]
    assert [r["label"] for r in endpoints["/search"]["returns"]] == ["result"]


def test_k_outside_1_to_50_is_refused_not_replaced(client):
    from gradio_client.exceptions import AppError

    for k in (0, 51, -3):
        with pytest.raises(AppError, match="k must be a whole number from 1 to 50"):
            client.predict("boots", "hybrid", k, "", api_name="/search")
    with pytest.raises(AppError, match="k must be a whole number from 1 to 50"):
        client.predict("boots", None, "hybrid", 0, "", api_name="/chat")
    assert len(client.predict("boots", "hybrid", 50, "", api_name="/search")) > 5


def test_an_over_long_message_is_refused_over_the_api_as_in_the_browser(client, ui_server):
    from gradio_client.exceptions import AppError

    limit = ui_server.settings.max_message_chars
    with pytest.raises(AppError, match=f"over the {limit} limit"):
        client.predict("boots " * limit, None, "hybrid", 5, "", api_name="/chat")


def test_a_chat_turn_through_the_app_is_logged_with_every_field(client, ui_server):
    import hashlib
    import secrets

    import sqlalchemy as sa
    from gradio_client import handle_file

    from mmsupport.store import feedback, sessions, turns

    session_id = secrets.token_hex(16)
    reply = client.predict("My watch button is flashing red, what does that mean?", handle_file(str(PHOTO)),
                           "hybrid", 4, "", session_id, api_name="/chat")
    assert (reply["session_id"], reply["variant"], reply["handoff"]) == (session_id, "control", None)
    assert client.predict(session_id, "csat", 5, reply["turn_id"], api_name="/feedback") == {"recorded": True}
    store = ui_server.demo.store
    store.flush()
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(turns).where(turns.c.id == reply["turn_id"])).one()._asdict()
        session = connection.execute(sa.select(sessions).where(sessions.c.id == session_id)).one()._asdict()
        rating = connection.execute(sa.select(feedback).where(feedback.c.session_id == session_id)).one()._asdict()
    assert (session["variant"], session["channel"]) == ("control", "api")
    assert (rating["kind"], rating["value"], rating["turn_id"]) == ("csat", 5, reply["turn_id"])
    assert row["question"] == "My watch button is flashing red, what does that mean?"
    assert row["image_hashes"] == [hashlib.sha256(PHOTO.read_bytes()).hexdigest()]
    assert (row["answer"], row["citations"]) == (reply["answer"], reply["citations"])
    assert row["retrieved_ids"] == [item["id"] for item in reply["items"]] and 0 < row["top_score"] <= 1
    assert (row["no_match"], row["intent"], row["focus_used"], row["error"]) == (False, "search", False, None)
    assert row["search"] == {"mode": "hybrid", "k": 4, "category": None}
    assert row["model"] == ui_server.demo.resources.vlm.name
    assert 0 < row["first_token_s"] < row["answer_s"]  # the scripted model streams at a model's pace


def test_chat_answers_a_spoken_question_with_its_transcript(client, tmp_path):
    from gradio_client import handle_file
    from speech_audio import say

    recording = say("My watch button is flashing red. What does that mean?", tmp_path / "question.wav")
    reply = client.predict("", None, "hybrid", 5, "", None, handle_file(str(recording)), api_name="/chat")
    assert "flashing red" in reply["transcript"].lower()
    assert reply["citations"] and "A001" in {item["id"] for item in reply["items"]}
    typed = client.predict("Do you sell backpacks?", None, "hybrid", 5, "", api_name="/chat")
    assert typed["transcript"] is None


def test_bad_audio_over_the_api_says_what_is_wrong_and_the_server_keeps_serving(client, ui_server, tmp_path):
    import httpx
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from speech_audio import tone, write_wav

    (tmp_path / "notes.wav").write_text("a text file named like a recording")
    with pytest.raises(Exception, match="415 Unsupported Media Type"):
        client.predict("", None, "hybrid", 5, "", None, handle_file(str(tmp_path / "notes.wav")), api_name="/chat")
    refused = httpx.post(f"{ui_server.url}/gradio_api/upload", files={"files": ("notes.wav", b"not audio")})
    assert refused.status_code == 415 and "notes.wav: the file is not an image" in refused.text
    assert "an audio recording (WAV, MP3, OGG/Opus, WebM or M4A)" in refused.text
    with pytest.raises(AppError, match="I didn.t catch that"):
        client.predict("", None, "hybrid", 5, "", None, handle_file(str(write_wav(tmp_path / "quiet.wav", [0.0] * 32000,
                                                                                 16000))), api_name="/chat")
    with pytest.raises(AppError, match="long.wav is 61 seconds long, over the 60-second limit"):
        client.predict("", None, "hybrid", 5, "", None, handle_file(str(tone(tmp_path / "long.wav", 61, rate=8000))),
                       api_name="/chat")
    assert client.predict("boots", "hybrid", 3, "", api_name="/search")
