"""The VLM on llama.cpp (GGUF) through llama-cpp-python: a fast CPU runtime behind the :class:`~mmsupport.vlm.VLM`
interface, and the per-host choice between it and transformers.

``MMSUPPORT_RUNTIME=llamacpp`` runs ``settings.model`` as GGUF: a ``.gguf`` file (its ``mmproj*.gguf`` beside it), a
folder or Hub repo holding GGUF files (e.g. ``ggml-org/SmolVLM-256M-Instruct-GGUF``), or a transformers folder or Hub
id, converted once by :func:`mmsupport.gguf.convert` (a LoRA adapter from ``finetune`` must be merged into its model
first). ``auto`` uses llama.cpp on CPU when it is installed, the model converts, and a probe in a subprocess runs it
without crashing; the probe's verdict is cached per CPU and llama.cpp version (:func:`choose_runtime`). Anything else
falls back to transformers with the reason in the log and :attr:`~mmsupport.vlm.VLM.runtime_note`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from mmsupport.config import Settings
from mmsupport.errors import InvalidInput, ModelUnavailable
from mmsupport.gguf import convert, llama_cpp_version
from mmsupport.host import cpu_signature
from mmsupport.images import load_image, to_data_url
from mmsupport.llamacpp_vision import PrefixCache, TorchVision, eval_with_embeddings, fastest_vision
from mmsupport.messages import Message, image_source, is_image
from mmsupport.messages import parts as content_parts
from mmsupport.vlm import VLM, hub_reachable

logger = logging.getLogger(__name__)

#: Seconds the probe subprocess may take (model load + one image + a few tokens) before it counts as failed.
PROBE_TIMEOUT_S = 300
PROBE_TOKENS = 16
#: The flash attention probe: a prompt of this many tokens, then this many decode steps, each way.
FLASH_PROBE_PROMPT, FLASH_PROBE_STEPS = 512, 32
#: Held while a model loads with changed parameters (:func:`_model_parameters` swaps a module-global function).
_loading = threading.Lock()


def build_features() -> str:
    """The CPU kernels the installed llama.cpp build runs (``AVX2 = 1 | AVX512_BF16 = 1 | …``)."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode().strip()


def kernels_signature() -> str:
    """Which kernels run here, for verdicts cached per host: the CPU's signature with llama.cpp's version and the
    kernels of its build (a portable and a native build on one CPU differ)."""
    return cpu_signature(llama_cpp_version(), build_features())


def build_tuning(features: str | None = None) -> tuple[str, bool]:
    """``(the text weights' GGUF type, flash attention's usual setting)`` for the kernels of the llama.cpp build
    (``features``, default :func:`build_features`; :func:`flash_attention` times the other setting too). Where it runs
    AVX512-BF16 dot products and has no AMX kernels (AMD Zen 5), bf16 weights with flash attention: the prefill takes
    half the time of q8_0's for 8% less decode speed. Elsewhere q8_0 without flash attention: on an Intel AMX host
    the build's bf16 decoded answers at 23 tokens/s against q8_0's 47, and a photo turn took 0.68× of transformers'
    time against 0.52×. Measured in the README's "Models" section."""
    features = build_features() if features is None else features
    bf16 = "AVX512_BF16 = 1" in features and "AMX_INT8 = 1" not in features
    return ("bf16", True) if bf16 else ("q8_0", False)


def model_overrides(features: str | None = None) -> dict[str, bool]:
    """Fields of llama.cpp's model parameters to change from their defaults for the build (``features``, default
    :func:`build_features`). A build for an AMX CPU routes q8_0 and other quantized weights to its AMX int8 kernels,
    which in llama-cpp-python 0.3.36 crash at the first matrix product: the compiler drops the stores that fill the
    tile configuration on the stack, so ``ldtilecfg`` loads garbage (SIGSEGV, ggml-org/llama.cpp#20824; another VM
    gave SIGILL). There the weights stay off the extra buffer types those kernels sit behind."""
    features = build_features() if features is None else features
    return {"use_extra_bufts": False} if "AMX_INT8 = 1" in features else {}


@contextlib.contextmanager
def _model_parameters(overrides: dict[str, bool]) -> Iterator[None]:
    """While a ``Llama`` loads in this block, its model parameters have ``overrides`` (its constructor takes no
    argument for them: it starts from ``llama_model_default_params``)."""
    import llama_cpp.llama_cpp as bindings

    defaults = bindings.llama_model_default_params

    def changed():
        params = defaults()
        for field, value in overrides.items():
            setattr(params, field, value)
        return params

    with _loading:
        bindings.llama_model_default_params = changed
        try:
            yield
        finally:
            bindings.llama_model_default_params = defaults


