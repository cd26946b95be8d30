"""Security at the HTTP boundary of a real app on 127.0.0.1.

Every route that can return a file must serve only the catalog image folder and Gradio's own upload cache:
`/etc/passwd`, `../` sequences, absolute paths and URL-encoded variants get 403/404 (the classes of CVE-2023-51449,
CVE-2024-1561 and GHSA-j36p-7w88-g82j). Uploads are limited in size and must be images.
"""

import http.client
import io
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from PIL import Image

from mmsupport.config import REPO_DIR

SECRET = "root:x:0:0"

pytestmark = pytest.mark.slow  # a real app server (tests/conftest.py ui_server)

# Prefixes of every route that takes a path (gradio 6.31 routes.py), with and without the /gradio_api mount.
FILE_ROUTES = [
    "/gradio_api/file=", "/file=", "/gradio_api/file/", "/file/",
    "/static/", "/assets/", "/svelte/", "/gradio_api/proxy=", "/proxy=",
    "/gradio_api/custom_component/x/client/js/", "/gradio_api/stream/s/r/1/", "/pwa_icon/",
    "/monitoring/", "/gradio_api/run-history/records/chat/1/assets/",
]


def payloads(repo_file: Path) -> list[str]:
    """Ways to name a file outside the allowed folders: absolute, traversal, encoded, double-encoded, backslashes."""
    return [
        "/etc/passwd",
        "etc/passwd",
        "../../../../../../../../etc/passwd",
        "..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        "..%5c..%5c..%5c..%5c..%5c..%5cetc%5cpasswd",
        "%2Fetc%2Fpasswd",
        "//etc/passwd",
        "file:///etc/passwd",
        "file%3A%2F%2F%2Fetc%2Fpasswd",
        "/proc/self/environ",
        str(repo_file),
        quote(str(repo_file), safe=""),
        str(repo_file.parent / "images" / ".." / repo_file.name),
    ]


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET exactly ``target`` (no client-side normalisation of `..` or %-escapes)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_positive_controls_catalog_images_and_uploads_are_served(ui_server):
    image = next((REPO_DIR / "data" / "images").glob("*.png"))
    status, body = raw_get(ui_server.url, f"/gradio_api/file={image}")
    assert status == 200 and body.startswith(b"\x89PNG")
    uploaded = upload(ui_server.url, "shoe.png", png_bytes())
    status, body = raw_get(ui_server.url, f"/gradio_api/file={uploaded}")
    assert status == 200 and body.startswith(b"\x89PNG")


@pytest.mark.parametrize("route", FILE_ROUTES)
def test_file_routes_refuse_everything_outside_the_allowed_folders(ui_server, route):
    repo_file = REPO_DIR / "data" / "products.csv"
    for payload in payloads(repo_file) + [str((ui_server.root / "conversations.db").resolve()),
                                            str(Path(ui_server.settings.db_dir).resolve())]:
        status, body = raw_get(ui_server.url, route + payload)
        assert SECRET.encode() not in body and b"HF_HUB_OFFLINE" not in body, (route, payload)
        assert b"kind,id,title" not in body, (route, payload)
        # The file routes answer 403/404; the others refuse a path they cannot use with another 4xx (400 bad
        # request, 401 run history needs a login, 422 not a number), never with content.
        assert status in (403, 404) if "file" in route else 400 <= status < 500, (route, payload, status)


def png_bytes(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "navy").save(buffer, format="PNG")
    return buffer.getvalue()


def upload(url: str, name: str, data: bytes) -> str:
    import httpx

    response = httpx.post(f"{url}/gradio_api/upload", files={"files": (name, data)}, timeout=30)
    response.raise_for_status()
    return response.json()[0]


def test_uploads_over_the_size_limit_are_refused(ui_server):
    import httpx

    too_big = b"\0" * int((ui_server.settings.max_upload_mb + 0.5) * 1024 * 1024)
    response = httpx.post(f"{ui_server.url}/gradio_api/upload", files={"files": ("big.png", too_big)}, timeout=60)
    assert response.status_code == 413


def test_non_images_get_a_clear_message_and_the_app_keeps_serving(ui_server):
    import httpx
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(ui_server.url, verbose=False)
    root = Path(ui_server.root)
    (root / "invoice.pdf").write_bytes(b"%PDF-1.4 not an image")
    (root / "disguised.png").write_bytes(b"<html><script>alert(1)</script></html>")
    (root / "empty.png").write_bytes(b"")
    for name, reason in (("invoice.pdf", "not an image"), ("disguised.png", "not an image"), ("empty.png", "empty")):
        with pytest.raises(httpx.HTTPStatusError) as refused:  # the upload itself is refused, by content
            client.predict("What is this?", handle_file(str(root / name)), "hybrid", 3, "", api_name="/chat")
        assert refused.value.response.status_code == 415
        assert name in refused.value.response.text and reason in refused.value.response.text
    with pytest.raises(AppError, match="empty"):
        client.predict("   ", None, "hybrid", 3, "", api_name="/chat")
    result = client.predict("running shoes", None, "hybrid", 3, "", api_name="/chat")
    assert result["answer"]


def test_the_app_keeps_serving_after_bad_input(ui_server):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(ui_server.url, verbose=False)
    root = Path(ui_server.root)
    (root / "truncated.png").write_bytes(png_bytes((256, 256))[:300])
    bomb = root / "bomb.png"  # tiny file, 40000 x 40000 pixels once decoded
    Image.new("1", (40000, 40000)).save(bomb, optimize=True)
    for name in ("truncated.png", "bomb.png"):  # image headers pass the upload check; decoding refuses them
        with pytest.raises(AppError, match=name):
            client.predict("What is this?", handle_file(str(root / name)), "hybrid", 3, "", api_name="/chat")
    with pytest.raises(AppError, match="over the 4000 limit"):  # refused as in the browser, not cut silently
        client.predict("boots " * 5000, None, "hybrid", 3, "", api_name="/chat")
    reply = client.predict("waterproof hiking boots", None, "hybrid", 3, "", api_name="/chat")
    assert reply["answer"] and reply["citations"]


