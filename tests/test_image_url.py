"""Photos by URL (mmsupport.image_url): only http(s) and data: URLs, no private addresses unless allowed, a size limit.

The refusals need no network (IP literals and ``localhost`` resolve locally); fetching from a real server on
127.0.0.1 is ``slow`` (it listens on a socket).
"""

import base64
import http.server
import io
import threading

import pytest
from PIL import Image

from mmsupport.errors import InvalidInput
from mmsupport.image_url import MAX_REDIRECTS, fetch_image_bytes


def _png(size=(32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "/etc/passwd",
                                 "example.com/a.png", ""])
def test_only_http_and_https_urls_are_fetched(url):
    with pytest.raises(InvalidInput, match="http:// or https://"):
        fetch_image_bytes(url, max_bytes=2**20)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.10", "172.16.5.5",
                                  "169.254.169.254", "100.64.0.1", "0.0.0.0", "[::1]", "[::ffff:127.0.0.1]",
                                  "[fd00::1]", "[fe80::1]"])
def test_private_loopback_and_link_local_hosts_are_refused_before_any_request(host):
    with pytest.raises(InvalidInput, match="private, loopback or reserved") as refused:
        fetch_image_bytes(f"http://{host}:9/photo.png", max_bytes=2**20)
    assert "upload" in str(refused.value)


def test_data_urls_carry_the_image_and_keep_the_size_limit():
    png = _png()
    assert fetch_image_bytes("data:image/png;base64," + base64.b64encode(png).decode(), max_bytes=2**20) == png
    with pytest.raises(InvalidInput, match="over the"):
        fetch_image_bytes("data:image/png;base64," + base64.b64encode(png).decode(), max_bytes=len(png) // 2)
    with pytest.raises(InvalidInput, match="base64 image"):
        fetch_image_bytes("data:text/html;base64,PGgxPg==", max_bytes=2**20)
    with pytest.raises(InvalidInput, match="not valid base64"):
        fetch_image_bytes("data:image/png;base64,@@@", max_bytes=2**20)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers each path from ``server.routes``: ``{path: (status, headers, body)}``."""

    def do_GET(self):
        status, headers, body = self.server.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.path != "/unsized.png":  # that one is read until the server closes the connection
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def image_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.routes = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_a_private_host_is_fetched_only_when_allowed_and_within_the_limit(image_server):
    server, url = image_server
    png = _png()
    server.routes = {"/a.png": (200, {"Content-Type": "image/png"}, png),
                       "/big.png": (200, {"Content-Type": "image/png"}, png * 40),
                       "/unsized.png": (200, {"Content-Type": "image/png"}, png * 40),
                       "/moved": (302, {"Location": "/a.png"}, b""),
                       "/loop": (302, {"Location": "/loop"}, b"")}
    with pytest.raises(InvalidInput, match="private, loopback"):
        fetch_image_bytes(url + "/a.png", max_bytes=2**20)
    assert fetch_image_bytes(url + "/a.png", max_bytes=2**20, allow_private=True) == png
    assert fetch_image_bytes(url + "/moved", max_bytes=2**20, allow_private=True) == png
    with pytest.raises(InvalidInput, match="over the"):
        fetch_image_bytes(url + "/big.png", max_bytes=len(png) * 10, allow_private=True)
    with pytest.raises(InvalidInput, match="over the"):
        fetch_image_bytes(url + "/unsized.png", max_bytes=len(png) * 10, allow_private=True)
    with pytest.raises(InvalidInput, match=f"more than {MAX_REDIRECTS} times"):
        fetch_image_bytes(url + "/loop", max_bytes=2**20, allow_private=True)
    with pytest.raises(InvalidInput, match="HTTP 404"):
        fetch_image_bytes(url + "/missing.png", max_bytes=2**20, allow_private=True)
