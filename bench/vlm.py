"""CPU speed of the default VLM's architecture (SmolVLM-256M) for each CPU setting mmsupport offers.

Builds SmolVLM-256M-Instruct from its published config values with random weights (no download: speed does not
depend on weight values; quality does, so no quality figures here) and measures, per setting (fp32, bf16,
int8-dynamic, and the same weights on llama.cpp: ``llamacpp-q8_0``, ``-f16`` and ``-bf16``, text model in that type +
mmproj f16, converted by :mod:`mmsupport.gguf`), all in one process and timed interleaved so other load on a shared
CPU hits them alike:

- time to first token for one 512 px image + a 300-token text prompt (vision encoder + prefill + one step),
- decode tokens/s at batch 1 and aggregate decode tokens/s at batch 8 after that prefill (cache repeated 8×),
- agreement of the greedy next token with fp32 over the prompt's last 64 positions, and the largest logit difference
  (``text_*``: the same over the 300 text tokens alone, which every setting, llama.cpp's too, is compared on),
- resident memory of each model, peak RSS, weight bytes read per decoded token, and the memory-bandwidth limit on
  decode speed: those bytes over the bandwidth of a large fp32 matrix-vector product measured in the same run.

Also image preprocessing ms (decode a 1600×1200 JPEG, load_image to 512 px, Idefics3 image processor without
splitting). Writes bench/results/vlm.json and bench/results/vlm.png. Timings on a shared CPU are noisy.

    python bench/vlm.py [--new-tokens 32] [--threads N] [--settings fp32 bf16 int8-dynamic llamacpp-q8_0]
"""

from __future__ import annotations

import argparse
import copy
import functools
import io
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tokenizer of tests/tiny_models.py
from machine import write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT_TOKENS = 300
IMAGE_TOKEN_ID = 49190
# <fake_token_around_image><global-img><image>*64<fake_token_around_image>, as the Idefics3 processor writes it
FAKE_TOKEN_ID, GLOBAL_IMG_ID, IMAGE_SEQ_LEN = 49189, 49152, 64


def smolvlm_256m_config():
    """HuggingFaceTB/SmolVLM-256M-Instruct's architecture (SigLIP-style 93M vision encoder + SmolLM2-135M)."""
    from transformers import Idefics3Config

    return Idefics3Config(
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=512, patch_size=16),
        text_config=dict(model_type="llama", vocab_size=49280, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=False, pad_token_id=2, bos_token_id=1, eos_token_id=49279),
        scale_factor=4,
        image_token_id=IMAGE_TOKEN_ID,
        tie_word_embeddings=False,
    )


def _image_processor():
    from transformers import Idefics3ImageProcessor

    return Idefics3ImageProcessor(size={"longest_edge": 512}, max_image_size={"longest_edge": 512},
                                  do_image_splitting=False)


