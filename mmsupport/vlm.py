"""Vision-language models: one small interface, swappable backends.

Messages use the Hugging Face / OpenAI chat shape::

    {"role": "user", "content": [{"type": "image", "image": <PIL.Image>}, {"type": "text", "text": "What is this?"}]}

``content`` may also be a plain string; an image part's ``image`` may be a PIL image, a path or raw bytes (it goes
through :func:`mmsupport.images.load_image`). Backends implement :meth:`VLM.stream`; everything else is built on it.
Tool calls come back inside the generated text as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
whatever the backend, so the agent parses one format.

Backends: :class:`TransformersVLM` (local, any ``AutoModelForImageTextToText`` Hub id or folder),
:class:`~mmsupport.llamacpp.LlamaCppVLM` (the same model as GGUF on llama.cpp, ``settings.runtime``) and
:class:`OpenAIVLM` (any OpenAI-compatible server: vLLM, TGI, Ollama, ``transformers serve``).
:func:`load_vlm` picks one from settings and loads it once per process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmsupport.config import Settings, load_settings
from mmsupport.errors import InvalidInput, MMSupportError, ModelUnavailable
from mmsupport.images import image_digest, load_image, to_data_url
from mmsupport.messages import Message, image_source, is_image
from mmsupport.messages import parts as content_parts

logger = logging.getLogger(__name__)

#: Prompt used by :meth:`VLM.describe` when none is given.
DESCRIBE_PROMPT = (
    "Describe the product in this photo for a shop search: what it is, its colour, material, any brand or text on it, "
    "and any visible damage or fault. Answer in one short paragraph."
)
#: How many descriptions :meth:`VLM.describe` keeps per process.
DESCRIBE_CACHE_SIZE = 512
#: On CPU, ``quantization="auto"`` means this (:mod:`mmsupport.int8`): it decodes 2.0-2.1x as fast as plain fp32 at
#: batch 1 and 2.3x at batch 8 in bench/vlm.py on an idle 2-core machine; see README "Models".
CPU_AUTO_QUANTIZATION = "int8-dynamic"

_FIX_MODEL = (
    "Set MMSUPPORT_MODEL to a local model folder (or a Hub id already in the local cache), or use a model server: "
    "MMSUPPORT_BACKEND=openai and MMSUPPORT_BASE_URL=http://HOST:PORT/v1."
)


class _LRU:
    """A small thread-safe least-recently-used mapping."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_DESCRIPTIONS = _LRU(DESCRIBE_CACHE_SIZE)


class VLM(ABC):
    """A chat model that can see images."""

    #: Short name shown in the UI and recorded with results.
    name: str = "vlm"
    #: True when the chat template accepts ``tools=`` and the model emits ``<tool_call>`` blocks.
    supports_tools: bool = False
    #: LoRA adapter folder attached to the model, if any (part of the description cache key).
    adapter: str | None = None
    #: Longest image side passed to the model.
    image_max_side: int = 512
    #: What runs the model (``transformers``, ``llamacpp``, ``openai``), and why it was chosen (``runtime=auto``).
    runtime: str = "transformers"
    runtime_note: str = ""
    #: ``{"ttft_s", "decode_tokens", "decode_tok_s"}`` of the latest generation, where the backend measures them.
    last_stats: dict | None = None

    @abstractmethod
    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               tools: list[dict] | None = None) -> Iterator[str]:
        """Yield the reply to ``messages`` piece by piece. Closing the iterator stops generation."""

    def generate(self, messages: list[Message], **kwargs) -> str:
        """The whole reply to ``messages``."""
        return "".join(self.stream(messages, **kwargs))

    def generate_batch(self, conversations: list[list[Message]], *, batch_size: int = 8, **kwargs) -> list[str]:
        """One reply per conversation, in order, ``batch_size`` per forward pass where the backend batches.

        This default answers them one at a time; backends that can batch override it.
        """
        return [self.generate(messages, **kwargs) for messages in conversations]

    def describe(self, image, prompt: str | None = None, **kwargs) -> str:
        """Describe ``image`` (PIL image, path or bytes); cached per image pixels + prompt + model + adapter + runtime
        (llama.cpp's 8-bit weights describe a little differently)."""
        image = load_image(image, max_side=self.image_max_side)
        prompt = prompt or DESCRIBE_PROMPT
        key = (image_digest(image), prompt, self.name, self.adapter, self.runtime, json.dumps(kwargs, sort_keys=True))
        cached = _DESCRIPTIONS.get(key)
        if cached is None:
            message = {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}
            cached = self.generate([message], **kwargs).strip()
            _DESCRIPTIONS.put(key, cached)
        return cached