def new_llama(text_gguf: str | Path, **options):
    """llama-cpp-python's ``Llama`` for ``text_gguf`` on CPU, quiet, with the build's :func:`model_overrides`;
    ``options`` are ``Llama``'s own (``n_ctx``, ``n_threads``, ``flash_attn``, ``chat_handler``, …)."""
    from llama_cpp import Llama

    with _model_parameters(model_overrides()):
        return Llama(model_path=str(text_gguf), n_gpu_layers=0, verbose=False, **options)


def flash_attention(text_gguf: str | Path, cache_dir: str | Path) -> bool:
    """Whether llama.cpp runs ``text_gguf`` faster with flash attention on this CPU and build: off and on timed over
    :data:`FLASH_PROBE_PROMPT` prompt tokens and :data:`FLASH_PROBE_STEPS` decode steps (an answer's shape), once
    per CPU, build and model (:func:`mmsupport.host.fastest`), the build's usual choice (:func:`build_tuning`) kept
    unless the other is clearly faster. With the same AVX2 kernels it slowed one host's decode by a third and took a
    fifth off another's photo turn (README "Models")."""
    from mmsupport.host import fastest

    loaded = {}

    def answer(on: bool) -> None:
        if on not in loaded:
            loaded[on] = new_llama(text_gguf, n_ctx=2 * FLASH_PROBE_PROMPT, n_threads=cpu_threads(), flash_attn=on)
        llama = loaded[on]
        llama.reset()
        llama.eval([i % llama.n_vocab() for i in range(1000, 1000 + FLASH_PROBE_PROMPT)])
        for _ in range(FLASH_PROBE_STEPS):
            llama.eval([1000 % llama.n_vocab()])

    usual = build_tuning()[1]
    path = Path(text_gguf)
    choice = f"llama.cpp flash attention for {path.parent.name}/{path.name}, build {kernels_signature()}"
    try:
        chosen = fastest(choice, {"on" if on else "off": functools.partial(answer, on) for on in (usual, not usual)},
                         cache_dir)
    finally:
        for llama in loaded.values():
            llama.close()
    return chosen == "on"