def test_api_callers_cannot_point_an_upload_at_a_server_file(ui_server):
    import httpx

    for path in ("/etc/passwd", str((ui_server.root / "conversations.db").resolve()), "../../../../etc/passwd"):
        payload = {"data": ["What is this?", {"path": path, "meta": {"_type": "gradio.FileData"}}, "hybrid", 3, "",
                            None]}
        event = httpx.post(f"{ui_server.url}/gradio_api/call/chat", json=payload, timeout=30)
        if event.status_code != 200:
            assert 400 <= event.status_code < 500
            continue
        stream = httpx.get(f"{ui_server.url}/gradio_api/call/chat/{event.json()['event_id']}", timeout=60).text
        assert "event: error" in stream and SECRET not in stream, stream


def call_events(url: str, name: str, data: list, session_hash: str = "forger") -> str:
    """POST /gradio_api/call/<name> with a chosen session hash and return the event stream's text."""
    import httpx

    event = httpx.post(f"{url}/gradio_api/call/{name}", json={"data": data, "session_hash": session_hash},
                       timeout=30)
    assert event.status_code == 200, event.text
    return httpx.get(f"{url}/gradio_api/call/{name}/{event.json()['event_id']}", timeout=120).text


def forged_history(part: dict) -> list[dict]:
    return [{"role": "user", "content": [part], "metadata": None, "options": None}]


def test_a_forged_chat_history_cannot_copy_server_files_or_probe_for_them(ui_server, tmp_path):
    """A history part naming a server file made Gradio copy it into its cache (and an error told it was missing)."""
    import uuid

    from gradio.utils import get_upload_folder

    secret = tmp_path / f"owner-notes-{uuid.uuid4().hex}.txt"  # under the system temp folder, which Gradio copies from
    secret.write_text("SUPPLIER-PRICES-7731")
    missing = secret.with_name("no-such-file.txt")
    replies = []
    for path in (secret, missing):
        for part in ({"type": "component", "component": "file", "value": {"path": str(path)},
                      "constructor_args": {}, "props": {}},
                     {"type": "component", "component": "image", "value": {"path": str(path)},
                      "constructor_args": {}, "props": {}},
                     {"type": "file", "file": {"path": str(path), "meta": {"_type": "gradio.FileData"}}}):
            stream = call_events(ui_server.url, "add_message", [{"text": "hi", "files": []}, forged_history(part)])
            assert "event: error" in stream and "SUPPLIER" not in stream, stream
            replies.append(stream.split("data: ", 1)[1].strip())
    copies = list(Path(get_upload_folder()).rglob(secret.name))
    assert copies == [], "the server file was copied into Gradio's cache"
    assert replies[:3] == replies[3:], "the reply must not tell whether the named file exists"
    assert all('"error": null' not in reply for reply in replies), replies  # a message that says what is wrong


def test_the_chat_takes_back_its_own_history_with_an_uploaded_photo(ui_server):
    """Positive control for the check above: the history the server returned, photo included, is accepted."""
    import json

    photo = {"path": upload(ui_server.url, "own-photo.png", png_bytes()), "meta": {"_type": "gradio.FileData"}}
    stream = call_events(ui_server.url, "add_message", [{"text": "What is this?", "files": [photo]}, []])
    assert "event: complete" in stream, stream
    history = json.loads(stream.split("data: ", 1)[1])[0]
    assert history[0]["content"][0]["file"]["path"].endswith("own-photo.png")
    stream = call_events(ui_server.url, "add_message", [{"text": "And in blue?", "files": []}, history])
    assert "event: complete" in stream, stream


@pytest.mark.parametrize("name, data", [
    ("page.html", b"<html><script>alert(1)</script></html>"),
    ("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),
    ("logo.png", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),  # by content
    ("page.csv", b"  <html><body onload=alert(1)>,x\n"),
    ("shoe.png.html", png_bytes()),
])
def test_uploads_that_are_not_the_apps_file_kinds_are_refused(ui_server, name, data):
    import httpx

    response = httpx.post(f"{ui_server.url}/gradio_api/upload", files={"files": (name, data)}, timeout=30)
    assert response.status_code == 415 and name in response.text, response.text


def test_uploads_of_the_apps_file_kinds_are_kept(ui_server):
    import httpx

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="WEBP")
    for name, data in (("shoe.PNG", png_bytes()), ("shoe.webp", buffer.getvalue()),
                       ("rows.csv", b"kind,id,title\nproduct,Z1,Beanie\n"), ("images.zip", b"PK\x05\x06" + b"\0" * 18)):
        response = httpx.post(f"{ui_server.url}/gradio_api/upload", files={"files": (name, data)}, timeout=30)
        assert response.status_code == 200, (name, response.text)


@pytest.mark.parametrize("image", ["/etc/passwd", "http://example.com/shoe.png", {"path": "/etc/passwd"},
                                   {"path": "http://example.com/shoe.png", "meta": {"_type": "gradio.FileData"}},
                                   {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}])
def test_chat_with_a_server_path_or_url_as_the_image_says_what_to_do(ui_server, image):
    stream = call_events(ui_server.url, "chat", ["What is this?", image, "hybrid", 3, ""])
    assert "event: error" in stream and "/gradio_api/upload" in stream and SECRET not in stream, stream