@functools.cache
def _photo_jpeg() -> bytes:
    """One fixed noisy 1600×1200 JPEG: every setting sees the same pixels."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def preprocessing_ms(repeats: int = 20) -> float:
    """Median ms from JPEG bytes to pixel_values: load_image (decode, EXIF, downscale) + the image processor."""
    from mmsupport.images import load_image

    data, processor = _photo_jpeg(), _image_processor()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        processor(images=[[load_image(data, max_side=512)]], return_tensors="pt")
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def memory_bandwidth_gbs(repeats: int = 10) -> float:
    """GB/s streamed by a 256 MiB fp32 matrix-vector product (the shape of decoding: every weight read once)."""
    import torch

    matrix, vector = torch.randn(8192, 8192), torch.randn(8192)
    torch.mv(matrix, vector)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mv(matrix, vector)
    return matrix.numel() * 4 * repeats / (time.perf_counter() - start) / 1e9


def _inputs(dtype):
    import torch

    from mmsupport.images import load_image

    image = load_image(_photo_jpeg(), max_side=512)
    vision = _image_processor()(images=[[image]], return_tensors="pt")
    generator = torch.Generator().manual_seed(1)
    text = torch.randint(100, 49000, (PROMPT_TOKENS,), generator=generator)
    image_ids = torch.tensor([FAKE_TOKEN_ID, GLOBAL_IMG_ID] + [IMAGE_TOKEN_ID] * IMAGE_SEQ_LEN + [FAKE_TOKEN_ID])
    ids = torch.cat([text[:10], image_ids, text[10:]])[None]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "pixel_values": vision["pixel_values"].to(dtype), "pixel_attention_mask": vision["pixel_attention_mask"]}


def _decoder_weights(model) -> int:
    """Weights of the decoder + lm_head read to decode one token (the vision encoder runs once per image)."""
    import torch

    from mmsupport.int8 import Int8Linear

    return sum(module.in_features * module.out_features for name, module in model.named_modules()
               if "vision" not in name and "connector" not in name
               and isinstance(module, (torch.nn.Linear, Int8Linear)))


def build(setting: str):
    """The architecture with the same random weights (seed 0), converted as mmsupport converts it for ``setting``."""
    import torch
    from transformers import AutoModelForImageTextToText

    from mmsupport.int8 import quantize_int8_dynamic

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(smolvlm_256m_config()).eval()
    if setting == "bf16":
        model.to(torch.bfloat16)
    if setting == "int8-dynamic":
        model = quantize_int8_dynamic(model)
    return model


def sample_corpus() -> list[str]:
    """Product and article descriptions of the repo's sample catalog, in paragraphs: what a tokenizer is trained on
    when no other is given (a real tokenizer has tokens for line breaks, which llama.cpp's image markup uses)."""
    import pandas as pd

    from mmsupport.config import SAMPLE_DATA_DIR

    texts = [text for name in ("products.csv", "articles.csv")
             for text in pd.read_csv(SAMPLE_DATA_DIR / name)["description"].dropna().tolist()]
    return ["\n\n".join(texts[i:i + 4]) + "\n\n" for i in range(0, len(texts), 4)]


def build_random_smolvlm(path: Path, corpus: list[str] | None = None) -> Path:
    """Save :func:`build` ``("fp32")`` (the same random weights) with an Idefics3 processor that loads through
    mmsupport (64 image tokens per 512 px image, no splitting, as mmsupport runs it) and a byte-level BPE tokenizer
    of 16k tokens trained on ``corpus`` (default :func:`sample_corpus`), so prompts have a realistic length."""
    from transformers import Idefics3Processor

    from tiny_models import train_tokenizer

    tokenizer = train_tokenizer("idefics3", corpus or sample_corpus(), vocab_size=16384)
    model = build("fp32")
    model.config.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    Idefics3Processor(_image_processor(), tokenizer, image_seq_len=IMAGE_SEQ_LEN,
                      chat_template=tokenizer.chat_template).save_pretrained(path)
    return path


class LlamaSetting:
    """A llama.cpp setting of the interleaved run: :func:`build_random_smolvlm`'s weights as GGUF (text ``text_type``
    + mmproj f16), through :class:`mmsupport.llamacpp.LlamaCppVLM` for the image prompt and llama.cpp's own
    ``eval`` for decode steps (one token each, as the transformers settings step), flash attention as the app chooses
    it on this CPU (:func:`mmsupport.llamacpp.flash_attention`). Images go through the model's
    PyTorch vision encoder (in the precision the app chooses for this CPU) when ``folder`` is given, else llama.cpp's
    mmproj."""

    def __init__(self, name: str, text_gguf: Path, mmproj: Path, folder: Path | None, threads: int | None):
        import numpy as np

        from mmsupport.images import load_image
        from mmsupport.llamacpp import LlamaCppVLM, flash_attention, new_llama
        from mmsupport.llamacpp_vision import fastest_vision

        self.name, self.text_gguf = name, text_gguf
        vision = fastest_vision(folder, image_max_side=512, cache_dir=folder.parent / "cache") if folder else None
        self.vision_precision = vision.precision if vision else "mmproj f16"
        self.flash_attn = flash_attention(text_gguf, text_gguf.parent)
        self.vlm = LlamaCppVLM(text_gguf, mmproj, vision=vision, context_tokens=1024, threads=threads,
                               flash_attn=self.flash_attn)
        # ~300 text tokens around one 512 px image, like the transformers prompt
        words = " ".join(sample_corpus())[:6000]
        ids = self.vlm.llama.tokenize(words.encode(), add_bos=False)[:PROMPT_TOKENS]
        text = self.vlm.llama.detokenize(ids).decode(errors="ignore")
        self.messages = [{"role": "user", "content": [
            {"type": "text", "text": text[:40]}, {"type": "image", "image": load_image(_photo_jpeg(), max_side=512)},
            {"type": "text", "text": text[40:]}]}]
        self.threads, self.np, self.new_llama = threads, np, new_llama

    def ttft(self) -> float:
        """Seconds from the image prompt to the first token (the chat handler clears llama.cpp's prompt cache)."""
        start = time.perf_counter()
        stream = self.vlm.stream(self.messages, max_new_tokens=1)
        next(stream, None)
        stream.close()
        return time.perf_counter() - start

    def _next_token(self) -> int:
        """Greedy token from the logits of the last position llama.cpp evaluated."""
        llama = self.vlm.llama
        return int(self.np.argmax(self.np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))))

    def start_decode(self) -> None:
        """Prefill the image prompt; decode steps continue from its cache."""
        self.ttft()
        self.token = self._next_token()

    def step(self) -> None:
        self.vlm.llama.eval([self.token])
        self.token = self._next_token()

    def text_logits(self, ids: list[int], last: int):
        """Logits of the last ``last`` positions of the text-only prompt ``ids``, from a fresh context."""
        llama = self.new_llama(self.text_gguf, n_ctx=1024, logits_all=True, n_threads=self.threads)
        llama.eval(ids)
        logits = self.np.array(llama.scores[len(ids) - last:len(ids)])
        llama.close()
        return logits


