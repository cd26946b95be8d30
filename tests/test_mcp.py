"""The MCP tools through the official ``mcp`` client against the real app (MMSUPPORT_MCP on, a scripted VLM), and no
MCP endpoint with the setting off (the shared ui_server)."""

import asyncio
import base64
import json
import socket

import httpx
import pytest

from mmsupport.config import REPO_DIR, SEARCH_MODES

PHOTO = REPO_DIR / "data" / "images" / "customer" / "watch_red_light.png"
#: A second photo: descriptions are cached by image, so each case needs its own for the model to see it.
OTHER_PHOTO = REPO_DIR / "data" / "images" / "customer" / "headset_blue_light.png"

pytestmark = pytest.mark.slow  # a real app server


@pytest.fixture(scope="module")
def mcp_app(tmp_path_factory, sample_catalog_settings):
    """The app with MCP on, its own copy of the sample catalog and a scripted VLM that records the photos it sees."""
    import shutil
    from types import SimpleNamespace

    from fakes import ScriptedVLM

    from mmsupport.app import build_demo
    from mmsupport.config import load_settings

    root = tmp_path_factory.mktemp("mcp_app")
    shutil.copytree(sample_catalog_settings.db_dir, root / "db")
    seen = []

    def describe(image):
        seen.append(image.size)
        return "a smartwatch with a red light"

    settings = load_settings(db_dir=root / "db", mcp=True, admin_password="open-sesame", max_upload_mb=2)
    vlm = ScriptedVLM(default="Hold the button for ten seconds [A001].", description=describe)
    demo = build_demo(settings, vlm=vlm)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", demo=demo, seen=seen, settings=settings)
    demo.close()


