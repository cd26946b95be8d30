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
    for payload in payloads(repo_file) + [str(ui_server.settings.feedback_path.resolve()),
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
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(ui_server.url, verbose=False)
    bad = Path(ui_server.root) / "invoice.pdf"
    bad.write_bytes(b"%PDF-1.4 not an image")
    with pytest.raises(AppError, match="invoice.pdf: The file is not an image"):
        client.predict("What is this?", handle_file(str(bad)), "hybrid", 3, "", api_name="/chat")
    disguised = Path(ui_server.root) / "disguised.png"
    disguised.write_bytes(b"<html><script>alert(1)</script></html>")
    with pytest.raises(AppError, match="disguised.png"):
        client.predict("What is this?", handle_file(str(disguised)), "hybrid", 3, "", api_name="/chat")
    with pytest.raises(AppError, match="empty"):
        client.predict("   ", None, "hybrid", 3, "", api_name="/chat")
    result = client.predict("running shoes", None, "hybrid", 3, "", api_name="/chat")
    assert result["answer"]


def test_the_app_keeps_serving_after_bad_input(ui_server):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(ui_server.url, verbose=False)
    root = Path(ui_server.root)
    (root / "empty.png").write_bytes(b"")
    (root / "truncated.png").write_bytes(png_bytes((256, 256))[:300])
    bomb = root / "bomb.png"  # tiny file, 40000 x 40000 pixels once decoded
    Image.new("1", (40000, 40000)).save(bomb, optimize=True)
    for name in ("empty.png", "truncated.png", "bomb.png"):
        with pytest.raises(AppError, match=name):
            client.predict("What is this?", handle_file(str(root / name)), "hybrid", 3, "", api_name="/chat")
    with pytest.raises(AppError, match="over the 4000 limit"):  # refused as in the browser, not cut silently
        client.predict("boots " * 5000, None, "hybrid", 3, "", api_name="/chat")
    reply = client.predict("waterproof hiking boots", None, "hybrid", 3, "", api_name="/chat")
    assert reply["answer"] and reply["citations"]


def test_api_callers_cannot_point_an_upload_at_a_server_file(ui_server):
    import httpx

    for path in ("/etc/passwd", str(ui_server.settings.feedback_path.resolve()), "../../../../etc/passwd"):
        payload = {"data": ["What is this?", {"path": path, "meta": {"_type": "gradio.FileData"}}, "hybrid", 3, ""]}
        event = httpx.post(f"{ui_server.url}/gradio_api/call/chat", json=payload, timeout=30)
        if event.status_code != 200:
            assert 400 <= event.status_code < 500
            continue
        stream = httpx.get(f"{ui_server.url}/gradio_api/call/chat/{event.json()['event_id']}", timeout=60).text
        assert "event: error" in stream and SECRET not in stream, stream