def gguf_files(names: list[str], folder: Path) -> dict:
    """``{setting: (text GGUF, mmproj GGUF, model folder or None)}`` for the llama.cpp settings asked for
    (``llamacpp-q8_0``, ``llamacpp-f16``: images through the PyTorch vision encoder; ``…-mtmd``: through llama.cpp's
    mmproj), converted from :func:`build_random_smolvlm`'s weights by mmsupport's converter."""
    from mmsupport.config import load_settings
    from mmsupport.gguf import convert

    if not names:
        return {}
    model = build_random_smolvlm(folder / "smolvlm-256m-random")
    settings = load_settings(cache_dir=folder / "cache")
    return {name: (*convert(model, settings, text_type=weight_type(name)), None if name.endswith("-mtmd") else model)
            for name in names}


def llamacpp_build() -> dict | None:
    """llama-cpp-python's version and the CPU features its build uses (``None`` when not installed)."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return {"version": llama_cpp.__version__, "system_info": llama_cpp.llama_print_system_info().decode().strip()}


#: Bytes per weight of each setting's decoder Linear layers (q8_0: 32 int8 weights + one f16 scale per block).
BYTES_PER_WEIGHT = {"fp32": 4, "bf16": 2, "int8-dynamic": 1, "q8_0": 34 / 32, "f16": 2}


def weight_type(setting: str) -> str:
    """The decoder weights' type of a setting: ``llamacpp-q8_0-mtmd`` → ``q8_0``, ``int8-dynamic`` → itself."""
    return setting.split("-")[1] if setting.startswith("llamacpp-") else setting


def _text_ids():
    """The prompt's 300 random text tokens, without the image (the text-only logits comparison)."""
    import torch

    return torch.randint(100, 49000, (PROMPT_TOKENS,), generator=torch.Generator().manual_seed(1))


def _load(setting: str, gguf: dict, threads: int | None):
    """The model of ``setting``: a torch module, or a :class:`LlamaSetting` warmed up once (so the pages of its
    memory-mapped GGUF count in RSS)."""
    if setting not in gguf:
        return build(setting)
    model = LlamaSetting(setting, *gguf[setting], threads)
    model.ttft()
    return model


