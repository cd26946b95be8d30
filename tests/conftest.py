"""Shared fixtures. Heavier fixtures (tiny models, sample catalog) are session-scoped and built once."""

import os

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


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory, sample_catalog_settings):
    """The real app on 127.0.0.1 for UI, API, security and browser tests.

    Its own copy of the sample catalog (admin tests write to it), the scripted fake VLM, admin password
    ``ui_server.admin_password``, a 2 MB upload limit. Attributes: ``url``, ``settings``, ``root`` (a scratch
    folder), ``demo``, ``catalog()``.
    """
    import shutil
    import socket
    from types import SimpleNamespace

    from fakes import EchoVLM

    from mmsupport.config import load_settings
    from mmsupport.ui import build_demo

    root = tmp_path_factory.mktemp("ui_server")
    shutil.copytree(sample_catalog_settings.db_dir, root / "db")
    settings = load_settings(db_dir=root / "db", feedback_path=root / "feedback.jsonl", admin_password="open-sesame",
                             max_upload_mb=2)
    demo = build_demo(settings, vlm=EchoVLM())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", settings=settings, root=root, demo=demo,
                          admin_password=settings.admin_password, catalog=demo.resources.wait_for_catalog)
    demo.close()
