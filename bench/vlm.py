"""CPU speed of the default VLM's architecture (SmolVLM-256M) for each CPU setting mmsupport offers.

Builds SmolVLM-256M-Instruct from its published config values with random weights (no download: speed does not
depend on weight values; quality does, so no quality figures here) and measures, per setting (fp32, bf16,
int8-dynamic), all in one process and timed interleaved so other load on a shared CPU hits them alike:

- time to first token for one 512 px image + a 300-token text prompt (vision encoder + prefill + one step),
- decode tokens/s at batch 1 and aggregate decode tokens/s at batch 8 after that prefill (cache repeated 8×),
- agreement of the greedy next token with fp32 over the prompt's last 64 positions, and the largest logit difference,
- resident memory of each model, peak RSS, weight bytes read per decoded token, and the memory-bandwidth limit on
  decode speed: those bytes over the bandwidth of a large fp32 matrix-vector product measured in the same run.

Also image preprocessing ms (decode a 1600×1200 JPEG, load_image to 512 px, Idefics3 image processor without
splitting). Writes bench/results/vlm.json and bench/results/vlm.png. Timings on a shared CPU are noisy.

    python bench/vlm.py [--new-tokens 32] [--threads N] [--settings fp32 bf16 int8-dynamic]
"""

from __future__ import annotations

import argparse
import copy
import functools
import io
import json
import resource
import statistics
import time
from pathlib import Path
from machine import write_result

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


def _weight_bytes_per_token(model, setting: str) -> int:
    """Bytes of decoder + lm_head weights read to decode one token (the vision encoder runs once per image)."""
    import torch

    from mmsupport.int8 import Int8Linear

    per_weight = {"fp32": 4, "bf16": 2, "int8-dynamic": 1}[setting]
    total = 0
    for name, module in model.named_modules():
        if "vision" in name or "connector" in name:
            continue
        if isinstance(module, (torch.nn.Linear, Int8Linear)):
            total += module.in_features * module.out_features * per_weight
    return total


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


def measure(settings: list[str], new_tokens: int, rounds: int = 2) -> list[dict]:
    """Time all settings interleaved (round-robin per prefill and per decode step), so load from other processes on
    the shared CPU hits every setting alike; report the best prefill and the median decode step."""
    import gc

    import psutil
    import torch

    process = psutil.Process()
    models, inputs, rows = {}, {}, {}
    for setting in settings:
        gc.collect()
        before = process.memory_info().rss
        models[setting] = build(setting)
        gc.collect()
        inputs[setting] = _inputs(torch.bfloat16 if setting == "bf16" else torch.float32)
        rows[setting] = {"setting": setting, "model_rss_mb": round((process.memory_info().rss - before) / 2**20),
                         "weight_bytes_per_token": _weight_bytes_per_token(models[setting], setting)}
    ttft, prefill = {s: [] for s in settings}, {}
    with torch.inference_mode():
        for setting in settings:
            models[setting](input_ids=inputs[setting]["input_ids"][:, :16])  # warm-up: kernels and allocator
        for _ in range(rounds):
            for setting in settings:
                start = time.perf_counter()
                prefill[setting] = models[setting](**inputs[setting], use_cache=True, logits_to_keep=64)
                ttft[setting].append(time.perf_counter() - start)
        for batch in (1, 8):
            caches, next_ids, steps = {}, {}, {s: [] for s in settings}
            for setting in settings:
                caches[setting] = copy.deepcopy(prefill[setting].past_key_values)
                caches[setting].batch_repeat_interleave(batch)
                next_ids[setting] = prefill[setting].logits[:, -1].argmax(-1, keepdim=True).repeat(batch, 1)
            for _ in range(new_tokens):
                for setting in settings:
                    start = time.perf_counter()
                    logits = models[setting](input_ids=next_ids[setting], past_key_values=caches[setting],
                                             use_cache=True, logits_to_keep=1).logits
                    next_ids[setting] = logits[:, -1].argmax(-1, keepdim=True)
                    steps[setting].append(time.perf_counter() - start)
            for setting in settings:
                rows[setting][f"decode_tok_s_batch{batch}"] = round(batch / statistics.median(steps[setting]), 2)
    reference = prefill["fp32"].logits[0].float()
    for setting in settings:
        row, own = rows[setting], prefill[setting].logits[0].float()
        row["ttft_s"] = round(min(ttft[setting]), 3)
        row["batch8_speedup"] = round(row["decode_tok_s_batch8"] / row["decode_tok_s_batch1"], 2)
        row["greedy_agreement_with_fp32"] = round((reference.argmax(-1) == own.argmax(-1)).float().mean().item(), 4)
        row["max_abs_logit_diff_vs_fp32"] = round((reference - own).abs().max().item(), 5)
    return [rows[setting] for setting in settings]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["settings"]
    names = [row["setting"] for row in rows]
    positions = range(len(rows))
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.bar([p - 0.2 for p in positions], [r["decode_tok_s_batch1"] for r in rows], 0.4, label="batch 1")
    axis.bar([p + 0.2 for p in positions], [r["decode_tok_s_batch8"] for r in rows], 0.4, label="batch 8 (total)")
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
    parser.add_argument("--settings", nargs="+", default=["fp32", "bf16", "int8-dynamic"])
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
    rows = measure(settings, args.new_tokens)
    for row in rows:
        row["bandwidth_limit_tok_s"] = round(bandwidth * 1e9 / row["weight_bytes_per_token"], 2)
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
        "note": "shared 2-core CPU, settings timed interleaved: absolute timings are noisy, ratios less so; random "
                "weights, so agreement figures bound numerics only (near-flat logits make argmax ties common)",
    }
    write_result(RESULTS / "vlm.json", result)
    plot(result, RESULTS / "vlm.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
