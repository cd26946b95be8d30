"""Load: 20 concurrent HTTP sessions send photo + question turns to /chat for 2 minutes on 127.0.0.1, and API
clients opening a session per call.

Every turn must be answered without an error, and the server's memory must stay flat once warm (the queue bounds
the work in flight, ``max_sessions`` the sessions kept). The figures are written to tests/artifacts/ui_load.json;
bench/ui_load.py runs the same load and plots it. No timing is asserted: the machine is shared.
"""

import asyncio
import json
import socket

import pytest

from bench.ui_load import HttpClient, run_load
from mmsupport.config import REPO_DIR, load_settings

pytestmark = pytest.mark.slow


def test_twenty_sessions_for_two_minutes(tmp_path):
    # ~2,000 API calls, each opening a session: with 300 kept, memory must level off well within the two minutes
    result = run_load(sessions=20, seconds=120, workdir=tmp_path, max_sessions=300)
    artifacts = REPO_DIR / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "ui_load.json").write_text(json.dumps(result, indent=1))
    assert result["errors"] == []
    assert result["turns"] >= 20 and result["answered"] == result["turns"]
    assert result["rss_mb_peak"] - result["rss_mb_warm"] < 300, "server memory kept growing under load"


def test_api_calls_each_opening_a_session_keep_at_most_max_sessions(sample_catalog_settings):
    from fakes import ScriptedVLM

    from mmsupport.app import build_demo

    demo = build_demo(load_settings(db_dir=sample_catalog_settings.db_dir, max_sessions=10), vlm=ScriptedVLM())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)

    async def searches(n: int) -> list:
        client = HttpClient(f"http://127.0.0.1:{port}")
        try:
            return [await client.search("waterproof boots") for _ in range(n)]
        finally:
            await client.close()
    try:
        found = asyncio.run(searches(25))
        assert all(found)  # every call was answered
        assert len(demo.state_holder.session_data) == 10  # 25 sessions opened, the 10 most recent kept
    finally:
        demo.close()
