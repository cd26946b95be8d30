"""A transformers vision encoder feeding llama.cpp's decoder: one vision pass per image.

llama.cpp's Idefics3/SmolVLM preprocessing always encodes an overview of the image and its tiles (two vision passes
and twice the image tokens for a 512 px photo, where mmsupport's transformers path runs one), which makes its time to
first token worse than transformers'. So when the model is a transformers folder, :class:`TorchVision` runs the
model's own vision encoder and connector in PyTorch (int8-dynamic Linear layers, or bf16 where the CPU multiplies
bf16 faster: :func:`fastest_vision`), and its image embeddings go into llama.cpp's context in place of the image
tokens, with the prompt tokenized by the model's own processor and chat template. The decoder (the per-token cost)
stays on llama.cpp, and the beginning that answering prompts share is evaluated once (:class:`PrefixCache`).
"""

from __future__ import annotations

import ctypes
import functools
import json
from collections import OrderedDict, deque
from pathlib import Path

from mmsupport.errors import InvalidInput, ModelUnavailable
from mmsupport.images import load_image
from mmsupport.messages import Message, image_source, is_image
from mmsupport.messages import parts as content_parts


#: What the vision encoder can run as on CPU, the default first: int8-dynamic Linear layers, or bf16 weights (on an
#: AMX host a 512 px photo took 0.43 s in bf16 against 0.72 s in int8 and 1.14 s in fp32; README "Models").
PRECISIONS = ("int8-dynamic", "bfloat16")


class TorchVision:
    """The vision encoder + connector of the transformers VLM in ``folder``, and its processor. ``precision``:
    ``int8-dynamic``, ``bfloat16`` or ``float32``."""

    def __init__(self, folder: str | Path, *, precision: str = "int8-dynamic", image_max_side: int = 512):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(folder)
        image_processor = getattr(self.processor, "image_processor", None)
        if hasattr(image_processor, "do_image_splitting"):
            image_processor.do_image_splitting = False
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
        inner = model.model
        if not hasattr(inner, "get_image_features") or not hasattr(inner, "connector"):
            raise ModelUnavailable(f"{folder} is not an Idefics3/SmolVLM model, whose vision encoder this runs.",
                                   hint="Give the GGUF files (model + mmproj) instead.")
        inner.text_model, model.lm_head = None, None  # llama.cpp decodes: keep only the vision side in memory
        if precision == "int8-dynamic":
            from mmsupport.int8 import quantize_int8_dynamic

            quantize_int8_dynamic(inner.vision_model)
            quantize_int8_dynamic(inner.connector)
        elif precision == "bfloat16":
            inner.to(torch.bfloat16)
        self.model, self.image_max_side, self.precision = inner, image_max_side, precision
        self.pixel_dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        self.image_token_id = model.config.image_token_id
        self.supports_tools = "tools" in (self.processor.chat_template or "")

    def prompt(self, messages: list[Message], tools: list[dict] | None):
        """``(token ids, image embeddings as a float32 array of rows, or None)``: the rendered conversation with
        ``image_token_id`` where each row of the embeddings goes."""
        import torch

        conversation = [{**message, "content": [
            {"type": "image", "image": load_image(image_source(part), max_side=self.image_max_side)}
            if is_image(part) else part for part in content_parts(message)]} for message in messages]
        try:  # as the transformers backend renders it, so both runtimes see the same tokens
            inputs = self.processor.apply_chat_template([conversation], tools=tools, add_generation_prompt=True,
                                                        tokenize=True, return_dict=True, return_tensors="pt")
        except (ValueError, TypeError, KeyError) as error:
            raise InvalidInput(f"The conversation does not fit the model's chat template: {error}",
                               hint="Send alternating user/assistant messages with text and image parts.") from None
        ids = inputs["input_ids"][0].tolist()
        if "pixel_values" not in inputs:
            return ids, None
        with torch.inference_mode():
            features = self.model.get_image_features(inputs["pixel_values"].to(self.pixel_dtype),
                                                     inputs.get("pixel_attention_mask"))
        rows = torch.cat(features.pooler_output).float().contiguous().numpy()
        return ids, rows


