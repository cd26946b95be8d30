"""Shared fixtures. Heavier fixtures (tiny models, sample catalog) are session-scoped and built once."""

import os
import re

# Nothing may be downloaded from a model hub, on a developer's machine or in CI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory):
    """Folder of a tiny random SmolVLM-architecture (Idefics3) model + processor; see tests/tiny_models.py."""
    from tiny_models import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"), "idefics3")


@pytest.fixture(scope="session")
def sample_catalog_settings(tmp_path_factory):
    """Settings whose table is the bundled sample catalog (data/), built once per session in a temp LanceDB folder."""
    from mmsupport.catalog import ensure_sample_catalog
    from mmsupport.config import SAMPLE_DATA_DIR, load_settings

    if not (SAMPLE_DATA_DIR / "products.csv").is_file():
        pytest.skip("the sample catalog is not generated yet: run python data/generate_sample.py")
    settings = load_settings(db_dir=tmp_path_factory.mktemp("sample_db"), table="catalog")
    ensure_sample_catalog(settings)
    return settings


def _answer_from_data(messages) -> str:
    """A scripted shop assistant's reply: the first two catalog items it was given, cited (or an apology)."""
    content = messages[-1]["content"]
    text = content if isinstance(content, str) else " ".join(part.get("text", "") for part in content)
    found = re.findall(r"id: (\S+) \| \w+ \| ([^|\n]+)", text)
    if not found:
        return "I could not find that in our catalog."
    (first_id, first_title), *rest = found
    also = f" You might also like [{rest[0][0]}]." if rest else ""
    return f"The best match is {first_title.strip()} [{first_id}].{also}"


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory, sample_catalog_settings):
    """The real app on 127.0.0.1 for UI, API, security and browser tests.

    Its own copy of the sample catalog (admin tests write to it), a scripted VLM that cites the first items it is
    given and streams at a model's pace, admin password ``ui_server.admin_password``, a 2 MB upload limit.
    Attributes: ``url``, ``settings``, ``root`` (a scratch folder), ``demo``, ``catalog()``.
    """
    import shutil
    import socket
    import time
    from types import SimpleNamespace

    from fakes import ScriptedVLM

    from mmsupport.config import load_settings
    from mmsupport.app import build_demo

    class PacedVLM(ScriptedVLM):
        def stream(self, messages, **kwargs):
            for piece in super().stream(messages, **kwargs):
                time.sleep(0.03)
                yield piece

    root = tmp_path_factory.mktemp("ui_server")
    shutil.copytree(sample_catalog_settings.db_dir, root / "db")
    settings = load_settings(db_dir=root / "db", feedback_path=root / "feedback.jsonl", admin_password="open-sesame",
                             max_upload_mb=2)
    demo = build_demo(settings, vlm=PacedVLM(default=_answer_from_data, description="a running shoe", chunk=4))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", settings=settings, root=root, demo=demo,
                          admin_password=settings.admin_password, catalog=demo.resources.wait_for_catalog)
    demo.close()
