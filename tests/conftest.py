"""Shared fixtures. Heavier fixtures (tiny models, sample catalog) are session-scoped and built once."""

import os

# Nothing may be downloaded from a model hub, on a developer's machine or in CI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
