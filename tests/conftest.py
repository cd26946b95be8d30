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
