"""`python app.py` on a fresh machine: the page comes up while the catalog is built and the model loads behind it."""

import os
import socket
import subprocess
import sys
import time

import pytest

from mmsupport.config import REPO_DIR

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_python_app_py_serves_the_sample_catalog_and_answers(tmp_path, tiny_vlm_dir):
    import httpx
    from gradio_client import Client, handle_file

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "MMSUPPORT_DB_DIR": str(tmp_path / "db"),
           "MMSUPPORT_MODEL": str(tiny_vlm_dir), "MMSUPPORT_MAX_NEW_TOKENS": "16"}
    log = open(tmp_path / "app.log", "wb")
    app = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert app.poll() is None, (tmp_path / "app.log").read_text()
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the page never came up"
                time.sleep(0.5)
        client = Client(url, verbose=False)
        photo = REPO_DIR / "data" / "images" / "customer" / "watch_red_light.png"
        reply = client.predict("My watch button is flashing red, what does that mean?", handle_file(str(photo)),
                               "hybrid", 3, "", api_name="/chat")  # waits until the sample catalog is built
        assert reply["items"] and reply["answer"].strip()
        assert len(client.predict("boots", "fts", 5, "shoes", api_name="/search")) == 5
        assert (tmp_path / "db" / "catalog.lance").is_dir()
    finally:
        app.terminate()
        app.wait(30)