def cpu_threads() -> int:
    """The cores this process may run on (llama.cpp's own default is half of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LlamaCppVLM(VLM):
    """A GGUF text model + ``mmproj`` vision projector on llama.cpp (``Llama`` + ``MTMDChatHandler``).

    Greedy decoding like the transformers backend; images go in as JPEG data URLs; tool calls come back as the
    ``<tool_call>`` text the model writes. ``last_stats`` holds ``ttft_s``, ``decode_tokens`` and ``decode_tok_s`` of
    the latest generation. With a PyTorch ``vision`` encoder, the beginning prompts share (the system prompt and
    tools) is evaluated once (:class:`~mmsupport.llamacpp_vision.PrefixCache`).
    """

    runtime = "llamacpp"

    def __init__(self, text_gguf: str | Path, mmproj: str | Path | None, *, vision: TorchVision | None = None,
                 name: str | None = None, max_new_tokens: int = 256, image_max_side: int = 512,
                 context_tokens: int = 4096, threads: int | None = None, flash_attn: bool = False):
        from llama_cpp.llama_chat_format import MTMDChatHandler

        self.name = name or str(text_gguf)
        self.max_new_tokens = max_new_tokens
        self.image_max_side = image_max_side
        self.vision = vision
        self.prefixes = PrefixCache()
        self._lock = threading.Lock()
        handler = (MTMDChatHandler(clip_model_path=str(mmproj), verbose=False, use_gpu=False)
                   if mmproj and vision is None else None)
        try:
            self.llama = new_llama(text_gguf, chat_handler=handler, n_ctx=context_tokens,
                                   n_threads=threads or cpu_threads(), flash_attn=flash_attn)
        except (ValueError, RuntimeError) as error:
            raise ModelUnavailable(f"llama.cpp could not load {text_gguf}: {error}.",
                                   hint="Check the GGUF file, or set MMSUPPORT_RUNTIME=transformers.") from None
        # freed with this object or at exit while the interpreter is whole: llama-cpp-python's own finaliser fails
        # (a traceback) when a model outlives its module's globals, as a cached one does
        weakref.finalize(self, self.llama.close)
        self.sees_images = handler is not None or vision is not None
        self.supports_tools = (vision.supports_tools if vision is not None
                               else "tools" in (self.llama.metadata.get("tokenizer.chat_template") or ""))

    def _messages(self, messages: list[Message]) -> list[dict]:
        converted = []
        for message in messages:
            parts = []
            for part in content_parts(message):
                if is_image(part):
                    if not self.sees_images:
                        raise InvalidInput("This GGUF model has no vision projector (mmproj), so it cannot see images.",
                                           hint="Put the model's mmproj*.gguf beside it.")
                    image = load_image(image_source(part), max_side=self.image_max_side)
                    parts.append({"type": "image_url", "image_url": {"url": to_data_url(image)}})
                else:
                    parts.append(part)
            converted.append({**message, "content": parts})
        return converted

    def _start_with_embeddings(self, ids: list[int], rows, greedy: dict):
        eval_with_embeddings(self.llama, ids, self.vision.image_token_id, rows, self.prefixes)
        return self.llama.create_completion(ids, **greedy)

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               tools: list[dict] | None = None) -> Iterator[str]:
        """Yield text as it is generated; closing the iterator stops generation at the next token."""
        tools = [tool if "function" in tool else {"type": "function", "function": tool} for tool in tools or []]
        greedy = dict(stream=True, max_tokens=max_new_tokens or self.max_new_tokens, temperature=0.0, top_k=1,
                      repeat_penalty=1.0)
        with self._lock:
            started = time.perf_counter()
            first = None
            if self.vision is not None:  # one vision pass in PyTorch, its embeddings into llama.cpp's context
                ids, rows = self.vision.prompt(messages, tools or None)
                chunks = _failing_as_unavailable(self._start_with_embeddings, ids, rows, greedy)
            else:
                converted = self._messages(messages)
                chunks = _failing_as_unavailable(self.llama.create_chat_completion, converted, tools=tools or None,
                                                 **greedy)
            try:
                for chunk in chunks:
                    if first is None:
                        first, prompt_tokens = time.perf_counter(), self.llama.n_tokens
                    choice = chunk["choices"][0]
                    text = choice["text"] if "text" in choice else choice["delta"].get("content")
                    if text:
                        yield text
            finally:
                chunks.close()
                ended = time.perf_counter()
                decoded = self.llama.n_tokens - prompt_tokens + 1 if first is not None else 0
                self.last_stats = {"ttft_s": round((first or ended) - started, 4), "decode_tokens": decoded,
                                   "decode_tok_s": round((decoded - 1) / (ended - first), 2)
                                   if first is not None and decoded > 1 and ended > first else None}


def _failing_as_unavailable(start, *args, **kwargs):
    """The chunks of ``start(*args, **kwargs)``, with llama.cpp's failures (``llama_decode returned -1``, a prompt
    longer than the context) as :class:`ModelUnavailable`."""
    try:
        yield from start(*args, **kwargs)
    except (RuntimeError, ValueError) as error:
        raise ModelUnavailable(f"llama.cpp failed while answering: {error}.",
                               hint="Set MMSUPPORT_RUNTIME=transformers.") from None


def gguf_files(model: str) -> tuple[Path, Path | None] | None:
    """``(text GGUF, mmproj GGUF or None)`` when ``model`` is a GGUF file, or a folder / cached Hub repo of GGUF files;
    ``None`` when it is a transformers model."""
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelUnavailable(f"The GGUF file {path} does not exist.", hint="Check MMSUPPORT_MODEL.")
        folder, texts = path.parent, [path]
    else:
        folder = path if path.is_dir() else _hub_folder(model)
        if folder is None or (folder / "config.json").is_file():
            return None
        texts = sorted(p for p in folder.glob("*.gguf") if not p.name.startswith("mmproj"))
        if not texts:
            return None
        # the type this build runs fastest, then the best-kept weights llama.cpp decodes fast: q8_0, f16, the rest
        order = dict.fromkeys((build_tuning()[0], "q8_0", "f16"))
        texts.sort(key=lambda p: next((i for i, tag in enumerate(order) if tag in p.name.lower()), 9))
    projectors = sorted(folder.glob("mmproj*.gguf"), key=lambda p: "f16" not in p.name.lower())
    return texts[0], projectors[0] if projectors else None


def _hub_folder(model: str) -> Path | None:
    """The local snapshot of Hub repo ``model`` (downloaded when the Hub can be reached), or ``None``."""
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        return None
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=not hub_reachable()))
    except Exception:  # noqa: BLE001 - not on the Hub or not cached: the transformers path says why
        return None


def _folder(settings: Settings) -> Path:
    """The settings' transformers model as a local folder (a Hub id from the cache, downloaded when reachable)."""
    folder = Path(settings.model).expanduser()
    folder = folder if folder.is_dir() else _hub_folder(settings.model)
    if folder is None:
        raise ModelUnavailable(f"The model {settings.model!r} is neither a local folder nor in the Hub cache.",
                               hint="Set MMSUPPORT_MODEL to a model folder or a GGUF file.")
    return folder