# --------------------------------------------------------------------------------------------------------------------
# Local transformers backend


def resolve_device(device: str = "auto") -> str:
    """``auto`` becomes ``cuda`` when a GPU is there, else ``cpu``; anything else is kept."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def resolve_placement(device: str = "auto", dtype: str = "auto", quantization: str = "auto"):
    """Turn ``auto`` settings into a concrete ``(device, torch dtype, quantization)``.

    CUDA → bf16 (fp16 on GPUs without bf16), no quantization. CPU → fp32 weights with int8 dynamic quantization of
    the Linear layers (:data:`CPU_AUTO_QUANTIZATION`), the fastest CPU setting in ``bench/vlm.py``.
    """
    import torch

    device = resolve_device(device)
    on_cuda = device.startswith("cuda")
    if quantization == "auto":
        quantization = "none" if on_cuda else CPU_AUTO_QUANTIZATION
    if quantization == "int8-dynamic" and on_cuda:
        raise InvalidInput("MMSUPPORT_QUANTIZATION=int8-dynamic runs on CPU only.",
                           hint="Use 4bit or 8bit on a GPU, or set MMSUPPORT_DEVICE=cpu.")
    if dtype == "auto":
        if on_cuda:
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"
    if quantization == "int8-dynamic":
        dtype = "float32"  # dynamic quantization computes in fp32
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise InvalidInput(f"MMSUPPORT_DTYPE={dtype!r} is not a torch dtype.",
                           hint="Use auto, float32, bfloat16 or float16.")
    return device, torch_dtype, quantization


#: bitsandbytes' 4-bit CPU kernel (taken on AVX-512-BF16 hosts) packs weights in blocks of this many output features
#: by one quantization block (64) of input features: ``bitsandbytes.functional._convert_weight_packed_for_cpu``.
_BNB_CPU_OUTPUT_BLOCK = 32


def check_4bit_cpu_layout(model) -> None:
    """Refuse a 4-bit ``model`` whose layers bitsandbytes cannot pack for its CPU kernel.

    The packing happens at the first forward pass on AVX-512-BF16 hosts and fails there with a shape error; checking
    at load makes a model load, or be refused with this message, alike on every CPU.
    """
    import bitsandbytes as bnb

    odd = [(name, module) for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)
           and (module.in_features % module.weight.blocksize or module.out_features % _BNB_CPU_OUTPUT_BLOCK)]
    if odd:
        name, module = odd[0]
        raise ModelUnavailable(
            f"bitsandbytes cannot run this model in 4-bit on the CPU: {len(odd)} of its layers, such as {name} "
            f"({module.in_features} inputs, {module.out_features} outputs), are not a multiple of "
            f"{module.weight.blocksize} inputs by {_BNB_CPU_OUTPUT_BLOCK} outputs wide.",
            hint="Load it without 4-bit on the CPU (MMSUPPORT_QUANTIZATION=int8-dynamic or none), or on a GPU.")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face Hub (``HF_ENDPOINT``) opens within ``timeout`` seconds. Always
    ``False`` with ``HF_HUB_OFFLINE``; assumed ``True`` behind a proxy, which only a real request can test."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError:
        return False
    return True


class TransformersVLM(VLM):
    """A local model loaded with ``AutoProcessor`` + ``AutoModelForImageTextToText`` (Hub id or folder).

    ``quantization``: ``auto``, ``none``, ``int8-dynamic`` (CPU), ``4bit`` / ``8bit`` (bitsandbytes).
    ``adapter``: a peft LoRA folder, attached at load. ``image_splitting``: let SmolVLM/Idefics3 split large images
    into tiles (many more image tokens; off by default because it is slow on CPU).
    """

    def __init__(self, model: str, *, adapter: str | None = None, device: str = "auto", dtype: str = "auto",
                 quantization: str = "auto", max_new_tokens: int = 256, image_max_side: int = 512,
                 image_splitting: bool = False):
        self.name = str(model)
        self.adapter = str(adapter) if adapter else None
        self.max_new_tokens = max_new_tokens
        self.image_max_side = image_max_side
        self.device, self.dtype, self.quantization = resolve_placement(device, dtype, quantization)
        self._lock = threading.Lock()  # one generation at a time per model: memory stays bounded
        if self.name.startswith((".", "/", "~")) and not Path(self.name).expanduser().is_dir():
            raise ModelUnavailable(f"The model folder {self.name} does not exist.", hint=_FIX_MODEL)
        # Unreachable Hub: load from the local cache only, which fails at once instead of after minutes of retries
        cache_only = not Path(self.name).expanduser().is_dir() and not hub_reachable()
        try:
            self._load(image_splitting, cache_only)
        except MMSupportError:
            raise
        except Exception as error:  # noqa: BLE001 - every load failure becomes one actionable message
            if cache_only and isinstance(error, OSError):
                raise ModelUnavailable(
                    f"The vision-language model {self.name!r} is not in the local Hugging Face cache, and the Hub "
                    "cannot be reached from this machine to download it.", hint=_FIX_MODEL) from error
            raise ModelUnavailable(
                f"Could not load the vision-language model {self.name!r}"
                f"{f' with adapter {self.adapter!r}' if self.adapter else ''}: {type(error).__name__}: "
                f"{str(error).splitlines()[0].rstrip('.') if str(error) else 'no details'}.",
                hint=_FIX_MODEL if not isinstance(error, (MemoryError, RuntimeError)) else
                "Free memory, use a smaller model or MMSUPPORT_QUANTIZATION=int8-dynamic / 4bit. " + _FIX_MODEL,
            ) from error

    def _load(self, image_splitting: bool, cache_only: bool) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(self.name, local_files_only=cache_only)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        image_processor = getattr(self.processor, "image_processor", None)
        if hasattr(image_processor, "do_image_splitting"):
            image_processor.do_image_splitting = image_splitting
        template = getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template or ""
        self.supports_tools = "tools" in template

        # (transformers 5.23 does not pass local_files_only on to its check for an adapter in the repo)
        kwargs = {"dtype": self.dtype, "local_files_only": cache_only,
                  "adapter_kwargs": {"local_files_only": cache_only}}
        if self.quantization in ("4bit", "8bit"):
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=self.quantization == "4bit", load_in_8bit=self.quantization == "8bit",
                bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=self.dtype,
            )
            kwargs["device_map"] = self.device
        model = AutoModelForImageTextToText.from_pretrained(self.name, **kwargs)
        if self.quantization == "4bit" and self.device == "cpu":
            check_4bit_cpu_layout(model)
        if "device_map" not in kwargs:
            model.to(self.device)
        if self.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter)
            if self.quantization not in ("4bit", "8bit"):
                model = model.merge_and_unload()  # plain weights again: as fast as the base model
        model.eval()
        if self.quantization == "int8-dynamic":
            from mmsupport.int8 import quantize_int8_dynamic

            model = quantize_int8_dynamic(model)
        self.model = model

    def _inputs(self, conversations: list[list[Message]], tools: list[dict] | None):
        conversations = [
            [{**message, "content": [
                {"type": "image", "image": load_image(image_source(part), max_side=self.image_max_side)}
                if is_image(part) else part
                for part in content_parts(message)
            ]} for message in messages]
            for messages in conversations
        ]
        try:
            inputs = self.processor.apply_chat_template(
                conversations, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True,
                return_tensors="pt", processor_kwargs={"padding": True},
            )
        except (ValueError, TypeError, KeyError) as error:
            raise InvalidInput(f"The conversation does not fit the model's chat template: {error}",
                               hint="Send alternating user/assistant messages with text and image parts.") from None
        return inputs.to(self.device, dtype=self.dtype) if self.dtype.is_floating_point else inputs.to(self.device)

    def _generate_kwargs(self, max_new_tokens: int | None) -> dict:
        return dict(max_new_tokens=max_new_tokens or self.max_new_tokens, do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id)

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               tools: list[dict] | None = None) -> Iterator[str]:
        """Yield text as it is generated; closing the iterator (client gone) stops generation at the next token."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class StopWhenSet(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return cancelled.is_set()

        class CountingStreamer(TextIteratorStreamer):
            def put(self, value):
                if not self.next_tokens_are_prompt:
                    times.append(time.perf_counter())
                super().put(value)

        inputs = self._inputs([messages], tools)
        streamer = CountingStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        started, times = time.perf_counter(), []
        cancelled = threading.Event()
        failure: list[BaseException] = []

        def work():
            try:
                with self._lock:
                    self.model.generate(**inputs, **self._generate_kwargs(max_new_tokens), streamer=streamer,
                                        stopping_criteria=StoppingCriteriaList([StopWhenSet()]))
            except BaseException as error:  # noqa: BLE001 - re-raised in the consuming thread
                failure.append(error)
                streamer.end()

        thread = threading.Thread(target=work, name="vlm-generate", daemon=True)
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            cancelled.set()
            thread.join()
            self.last_stats = _stats(started, times)
        if failure:
            raise failure[0]

    def generate_batch(self, conversations: list[list[Message]], *, max_new_tokens: int | None = None,
                       tools: list[dict] | None = None, batch_size: int = 8) -> list[str]:
        """Replies for many conversations, ``batch_size`` per forward pass (left-padded), with a progress bar."""
        from tqdm.auto import tqdm

        import torch

        replies: list[str] = []
        chunks = range(0, len(conversations), batch_size)
        for start in tqdm(chunks, desc="generating", unit="batch", disable=len(chunks) < 2):
            inputs = self._inputs(conversations[start:start + batch_size], tools)
            with self._lock, torch.inference_mode():
                output = self.model.generate(**inputs, **self._generate_kwargs(max_new_tokens))
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            replies += [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        return replies


def _stats(started: float, token_times: list[float]) -> dict:
    """Time to first token and decode speed from the times each new token arrived."""
    decoding = token_times[-1] - token_times[0] if len(token_times) > 1 else 0.0
    return {"ttft_s": round(token_times[0] - started, 4) if token_times else None,
            "decode_tokens": len(token_times),
            "decode_tok_s": round((len(token_times) - 1) / decoding, 2) if decoding > 0 else None}


# --------------------------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP backend

_RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


class OpenAIVLM(VLM):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint (vLLM, TGI, Ollama, transformers serve).

    Images are sent as JPEG data URLs; streaming uses server-sent events; connection failures, timeouts and 5xx/429
    answers are retried ``max_retries`` times (only before any text was produced), waiting as long as a 429/503's
    ``Retry-After`` asks. :meth:`generate_batch` keeps up to ``concurrency`` requests in flight, so a server that
    batches sequences (vLLM, TGI) is kept busy. The API key is sent in the ``Authorization`` header and appears
    nowhere else (not in ``repr``, errors or logs).
    """

    supports_tools = True
    runtime = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0,
                 max_retries: int = 2, max_new_tokens: int = 256, image_max_side: int = 512, concurrency: int = 8):
        import httpx

        if concurrency < 1:
            raise InvalidInput(f"The server concurrency must be at least 1, not {concurrency}.",
                               hint="Set MMSUPPORT_SERVER_CONCURRENCY to a positive number, e.g. 8.")
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.max_new_tokens = max_new_tokens
        self.image_max_side = image_max_side
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max(concurrency, 10), max_keepalive_connections=max(concurrency, 10))
        self._client = httpx.Client(base_url=self.base_url + "/", headers=headers, timeout=timeout, limits=limits)

    def __repr__(self) -> str:
        return f"OpenAIVLM(base_url={self.base_url!r}, model={self.name!r})"

    def _body(self, messages: list[Message], max_new_tokens: int | None, tools: list[dict] | None,
              stream: bool) -> dict:
        converted = []
        for message in messages:
            parts = []
            for part in content_parts(message):
                if is_image(part):
                    source = image_source(part)
                    if not (isinstance(source, str) and source.startswith(("http://", "https://", "data:"))):
                        source = to_data_url(load_image(source, max_side=self.image_max_side))
                    parts.append({"type": "image_url", "image_url": {"url": source}})
                else:
                    parts.append(part)
            converted.append({**message, "content": parts})
        body = {"model": self.name, "messages": converted, "max_tokens": max_new_tokens or self.max_new_tokens,
                "stream": stream}
        if tools:
            body["tools"] = [tool if "function" in tool else {"type": "function", "function": tool}
                             for tool in tools]
        return body

    def _http_error(self, response) -> Exception:
        try:
            detail = response.json()
        except ValueError:
            detail = response.text
        if isinstance(detail, dict):  # OpenAI {"error": {"message": ...}} or FastAPI {"detail": ...}
            detail = detail.get("error") or detail.get("detail") or detail
        if isinstance(detail, dict):
            detail = detail.get("message") or detail
        detail = str(detail).strip()[:300] or response.reason_phrase
        where = f"The model server at {self.base_url}"
        status = response.status_code
        if status in (401, 403):
            return ModelUnavailable(f"{where} refused the API key ({status}: {detail}).",
                                    hint="Set MMSUPPORT_API_KEY to a valid key.")
        if status == 404:
            return ModelUnavailable(f"{where} has no chat endpoint or no model {self.name!r} ({status}: {detail}).",
                                    hint="Check MMSUPPORT_BASE_URL (it usually ends in /v1) and MMSUPPORT_SERVER_MODEL.")
        if 400 <= status < 500 and status not in _RETRY_STATUSES:
            return InvalidInput(f"{where} rejected the request ({status}: {detail}).",
                                hint="Check the message and image; the model may not accept images or tools.")
        return ModelUnavailable(f"{where} failed ({status}: {detail}) after {self.max_retries + 1} attempts.",
                                hint="Check the server's logs, or try again later.")

    def _transport_error(self, error: Exception) -> ModelUnavailable:
        import httpx

        if isinstance(error, httpx.TimeoutException):
            return ModelUnavailable(f"The model server at {self.base_url} did not answer within {self.timeout:g} s.",
                                    hint="Check the server, or raise MMSUPPORT_REQUEST_TIMEOUT.")
        return ModelUnavailable(f"Cannot reach the model server at {self.base_url} ({type(error).__name__}).",
                                hint="Start the server or fix MMSUPPORT_BASE_URL.")

    @contextmanager
    def _post(self, body: dict):
        """The open response of a successful POST, after up to ``max_retries`` retries."""
        import httpx

        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._client.send(self._client.build_request("POST", "chat/completions", json=body),
                                             stream=True)
            except httpx.TransportError as error:
                if last:
                    raise self._transport_error(error) from None
            else:
                if response.is_success:
                    try:
                        yield response
                    except httpx.TransportError as error:
                        raise self._transport_error(error) from None
                    finally:
                        response.close()
                    return
                response.read()
                response.close()
                if last or response.status_code not in _RETRY_STATUSES:
                    raise self._http_error(response)
                wait = _retry_after(response)
                if wait is not None:
                    time.sleep(wait)
                    continue
            time.sleep(min(0.5 * 2**attempt, 4.0))

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               tools: list[dict] | None = None) -> Iterator[str]:
        """Yield text from the server's SSE stream; tool calls are yielded as ``<tool_call>`` blocks at the end."""
        calls: dict[int, dict] = {}
        with self._post(self._body(messages, max_new_tokens, tools, stream=True)) as response:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("error"):
                    raise ModelUnavailable(f"The model server at {self.base_url} failed mid-answer: {chunk['error']}.",
                                           hint="Check the server's logs.")
                for choice in chunk.get("choices", []):
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        yield delta["content"]
                    for call in delta.get("tool_calls") or []:
                        slot = calls.setdefault(call.get("index", len(calls)), {"name": "", "arguments": ""})
                        function = call.get("function") or {}
                        slot["name"] += function.get("name") or ""
                        slot["arguments"] += function.get("arguments") or ""
        for call in calls.values():
            yield _tool_call_text(call["name"], call["arguments"])

    def generate(self, messages: list[Message], *, max_new_tokens: int | None = None,
                 tools: list[dict] | None = None) -> str:
        """The whole reply from one non-streaming request."""
        with self._post(self._body(messages, max_new_tokens, tools, stream=False)) as response:
            response.read()
            message = response.json()["choices"][0]["message"]
        text = message.get("content") or ""
        for call in message.get("tool_calls") or []:
            text += _tool_call_text(call["function"]["name"], call["function"].get("arguments") or "{}")
        return text

    def generate_batch(self, conversations: list[list[Message]], *, batch_size: int = 8, **kwargs) -> list[str]:
        """One reply per conversation, in order, with up to ``concurrency`` requests in flight (``batch_size`` is
        the local backends' knob; the server batches what arrives together). Raises the first failure, after every
        request has finished."""
        from concurrent.futures import ThreadPoolExecutor

        if len(conversations) <= 1 or self.concurrency == 1:
            return [self.generate(messages, **kwargs) for messages in conversations]
        with ThreadPoolExecutor(min(self.concurrency, len(conversations)), thread_name_prefix="vlm-request") as pool:
            futures = [pool.submit(self.generate, messages, **kwargs) for messages in conversations]
        return [future.result() for future in futures]


#: Longest wait a server's ``Retry-After`` may ask for before a retry.
MAX_RETRY_AFTER_S = 30.0


def _retry_after(response) -> float | None:
    """Seconds a 429/503 answer's ``Retry-After`` header asks to wait (at most :data:`MAX_RETRY_AFTER_S`), if any."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S) if value else None
    except ValueError:  # an HTTP date: not worth parsing, back off as usual
        return None


def _tool_call_text(name: str, arguments: str | dict) -> str:
    """A structured tool call in the ``<tool_call>{...}</tool_call>`` text form every backend returns."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            pass  # keep the raw text; the agent reports it as a malformed call
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


# --------------------------------------------------------------------------------------------------------------------
# Loading once per process

_LOADED: dict[tuple, VLM] = {}
_LOAD_LOCK = threading.Lock()


def load_vlm(settings: Settings | None = None) -> VLM:
    """The VLM the settings describe, created on first use and shared by every caller in the process.

    Raises :class:`~mmsupport.errors.ModelUnavailable` saying what failed and how to fix it; nothing is cached then,
    so a later call can succeed. Text-only features should catch it and carry on without images.
    """
    settings = settings or load_settings()
    key = (settings.backend, settings.model, settings.server_model, settings.adapter, settings.device, settings.dtype,
           settings.quantization, settings.base_url, settings.api_key, settings.image_splitting,
           settings.server_concurrency, settings.runtime, settings.cache_dir, settings.llamacpp_vision)
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _create(settings)
        return _LOADED[key]


def _create(settings: Settings) -> VLM:
    if settings.backend == "openai":
        if not settings.base_url:
            raise ModelUnavailable("MMSUPPORT_BACKEND=openai needs the server's URL.",
                                   hint="Set MMSUPPORT_BASE_URL, e.g. http://127.0.0.1:8000/v1.")
        return OpenAIVLM(settings.base_url, settings.server_model or settings.model, api_key=settings.api_key,
                         timeout=settings.request_timeout, max_retries=settings.max_retries,
                         max_new_tokens=settings.max_new_tokens, image_max_side=settings.image_max_side,
                         concurrency=settings.server_concurrency)
    note = ""
    if settings.runtime != "transformers":
        from mmsupport import llamacpp  # it builds on this module's VLM, so it is imported only when asked for

        if settings.runtime == "llamacpp":
            return llamacpp.load_llamacpp(settings)
        device = resolve_device(settings.device)
        vlm, note = llamacpp.choose_runtime(settings, device)
        logger.info("MMSUPPORT_RUNTIME=auto: %s", note)
        if vlm is not None:
            vlm.runtime_note = note
            return vlm
    vlm = TransformersVLM(settings.model, adapter=settings.adapter, device=settings.device, dtype=settings.dtype,
                          quantization=settings.quantization, max_new_tokens=settings.max_new_tokens,
                          image_max_side=settings.image_max_side, image_splitting=settings.image_splitting)
    vlm.runtime_note = note
    return vlm
