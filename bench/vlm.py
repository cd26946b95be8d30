"""CPU speed of the default VLM's architecture (SmolVLM-256M) for each CPU setting mmsupport offers.

Builds SmolVLM-256M-Instruct from its published config values with random weights (no download: speed does not
depend on weight values; quality does, so no quality figures here) and measures, per setting (fp32, bf16,
int8-dynamic), each in its own process so peak RSS is that setting's own:

- time to first token for one 512 px image + a 300-token text prompt (vision encoder + prefill + one step),
- decode tokens/s at batch 1 and aggregate decode tokens/s at batch 8 after that prefill (cache repeated 8×),
- agreement of the greedy next token with fp32 over the prompt's last 64 positions, and the largest logit difference,
- peak RSS, weight bytes read per decoded token, and the memory-bandwidth limit on decode speed: those bytes over the
  bandwidth of a large fp32 matrix-vector product measured in the same run.

Also image preprocessing ms (decode a 1600×1200 JPEG, load_image to 512 px, Idefics3 image processor without
splitting). Writes bench/results/vlm.json and bench/results/vlm.png. Timings on a shared CPU are noisy.

    python bench/vlm.py [--new-tokens 32] [--threads N] [--settings fp32 bf16 int8-dynamic]
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _photo_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((1600, 1200), 40).convert("RGB").save(buffer, format="JPEG", quality=90)
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


def _decode_tok_s(model, cache, next_ids, steps: int) -> float:
    """Greedy decoding speed, one forward per token on top of the prefilled ``cache`` (what generate() runs).

    Uses the median step time, so a step stalled by another process on the shared CPU does not skew it.
    """
    import torch

    times = []
    with torch.inference_mode():
        for _ in range(steps):
            start = time.perf_counter()
            logits = model(input_ids=next_ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
            next_ids = logits[:, -1].argmax(-1, keepdim=True)
            times.append(time.perf_counter() - start)
    return next_ids.shape[0] / statistics.median(times)


def _weight_bytes_per_token(model, setting: str) -> int:
    """Bytes of decoder + lm_head weights read to decode one token (the vision encoder runs once per image)."""
    import torch

    per_weight = {"fp32": 4, "bf16": 2, "int8-dynamic": 1}[setting]
    total = 0
    for name, module in model.named_modules():
        if "vision" in name or "connector" in name:
            continue
        if isinstance(module, (torch.nn.Linear, torch.ao.nn.quantized.dynamic.Linear)):
            total += module.in_features * module.out_features * per_weight
    return total


def measure(setting: str, new_tokens: int, logits_path: Path) -> dict:
    """One setting, in this process: build, convert, time, and save next-token logits for the agreement check."""
    import torch
    from transformers import AutoModelForImageTextToText

    from mmsupport.vlm import quantize_int8_dynamic

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(smolvlm_256m_config()).eval()
    dtype = torch.bfloat16 if setting == "bf16" else torch.float32
    model.to(dtype)
    if setting == "int8-dynamic":
        model = quantize_int8_dynamic(model)

    inputs = _inputs(dtype)
    with torch.inference_mode():
        model(input_ids=inputs["input_ids"][:, :16])  # warm-up: kernels and allocator
        start = time.perf_counter()
        prefill = model(**inputs, use_cache=True, logits_to_keep=64)
        ttft = time.perf_counter() - start
    torch.save(prefill.logits[0].float(), logits_path)
    next_ids = prefill.logits[:, -1].argmax(-1, keepdim=True)
    cache_8 = copy.deepcopy(prefill.past_key_values)
    cache_8.batch_repeat_interleave(8)
    decode_1 = _decode_tok_s(model, prefill.past_key_values, next_ids, new_tokens)
    decode_8 = _decode_tok_s(model, cache_8, next_ids.repeat(8, 1), new_tokens)
    return {
        "setting": setting,
        "ttft_s": round(ttft, 3),
        "decode_tok_s_batch1": round(decode_1, 2),
        "decode_tok_s_batch8": round(decode_8, 2),
        "batch8_speedup": round(decode_8 / decode_1, 2),
        "weight_bytes_per_token": _weight_bytes_per_token(model, setting),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
    }


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
    axis.set_title(f"SmolVLM-256M architecture, CPU ({rows[0]['threads']} threads; shared, noisy)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["fp32", "bf16", "int8-dynamic"])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--logits", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:  # one setting in a fresh process
        print(json.dumps(measure(args.child, args.new_tokens, Path(args.logits))))
        return

    from mmsupport.vlm import resolve_placement

    _, dtype, quantization = resolve_placement("cpu", "auto", "auto")
    default_setting = quantization if quantization != "none" else ("fp32" if dtype == torch.float32 else "bf16")
    bandwidth = memory_bandwidth_gbs()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for setting in ["fp32"] + [s for s in args.settings if s != "fp32"]:
            logits = Path(scratch) / f"{setting}.pt"
            print(f"measuring {setting} ...", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--child", setting, "--new-tokens", str(args.new_tokens),
                       "--logits", str(logits)] + (["--threads", str(args.threads)] if args.threads else [])
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["bandwidth_limit_tok_s"] = round(bandwidth * 1e9 / row["weight_bytes_per_token"], 2)
            reference, own = torch.load(Path(scratch) / "fp32.pt"), torch.load(logits)
            row["greedy_agreement_with_fp32"] = round((reference.argmax(-1) == own.argmax(-1)).float().mean().item(), 4)
            row["max_abs_logit_diff_vs_fp32"] = round((reference - own).abs().max().item(), 5)
            row["logit_std_fp32"] = round(reference.std().item(), 5)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    fp32 = rows[0]["decode_tok_s_batch1"]
    chosen = next(row for row in rows if row["setting"] == default_setting)
    result = {
        "model_architecture": "HuggingFaceTB/SmolVLM-256M-Instruct (random weights)",
        "prompt": f"1 image (512 px, {IMAGE_SEQ_LEN} image tokens) + {PROMPT_TOKENS} text tokens",
        "new_tokens": args.new_tokens,
        "torch": torch.__version__,
        "memory_bandwidth_gb_s": round(bandwidth, 2),
        "image_preprocessing_ms": round(preprocessing_ms(), 2),
        "default_cpu_setting": default_setting,
        "default_speedup_vs_fp32_batch1": round(chosen["decode_tok_s_batch1"] / fp32, 2),
        "settings": rows,
        "note": "shared 2-core CPU: timings are noisy; random weights, so agreement figures bound numerics only",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "vlm.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / "vlm.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
