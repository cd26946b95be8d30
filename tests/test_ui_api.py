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


def test_only_chat_search_handoff_and_ticket_are_public(client):
    assert sorted(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == [
        "/chat", "/handoff", "/search", "/ticket"]


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
    assert list(chat) == ["message", "image", "mode", "k", "category"]
    assert not chat["message"]["parameter_has_default"]
    assert all(chat[name]["parameter_has_default"] for name in ("image", "mode", "k", "category"))
    assert (chat["image"]["parameter_default"], chat["k"]["parameter_default"]) == (None, 5)
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
