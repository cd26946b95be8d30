"""The OpenAI-compatible backend over real HTTP on 127.0.0.1.

A real ``transformers serve`` process serving a tiny local model folder (slow: it imports torch and loads the model),
and a small scripted HTTP server for what a real server does rarely on demand: tool calls, 5xx, 401, stalls.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mmsupport.config import load_settings
from mmsupport.errors import InvalidInput, ModelUnavailable
from mmsupport.vlm import OpenAIVLM, load_vlm
from tiny_models import build_tiny_vlm

SECRET = "sk-test-never-show-me"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _photo_message(text="What is this?"):
    return {"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (64, 64), "red")},
                                        {"type": "text", "text": text}]}


# --------------------------------------------------------------------------------------------------------------------
# A real `transformers serve`


@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    folder = build_tiny_vlm(tmp_path_factory.mktemp("served"), "qwen2_vl")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("serve-log") / "serve.log", "w+")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "transformers"), "serve", str(folder), "--host", "127.0.0.1",
         "--port", str(port), "--device", "cpu"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if server.poll() is not None:
                log.seek(0)
                pytest.fail(f"transformers serve exited:\n{log.read()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not come up in 120 s")
        yield f"{base}/v1", str(folder)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_transformers_serve_non_streaming_and_streaming(served_model):
    base_url, model = served_model
    vlm = load_vlm(load_settings({}, backend="openai", base_url=base_url, server_model=model, max_new_tokens=8))
    assert isinstance(vlm, OpenAIVLM)
    answer = vlm.generate([_photo_message()])
    assert isinstance(answer, str) and answer
    pieces = list(vlm.stream([_photo_message(), {"role": "assistant", "content": "A red square."},
                              {"role": "user", "content": "Anything else?"}]))
    assert len(pieces) >= 2
    assert vlm.describe(Image.new("RGB", (64, 64), "blue"))


@pytest.mark.slow
def test_transformers_serve_unknown_model_is_a_clear_error(served_model):
    base_url, _ = served_model
    vlm = OpenAIVLM(base_url, "/no/such/model", max_retries=0, max_new_tokens=4)
    with pytest.raises((ModelUnavailable, InvalidInput), match="model server at.*no/such/model"):
        vlm.generate([{"role": "user", "content": "hi"}])


# --------------------------------------------------------------------------------------------------------------------
# A scripted server: each request pops the next (status, body, delay) from the script


class Scripted:
    def __init__(self):
        self.script, self.requests = [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload, delay = outer.script.pop(0)
                time.sleep(delay)
                try:
                    self.respond(status, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def respond(self, status, payload):
                if isinstance(payload, list):  # server-sent events
                    self.send_response(status)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for event in payload:
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                else:
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def scripted():
    server = Scripted()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _reply(content=None, tool_calls=None):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def _chunk(**delta):
    return {"choices": [{"index": 0, "delta": delta}]}


@pytest.mark.slow
def test_request_shape_image_as_data_url_and_key_in_header_only(scripted):
    scripted.script.append((200, _reply("A red square."), 0))
    vlm = OpenAIVLM(scripted.url, "tiny", api_key=SECRET)
    assert vlm.generate([_photo_message()]) == "A red square."
    request = scripted.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    image_part = request["body"]["messages"][0]["content"][0]
    assert image_part["type"] == "image_url" and image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert SECRET not in repr(vlm)


@pytest.mark.slow
def test_structured_tool_calls_become_tool_call_text(scripted):
    call = {"id": "1", "type": "function", "function": {"name": "search_catalog", "arguments": '{"query": "red"}'}}
    scripted.script.append((200, _reply(None, [call]), 0))
    scripted.script.append((200, [
        _chunk(role="assistant", content="Let me look. "),
        _chunk(tool_calls=[{"index": 0, "id": "1", "function": {"name": "search_catalog", "arguments": '{"que'}}]),
        _chunk(tool_calls=[{"index": 0, "function": {"arguments": 'ry": "red"}'}}]),
    ], 0))
    vlm = OpenAIVLM(scripted.url, "tiny")
    tool = {"name": "search_catalog", "parameters": {"type": "object"}}
    expected = '<tool_call>{"name": "search_catalog", "arguments": {"query": "red"}}</tool_call>'
    assert vlm.generate([{"role": "user", "content": "red shoes?"}], tools=[tool]) == expected
    assert "".join(vlm.stream([{"role": "user", "content": "red shoes?"}], tools=[tool])) == "Let me look. " + expected
    assert scripted.requests[0]["body"]["tools"] == [{"type": "function", "function": tool}]


@pytest.mark.slow
def test_server_errors_are_retried_then_reported(scripted):
    scripted.script += [(503, {"error": {"message": "warming up"}}, 0), (200, _reply("ok"), 0)]
    assert OpenAIVLM(scripted.url, "tiny", max_retries=2).generate([{"role": "user", "content": "hi"}]) == "ok"
    assert len(scripted.requests) == 2

    scripted.script += [(500, {"error": {"message": "CUDA exploded"}}, 0)] * 2
    with pytest.raises(ModelUnavailable, match="CUDA exploded.*after 2 attempts"):
        list(OpenAIVLM(scripted.url, "tiny", max_retries=1).stream([{"role": "user", "content": "hi"}]))


@pytest.mark.slow
def test_client_errors_are_not_retried_and_never_show_the_key(scripted):
    scripted.script += [(401, {"error": {"message": "bad key"}}, 0), (400, {"error": "image too large"}, 0)]
    vlm = OpenAIVLM(scripted.url, "tiny", api_key=SECRET, max_retries=3)
    with pytest.raises(ModelUnavailable, match="MMSUPPORT_API_KEY") as refused:
        vlm.generate([{"role": "user", "content": "hi"}])
    assert SECRET not in str(refused.value)
    with pytest.raises(InvalidInput, match="image too large"):
        vlm.generate([{"role": "user", "content": "hi"}])
    assert len(scripted.requests) == 2


def test_server_down():
    vlm = OpenAIVLM(f"http://127.0.0.1:{_free_port()}/v1", "tiny", max_retries=1)
    with pytest.raises(ModelUnavailable, match="Cannot reach the model server.*MMSUPPORT_BASE_URL"):
        vlm.generate([{"role": "user", "content": "hi"}])


@pytest.mark.slow
def test_timeout(scripted):
    scripted.script.append((200, _reply("too late"), 3))
    vlm = OpenAIVLM(scripted.url, "tiny", timeout=0.5, max_retries=0)
    with pytest.raises(ModelUnavailable, match="did not answer within 0.5 s"):
        vlm.generate([{"role": "user", "content": "hi"}])


# --------------------------------------------------------------------------------------------------------------------
# Batch work keeps several requests in flight


class Echo:
    """Answers each request with its last user text after ``delay`` seconds, counting requests in flight; the first
    ``busy`` requests get a 429 with ``Retry-After: 0.2``."""

    def __init__(self, delay: float = 0.2, busy: int = 0):
        self.in_flight = self.most_in_flight = 0
        self.busy, self.refused = busy, 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = " ".join(part["text"] for part in body["messages"][-1]["content"] if part["type"] == "text")
                with lock:
                    refuse = outer.refused < outer.busy
                    outer.refused += refuse
                    outer.in_flight += 1
                    outer.most_in_flight = max(outer.most_in_flight, outer.in_flight)
                time.sleep(0 if refuse else delay * (1 + len(text) % 3))
                with lock:
                    outer.in_flight -= 1
                status, payload = (429, {"error": "busy"}) if refuse else (200, _reply(text))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if refuse:
                    self.send_header("Retry-After", "0.2")
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", [1, 4])
def test_generate_batch_keeps_up_to_concurrency_requests_in_flight_and_the_order(concurrency):
    server = Echo()
    try:
        vlm = OpenAIVLM(server.url, "tiny", concurrency=concurrency)
        questions = [f"question {n}" + "?" * n for n in range(10)]  # different lengths: different delays
        replies = vlm.generate_batch([[{"role": "user", "content": q}] for q in questions])
    finally:
        server.close()
    assert replies == questions
    assert server.most_in_flight == concurrency


@pytest.mark.slow
def test_a_busy_server_is_retried_after_the_wait_it_asks_for():
    server = Echo(delay=0.01, busy=3)
    try:
        vlm = OpenAIVLM(server.url, "tiny", concurrency=3, max_retries=1)
        replies = vlm.generate_batch([[{"role": "user", "content": f"q{n}"}] for n in range(3)])
    finally:
        server.close()
    assert replies == ["q0", "q1", "q2"] and server.refused == 3


@pytest.mark.parametrize("header, wait", [("0.2", 0.2), ("7", 7.0), ("86400", 30.0), ("-3", 0.0),
                                          ("Wed, 21 Oct 2026 07:28:00 GMT", None), (None, None)])
def test_retry_after_is_read_and_capped(header, wait):
    from mmsupport.vlm import _retry_after

    headers = {"Retry-After": header} if header else {}
    assert _retry_after(httpx.Response(429, headers=headers)) == wait


def test_concurrency_must_be_positive():
    with pytest.raises(InvalidInput, match="MMSUPPORT_SERVER_CONCURRENCY"):
        OpenAIVLM("http://127.0.0.1:1/v1", "tiny", concurrency=0)


@pytest.mark.slow
def test_labeling_through_transformers_serve_at_concurrency_4_keeps_order_and_resumes(served_model, tmp_path):
    from mmsupport.labeling import label_images, read_labels

    base_url, model = served_model
    paths = []
    for n, colour in enumerate(["red", "green", "blue", "yellow", "purple", "orange"]):
        paths.append(tmp_path / f"{n}.png")
        Image.new("RGB", (48, 48), colour).save(paths[-1])
    vlm = load_vlm(load_settings({}, backend="openai", base_url=base_url, server_model=model, server_concurrency=4))
    assert vlm.concurrency == 4
    out = tmp_path / "labels.jsonl"
    run = label_images(vlm, paths[:4], out, batch_size=4, max_attempts=1, max_new_tokens=8, progress=False)
    assert run.labelled + run.failed == 4
    again = label_images(vlm, paths, out, batch_size=4, max_attempts=1, max_new_tokens=8, progress=False)
    assert again.skipped == 4 and again.labelled + again.failed == 2
    records = read_labels(out)
    assert [record["image"] for record in records] == [str(path.resolve()) for path in paths]
    assert all("attempts" in record and record["model"] == model for record in records)