def fastest_vision(folder: str | Path, *, image_max_side: int, cache_dir: str | Path) -> TorchVision:
    """The vision encoder in whichever of :data:`PRECISIONS` encodes a photo fastest on this CPU: timed once per CPU
    and model shape (:func:`mmsupport.host.fastest`, which loads each precision only then)."""
    from PIL import Image

    from mmsupport.host import fastest

    built: dict[str, TorchVision] = {}

    def encode(precision: str) -> None:
        if precision not in built:
            built[precision] = TorchVision(folder, precision=precision, image_max_side=image_max_side)
        built[precision].prompt(photo, None)

    photo = [{"role": "user", "content": [
        {"type": "image", "image": Image.new("RGB", (image_max_side, image_max_side * 3 // 4), (40, 90, 200))}]}]
    shape = json.loads((Path(folder) / "config.json").read_text()).get("vision_config", {})
    choice = f"vision encoder {shape.get('hidden_size')}x{shape.get('num_hidden_layers')} at {image_max_side} px"
    chosen = fastest(choice, {p: functools.partial(encode, p) for p in PRECISIONS}, cache_dir)
    return built.get(chosen) or TorchVision(folder, precision=chosen, image_max_side=image_max_side)


#: A prompt sharing at least this many leading tokens with a recent one (every answering call starts with the same
#: system prompt and tool definitions, about 750 tokens) keeps that beginning's state, so that later prompts starting
#: with it evaluate only the rest.
MIN_SHARED_TOKENS = 128
#: Beginnings kept, the least recently used dropped first (about 23 kB a token for SmolVLM-256M), and prompts
#: remembered to find them in.
KEPT_BEGINNINGS = 2
RECENT_PROMPTS = 4


class PrefixCache:
    """llama.cpp's state of the beginnings recent prompts share, put back into a fresh context instead of evaluated
    again: on two cores the 750 tokens of system prompt and tools take about a second of each answer's prefill,
    restoring them 5 ms. Only text before a prompt's first image counts (image tokens stand for different pictures),
    and the logits are the same as evaluating everything."""

    def __init__(self):
        self.states: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self.recent: deque[list[int]] = deque(maxlen=RECENT_PROMPTS)

    def restore(self, llama, ids: list[int], end: int) -> int:
        """Empty ``llama``'s context and put back the longest kept beginning of ``ids[:end]``; its length (0: none)."""
        import llama_cpp

        llama.reset()
        llama._ctx.kv_cache_clear()
        kept = max((key for key in self.states if len(key) <= end and tuple(ids[:len(key)]) == key), key=len,
                   default=())
        if not kept:
            return 0
        self.states.move_to_end(kept)
        state = self.states[kept]
        if llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, (ctypes.c_uint8 * len(state)).from_buffer_copy(state),
                                              len(state), 0) != len(state):
            llama._ctx.kv_cache_clear()
            del self.states[kept]
            return 0
        llama.input_ids[:len(kept)] = kept
        llama.n_tokens = len(kept)
        return len(kept)

    def shared(self, ids: list[int], end: int) -> int:
        """How many leading tokens of ``ids[:end]`` the most alike recent prompt shares with it; ``ids`` is then
        remembered."""
        from llama_cpp import Llama

        longest = max((Llama.longest_token_prefix(ids[:end], other) for other in self.recent), default=0)
        self.recent.append(ids[:end])
        return longest

    def keep(self, llama) -> None:
        """Keep the state of what ``llama`` has evaluated so far, a beginning other prompts share."""
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(llama._ctx.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llama._ctx.ctx, buffer, size, 0)
        self.states[tuple(llama.input_ids[:llama.n_tokens].tolist())] = bytes(buffer)[:written]
        while len(self.states) > KEPT_BEGINNINGS:
            self.states.popitem(last=False)


def eval_with_embeddings(llama, ids: list[int], image_token_id: int, rows, prefixes: PrefixCache | None = None):
    """Evaluate ``ids`` in ``llama``'s context, emptied first, the runs of ``image_token_id`` as the embedding
    ``rows``. With ``prefixes`` a beginning shared with recent prompts is restored, or evaluated and kept, first."""
    import llama_cpp

    # what a beginning may cover: the text before the first image, less the last token, whose logits start the answer
    text_end = min(ids.index(image_token_id) if image_token_id in ids else len(ids), len(ids) - 1)
    if prefixes is None:
        llama.reset()
        llama._ctx.kv_cache_clear()
        start = 0
    else:
        start = prefixes.restore(llama, ids, text_end)
        shared = prefixes.shared(ids, text_end)
        if shared >= start + MIN_SHARED_TOKENS:
            llama.eval(ids[start:shared])
            prefixes.keep(llama)
            start = shared
    used = 0
    while start < len(ids):
        image = ids[start] == image_token_id
        end = start
        while end < len(ids) and (ids[end] == image_token_id) == image:
            end += 1
        if not image:
            llama.eval(ids[start:end])
        else:
            count = end - start
            if rows is None or used + count > len(rows):
                raise InvalidInput("The prompt has more image tokens than the image gave embeddings.",
                                   hint="Check the model's processor (image_seq_len).")
            batch = llama_cpp.llama_batch_init(count, rows.shape[1], 1)
            try:
                for i in range(count):
                    batch.pos[i] = llama.n_tokens + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = 0
                batch.n_tokens = count
                block = rows[used:used + count]
                ctypes.memmove(batch.embd, block.ctypes.data, block.nbytes)
                if llama_cpp.llama_decode(llama._ctx.ctx, batch) != 0:
                    raise ModelUnavailable("llama.cpp could not take the image embeddings.",
                                           hint="Set MMSUPPORT_RUNTIME=transformers.")
            finally:
                llama_cpp.llama_batch_free(batch)
            llama.input_ids[llama.n_tokens:llama.n_tokens + count] = image_token_id
            llama.n_tokens += count
            used += count
        start = end