def _mcp(url: str, work):
    """Run ``await work(session)`` in an initialised MCP client session on ``url``'s streamable HTTP endpoint."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run():
        async with streamable_http_client(f"{url}/gradio_api/mcp/") as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)

    return asyncio.run(run())


def _call(url: str, tool: str, arguments: dict):
    """``(is_error, text)`` of one tool call."""
    async def work(session):
        return await session.call_tool(tool, arguments)

    result = _mcp(url, work)
    return result.isError, " ".join(part.text for part in result.content if part.type == "text")


def test_exactly_the_three_tools_are_listed_typed_and_documented(mcp_app):
    async def work(session):
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in _mcp(mcp_app.url, work)}
    assert sorted(tools) == ["ask_support", "get_item", "search_catalog"]
    for tool in tools.values():
        assert len(tool.description) > 40
        assert all(spec.get("description") for spec in tool.inputSchema["properties"].values()), tool.name
    search = tools["search_catalog"].inputSchema
    assert search["required"] == ["query"]
    assert {name: spec.get("type") for name, spec in search["properties"].items()} == {
        "query": "string", "mode": None, "k": "integer", "category": "string"}
    assert search["properties"]["mode"]["enum"] == list(SEARCH_MODES)
    assert tools["get_item"].inputSchema["required"] == ["item_id"]
    ask = tools["ask_support"].inputSchema
    assert ask["required"] == ["question"] and set(ask["properties"]) == {"question", "image_url", "session_id"}


@pytest.mark.parametrize("tool", ["chat_turn", "search", "feedback", "api_handoff", "api_ticket"])
def test_the_scripts_api_and_ticket_endpoints_cannot_be_called_as_tools(mcp_app, tool):
    is_error, text = _call(mcp_app.url, tool, {"message": "hi", "query": "hi", "session_id": "abcdefgh12"})
    assert is_error and f"Unknown tool for this Gradio app: {tool}" in text


def test_search_catalog_and_get_item_return_the_catalogs_items(mcp_app):
    is_error, text = _call(mcp_app.url, "search_catalog", {"query": "waterproof hiking boots", "k": 3})
    assert not is_error
    items = json.loads(text)
    expected = mcp_app.demo.resources.wait_for_catalog().search("waterproof hiking boots", mode="hybrid", k=3)
    assert [item["id"] for item in items] == [item.id for item in expected]
    is_error, text = _call(mcp_app.url, "get_item", {"item_id": items[0]["id"]})
    assert not is_error
    assert json.loads(text)["title"] == expected[0].title


def test_ask_support_answers_with_citations_of_retrieved_items_and_logs_the_turn(mcp_app):
    is_error, text = _call(mcp_app.url, "ask_support", {"question": "How do I reset my smartwatch?"})
    assert not is_error
    result = json.loads(text)
    assert result["answer"].startswith("Hold the button") and result["items"]
    assert set(result["citations"]) <= {item["id"] for item in result["items"]}
    turns = mcp_app.demo.store.session_turns(result["session_id"])
    assert [turn["id"] for turn in turns] == [result["turn_id"]]


def test_ask_support_sees_a_photo_sent_as_a_data_url_or_an_upload(mcp_app):
    from mmsupport.images import load_image

    size, other_size = (load_image(photo, max_side=mcp_app.settings.image_max_side).size
                        for photo in (PHOTO, OTHER_PHOTO))
    data_url = "data:image/png;base64," + base64.b64encode(PHOTO.read_bytes()).decode()
    mcp_app.seen.clear()
    is_error, text = _call(mcp_app.url, "ask_support", {"question": "What is this light?", "image_url": data_url})
    assert not is_error, text
    assert mcp_app.seen == [size]
    with OTHER_PHOTO.open("rb") as photo:  # what `gradio upload-mcp` does, then it passes the file's URL
        path = httpx.post(f"{mcp_app.url}/gradio_api/upload", files={"files": photo}).json()[0]
    mcp_app.seen.clear()
    is_error, text = _call(mcp_app.url, "ask_support", {"question": "And now?",
                                                         "image_url": f"{mcp_app.url}/gradio_api/file={path}"})
    assert not is_error, text
    assert mcp_app.seen == [other_size]


@pytest.mark.parametrize("tool, arguments, message", [
    ("search_catalog", {"query": "boots", "k": 99}, "k must be a whole number from 1 to 50, not 99"),
    ("search_catalog", {"query": "  "}, "The query is empty"),
    ("search_catalog", {"query": "boots", "mode": "fuzzy"}, f"'fuzzy' is not one of {list(SEARCH_MODES)}"),
    ("search_catalog", {}, "'query' is a required property"),
    ("get_item", {"item_id": "NOPE-1"}, "There is no item with id 'NOPE-1'. Use an id that search_catalog returned."),
    ("ask_support", {"question": "Is this broken?", "image_url": "http://127.0.0.1:9/photo.png"},
     "The image URL's host 127.0.0.1 is a private, loopback or reserved network address"),
    ("ask_support", {"question": "Is this broken?", "image_url": "http://169.254.169.254/latest/meta-data/"},
     "is a private, loopback or reserved network address"),
    ("ask_support", {"question": "Is this broken?", "image_url": "file:///etc/passwd"},
     "Image URLs must start with http:// or https://"),
    ("ask_support", {"question": "What is this?", "image_url": "data:image/png;base64," + base64.b64encode(
        b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode()}, "not an image in a supported format"),
    ("ask_support", {"question": "x" * 5000}, "over the 4000 limit"),
])
def test_a_bad_call_says_what_is_wrong(mcp_app, tool, arguments, message):
    is_error, text = _call(mcp_app.url, tool, arguments)
    assert is_error and message in text, text


def test_with_the_setting_off_there_is_no_mcp_endpoint(ui_server):
    assert ui_server.settings.mcp is False
    assert httpx.get(f"{ui_server.url}/gradio_api/mcp/schema").status_code == 404
    response = httpx.post(f"{ui_server.url}/gradio_api/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "initialize"},
                          headers={"Accept": "application/json, text/event-stream"})
    assert response.status_code in (404, 405)
    with pytest.raises(Exception):  # noqa: B017 (the client raises a transport-specific error group)
        _call(ui_server.url, "search_catalog", {"query": "boots"})
