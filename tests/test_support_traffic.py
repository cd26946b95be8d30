"""bench/support_traffic.py's shoppers against the real app on 127.0.0.1 with two variants and an SQLite store: every
session and turn they made is in the store, and the report built from it counts the same."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from bench.support_traffic import VARIANTS_YAML, drive
from mmsupport.report import build_report
from mmsupport.store import ConversationStore


@pytest.mark.slow  # starts the app
def test_the_shoppers_sessions_and_turns_are_all_in_the_report(tmp_path, sample_catalog_settings):
    from conftest import _answer_from_data
    from fakes import ScriptedVLM
    from gradio_client import Client

    from mmsupport.app import build_demo
    from mmsupport.config import load_settings

    shutil.copytree(sample_catalog_settings.db_dir, tmp_path / "db")
    (tmp_path / "variants.yaml").write_text(VARIANTS_YAML)
    url = f"sqlite:///{tmp_path}/conversations.db"
    settings = load_settings(db_dir=tmp_path / "db", database_url=url,
                             variants=tmp_path / "variants.yaml")
    demo = build_demo(settings, vlm=ScriptedVLM(default=_answer_from_data, description="a running shoe"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        app = f"http://127.0.0.1:{port}"
        endpoints = Client(app, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
        names = {p["parameter_name"] for p in endpoints["/chat"]["parameters"]}
        if "session_id" not in names or "/feedback" not in endpoints:
            pytest.skip("the app has no /chat session_id or /feedback yet (issue 13's sessions part)")
        demo.resources.wait_for_catalog()
        traffic = drive(app, sessions=10, workers=2, seed=3)
    finally:
        demo.close()
    assert traffic["errors"] == []
    assert sum(traffic["sessions_per_variant"].values()) == 10
    store = ConversationStore(url)
    deadline = time.monotonic() + 60
    while True:  # the app writes its log in the background: wait until the last turns have landed
        report = build_report(store.engine)
        turns = sum(figures["turns"] for figures in report["variants"].values())
        if turns >= traffic["calls"]["/chat"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {name: figures["sessions"] for name, figures in report["variants"].items()} == \
        traffic["sessions_per_variant"]
    assert sum(figures["turns"] for figures in report["variants"].values()) == traffic["calls"]["/chat"]