def _text_logits(model, last: int = 64):
    import torch

    ids = _text_ids()
    if isinstance(model, LlamaSetting):
        return torch.from_numpy(model.text_logits(ids.tolist(), last)).float()
    return model(input_ids=ids[None], logits_to_keep=last).logits[0].float()


def measure(settings: list[str], new_tokens: int, rounds: int = 2, gguf: dict | None = None,
            threads: int | None = None) -> list[dict]:
    """Time all settings interleaved (round-robin per prefill and per decode step), so load from other processes on
    the shared CPU hits every setting alike; report the best prefill and the median decode step. ``gguf`` maps the
    llama.cpp settings to their ``(text, mmproj)`` files (batch 1 only: the app decodes one answer at a time)."""
    import gc

    import psutil
    import torch

    gguf = gguf or {}
    process = psutil.Process()
    models, inputs, rows = {}, {}, {}
    for setting in settings:
        gc.collect()
        before = process.memory_info().rss
        models[setting] = _load(setting, gguf, threads)
        gc.collect()
        inputs[setting] = _inputs(torch.bfloat16 if setting == "bf16" else torch.float32)
        rows[setting] = {"setting": setting, "model_rss_mb": round((process.memory_info().rss - before) / 2**20),
                         "weight_bytes_per_token": round(_decoder_weights(models["fp32"])
                                                         * BYTES_PER_WEIGHT[weight_type(setting)])}
        if isinstance(models[setting], LlamaSetting):
            rows[setting].update(vision=models[setting].vision_precision, flash_attn=models[setting].flash_attn)
    torch_settings = [s for s in settings if s not in gguf]
    ttft, prefill = {s: [] for s in settings}, {}
    with torch.inference_mode():
        for setting in torch_settings:
            models[setting](input_ids=inputs[setting]["input_ids"][:, :16])  # warm-up: kernels and allocator
        for _ in range(rounds):
            for setting in settings:
                start = time.perf_counter()
                if setting in gguf:
                    models[setting].ttft()
                else:
                    prefill[setting] = models[setting](**inputs[setting], use_cache=True, logits_to_keep=64)
                ttft[setting].append(time.perf_counter() - start)
        for batch in (1, 8):
            stepping = settings if batch == 1 else torch_settings
            caches, next_ids, steps = {}, {}, {s: [] for s in stepping}
            for setting in stepping:
                if setting in gguf:
                    models[setting].start_decode()
                    continue
                caches[setting] = copy.deepcopy(prefill[setting].past_key_values)
                caches[setting].batch_repeat_interleave(batch)
                next_ids[setting] = prefill[setting].logits[:, -1].argmax(-1, keepdim=True).repeat(batch, 1)
            for _ in range(new_tokens):
                for setting in stepping:
                    start = time.perf_counter()
                    if setting in gguf:
                        models[setting].step()
                    else:
                        logits = models[setting](input_ids=next_ids[setting], past_key_values=caches[setting],
                                                 use_cache=True, logits_to_keep=1).logits
                        next_ids[setting] = logits[:, -1].argmax(-1, keepdim=True)
                    steps[setting].append(time.perf_counter() - start)
            for setting in stepping:
                rows[setting][f"decode_tok_s_batch{batch}"] = round(batch / statistics.median(steps[setting]), 2)
        reference, text_reference = prefill["fp32"].logits[0].float(), _text_logits(models["fp32"])
        for setting in settings:
            row = rows[setting]
            row["ttft_s"] = round(min(ttft[setting]), 3)
            if setting in torch_settings:
                own = prefill[setting].logits[0].float()
                row["batch8_speedup"] = round(row["decode_tok_s_batch8"] / row["decode_tok_s_batch1"], 2)
                agreement = (reference.argmax(-1) == own.argmax(-1)).float().mean().item()
                row["greedy_agreement_with_fp32"] = round(agreement, 4)
                row["max_abs_logit_diff_vs_fp32"] = round((reference - own).abs().max().item(), 5)
            own = _text_logits(models[setting])
            row["text_greedy_agreement_with_fp32"] = round(
                (text_reference.argmax(-1) == own.argmax(-1)).float().mean().item(), 4)
            row["text_max_abs_logit_diff_vs_fp32"] = round((text_reference - own).abs().max().item(), 5)
            row["text_logit_range_fp32"] = round((text_reference.max() - text_reference.min()).item(), 4)
    return [rows[setting] for setting in settings]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["settings"]
    names = [row["setting"] for row in rows]
    positions = range(len(rows))
    figure, axis = plt.subplots(figsize=(9, 4))
    axis.bar([p - 0.2 for p in positions], [r["decode_tok_s_batch1"] for r in rows], 0.4, label="batch 1")
    axis.bar([p + 0.2 for p in positions], [r.get("decode_tok_s_batch8", 0) for r in rows], 0.4,
             label="batch 8 (total; not run on llama.cpp)")
    axis.scatter(list(positions), [r["bandwidth_limit_tok_s"] for r in rows], marker="_", s=900, color="black",
                 label="bandwidth limit, batch 1")
    axis.set_xticks(list(positions), names)
    axis.set_ylabel("decode tokens / s")
    axis.set_title(f"SmolVLM-256M architecture, CPU ({result['threads']} threads; shared, noisy)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+",
                        default=["fp32", "bf16", "int8-dynamic", "llamacpp-q8_0", "llamacpp-q8_0-mtmd",
                                 "llamacpp-f16", "llamacpp-bf16"],
                        help="llamacpp-* settings need llama-cpp-python (requirements-llamacpp.txt)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    args = parser.parse_args()

    import torch

    from mmsupport.vlm import resolve_placement

    if args.threads:
        torch.set_num_threads(args.threads)
    _, dtype, quantization = resolve_placement("cpu", "auto", "auto")
    default_setting = quantization if quantization != "none" else ("fp32" if dtype == torch.float32 else "bf16")
    settings = ["fp32"] + [s for s in args.settings if s != "fp32"]
    bandwidth = memory_bandwidth_gbs()
    with tempfile.TemporaryDirectory() as folder:
        gguf = gguf_files([s for s in settings if s.startswith("llamacpp-")], Path(folder))
        rows = measure(settings, args.new_tokens, gguf=gguf, threads=args.threads)
    for row in rows:
        row["bandwidth_limit_tok_s"] = round(bandwidth * 1e9 / row["weight_bytes_per_token"], 2)
        row["speedup_vs_fp32_batch1"] = round(row["decode_tok_s_batch1"] / rows[0]["decode_tok_s_batch1"], 2)
    by_setting = {row["setting"]: row for row in rows}
    result = {
        "model_architecture": "HuggingFaceTB/SmolVLM-256M-Instruct (random weights)",
        "prompt": f"1 image (512 px, {IMAGE_SEQ_LEN} image tokens) + {PROMPT_TOKENS} text tokens",
        "new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "memory_bandwidth_gb_s": round(bandwidth, 2),
        "image_preprocessing_ms": round(preprocessing_ms(), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "default_cpu_setting": default_setting,
        "default_speedup_vs_fp32_batch1": round(by_setting[default_setting]["decode_tok_s_batch1"]
                                                / by_setting["fp32"]["decode_tok_s_batch1"], 2),
        "settings": rows,
        "llamacpp": llamacpp_build(),
        "note": "shared 2-core CPU, settings timed interleaved: absolute timings are noisy, ratios less so; random "
                "weights, so agreement figures bound numerics only (near-flat logits make argmax ties common); "
                "llama.cpp's image TTFT includes two vision passes (its Idefics3 preprocessing always encodes an "
                "overview and the tiles: 2 x 64 image tokens for a 512 px image); text_* logits compare the "
                "300-token text-only prompt",
    }
    write_result(RESULTS / "vlm.json", result)
    plot(result, RESULTS / "vlm.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
