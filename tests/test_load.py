"""Load: 20 concurrent gradio_client sessions send photo + question turns to /chat for 2 minutes on 127.0.0.1.

Every turn must be answered without an error, and the server's memory must stay flat once warm (the queue bounds
the work in flight). The figures are written to tests/artifacts/ui_load.json; bench/ui_load.py runs the same load
and plots it. No timing is asserted: the machine is shared.
"""

import json

import pytest

from bench.ui_load import run_load
from mmsupport.config import REPO_DIR

pytestmark = pytest.mark.slow


def test_twenty_sessions_for_two_minutes(tmp_path):
    result = run_load(sessions=20, seconds=120, workdir=tmp_path)
    artifacts = REPO_DIR / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "ui_load.json").write_text(json.dumps(result, indent=1))
    assert result["errors"] == []
    assert result["turns"] >= 20 and result["answered"] == result["turns"]
    assert result["rss_mb_peak"] - result["rss_mb_warm"] < 300, "server memory kept growing under load"