def model_files(settings: Settings) -> tuple[Path, Path | None]:
    """``(text GGUF, mmproj GGUF or None)`` for the settings' model, converting a transformers model on first use."""
    llama_cpp_version()
    if settings.adapter:
        raise ModelUnavailable("The llama.cpp runtime runs merged models only, not a separate LoRA adapter.",
                               hint="Merge the adapter into its model (finetune's merged folder) and use that "
                                    "folder as MMSUPPORT_MODEL, or set MMSUPPORT_RUNTIME=transformers.")
    return gguf_files(settings.model) or convert(_folder(settings), settings, text_type=build_tuning()[0])


def load_llamacpp(settings: Settings, files: tuple[Path, Path | None] | None = None) -> LlamaCppVLM:
    """The settings' model on llama.cpp (``files`` from :func:`model_files` when not given). A transformers model's
    images go through its own vision encoder in PyTorch (:mod:`mmsupport.llamacpp_vision`) unless
    ``settings.llamacpp_vision`` is ``mtmd`` (llama.cpp's projector); with ``quantization=auto`` in the precision
    fastest on this CPU (:func:`~mmsupport.llamacpp_vision.fastest_vision`)."""
    files = files or model_files(settings)
    vision = None
    if settings.llamacpp_vision == "torch" and gguf_files(settings.model) is None:
        folder, side = _folder(settings), settings.image_max_side
        if settings.quantization == "auto":
            vision = fastest_vision(folder, image_max_side=side, cache_dir=settings.cache_dir)
        else:
            precision = "int8-dynamic" if settings.quantization == "int8-dynamic" else "float32"
            vision = TorchVision(folder, precision=precision, image_max_side=side)
    return LlamaCppVLM(*files, vision=vision, name=settings.model, max_new_tokens=settings.max_new_tokens,
                       image_max_side=settings.image_max_side, context_tokens=settings.context_tokens,
                       flash_attn=flash_attention(files[0], settings.cache_dir))


# --------------------------------------------------------------------------------------------------------------------
# Choosing the runtime per host


def probe(text_gguf: Path, mmproj: Path | None, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """Run the model on llama.cpp in a subprocess (a few tokens, after one small image through ``mmproj`` if given):
    ``{"ok": True, "decode_tok_s": ...}``, or ``{"ok": False, "reason": ...}`` when it crashes (e.g. SIGILL), fails
    or hangs."""
    command = [sys.executable, "-m", "mmsupport.llamacpp", str(text_gguf), str(mmproj or "")]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"the llama.cpp probe did not finish within {timeout:g} s"}
    if done.returncode:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return {"ok": False, "reason": f"the llama.cpp probe crashed ({how}): {lines[-1] if lines else ''}".strip()}
    return {"ok": True, **json.loads(done.stdout.strip().splitlines()[-1])}


def choose_runtime(settings: Settings, device: str) -> tuple[VLM | None, str]:
    """For ``runtime=auto``: ``(the llama.cpp VLM, why)`` when llama.cpp should run the model on this host, else
    ``(None, why not)``. The probe's verdict is cached in ``cache_dir/runtime-probe.json`` per CPU signature."""
    if device != "cpu":
        return None, f"transformers on {device}"
    try:
        signature = kernels_signature()
        record = Path(settings.cache_dir) / "runtime-probe.json"
        verdicts = json.loads(record.read_text()) if record.is_file() else {}
        verdict = verdicts.get(signature)
        if verdict is not None and not verdict["ok"]:
            return None, f"transformers: {verdict['reason']} (cached for this CPU)"
        files = model_files(settings)
        if verdict is None:  # llama.cpp's projector is probed only when it is what will encode the images
            mtmd = settings.llamacpp_vision == "mtmd" or gguf_files(settings.model) is not None
            verdict = probe(files[0], files[1] if mtmd else None)
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps({**verdicts, signature: verdict}, indent=1))
            if not verdict["ok"]:
                return None, f"transformers: {verdict['reason']}"
        return load_llamacpp(settings, files), f"llama.cpp ({verdict.get('decode_tok_s')} tokens/s in its probe)"
    except (ModelUnavailable, InvalidInput) as error:
        return None, f"transformers: {error}"


def _probe_main(text_gguf: str, mmproj: str) -> None:
    """The probe's subprocess: one image (when there is a projector) and :data:`PROBE_TOKENS` tokens."""
    from PIL import Image

    vlm = LlamaCppVLM(text_gguf, mmproj or None, max_new_tokens=PROBE_TOKENS, context_tokens=2048,
                      flash_attn=build_tuning()[1])
    content = [{"type": "image", "image": Image.new("RGB", (64, 48), (40, 90, 200))}] if mmproj else []
    vlm.generate([{"role": "user", "content": [*content, {"type": "text", "text": "What is this?"}]}])
    print(json.dumps({"decode_tok_s": vlm.last_stats["decode_tok_s"], "ttft_s": vlm.last_stats["ttft_s"]}))


if __name__ == "__main__":
    _probe_main(*sys.argv[1:3])
