"""Labeling throughput (images/s) of the default model's architecture at several batch sizes, on real thumbnails.

Builds SmolVLM-256M-Instruct's architecture with random weights (``smolvlm_256m_config`` from bench/vlm.py; no
download), saves it with an Idefics3 processor (64 image tokens per image, no splitting, as mmsupport runs it) and a
byte-level BPE tokenizer trained on the spot (tests/tiny_models.py), then loads it through ``load_vlm`` with the
default CPU settings and runs :func:`mmsupport.labeling.label_images` on product thumbnails from
``../shared/evaldata/fashion-product-images-small/images``. Every reply is ``--new-tokens`` long (random weights
never stop early), one attempt per image, so the figures are pure generation throughput, not label quality.

Writes bench/results/labeling.json and bench/results/labeling.png. Timings on a shared CPU are noisy.

    python bench/labeling.py [--batch-sizes 1 4 8 16] [--batches 2] [--min-images 4] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
THUMBNAILS = HERE.parent.parent / "shared" / "evaldata" / "fashion-product-images-small" / "images"
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]


def build_random_smolvlm(path: Path) -> Path:
    """Save SmolVLM-256M's architecture (random weights) with a processor that loads through mmsupport."""
    import torch
    from transformers import AutoModelForImageTextToText, Idefics3ImageProcessor, Idefics3Processor

    from tiny_models import _train_tokenizer
    from vlm import smolvlm_256m_config

    tokenizer = _train_tokenizer("idefics3")
    config = smolvlm_256m_config()
    config.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config.text_config.eos_token_id = config.text_config.pad_token_id = tokenizer.eos_token_id
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    image_processor = Idefics3ImageProcessor(size={"longest_edge": 512}, max_image_size={"longest_edge": 512},
                                             do_image_splitting=False)
    Idefics3Processor(image_processor, tokenizer, image_seq_len=64,
                      chat_template=tokenizer.chat_template).save_pretrained(path)
    return path


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["batch_size"] for row in result["runs"]]
    rates = [row["images_per_second"] for row in result["runs"]]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar([str(size) for size in sizes], rates, color="#4c72b0")
    axis.axhline(4 * rates[0], color="#c44e52", linestyle="--", label="target: 4× batch 1")
    for index, (rate, run) in enumerate(zip(rates, result["runs"])):
        axis.text(index, rate, f"{rate:.3g}\n({run['speedup']:.1f}×)", ha="center", va="bottom", fontsize=8)
    axis.set_ylim(0, max(rates) * 1.25)
    axis.set_xlabel("batch size")
    axis.set_ylabel("images / s")
    axis.set_title(f"Labeling throughput, SmolVLM-256M architecture, {result['new_tokens']} new tokens, CPU")
    axis.title.set_fontsize(9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--batches", type=int, default=2, help="batches timed per batch size")
    parser.add_argument("--min-images", type=int, default=4, help="at least this many images per batch size")
    parser.add_argument("--new-tokens", type=int, default=128, help="reply length per image (a JSON label: ~100)")
    parser.add_argument("--images-dir", type=Path, default=THUMBNAILS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from mmsupport.config import load_settings
    from mmsupport.labeling import label_images
    from mmsupport.vlm import load_vlm

    if not args.images_dir.is_dir():
        sys.exit(f"{args.images_dir} not found: point --images-dir at a folder of product images")
    thumbnails = sorted(args.images_dir.glob("*.jpg"))
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(model=str(build_random_smolvlm(Path(folder) / "smolvlm-256m-random")))
        vlm = load_vlm(settings)
        warm_up = thumbnails[-2:]
        label_images(vlm, warm_up, Path(folder) / "warm.jsonl", batch_size=2, max_attempts=1,
                     max_new_tokens=4, progress=False)
        runs = []
        used = 0
        for batch_size in args.batch_sizes:
            count = max(args.min_images, batch_size * args.batches)
            images, used = thumbnails[used:used + count], used + count  # fresh images each time
            start = time.perf_counter()
            run = label_images(vlm, images, Path(folder) / f"labels_{batch_size}.jsonl", batch_size=batch_size,
                               max_attempts=1, max_new_tokens=args.new_tokens)
            seconds = time.perf_counter() - start
            runs.append({"batch_size": batch_size, "images": len(images), "seconds": round(seconds, 2),
                         "images_per_second": float(f"{len(images) / seconds:.4g}"),
                         "labelled": run.labelled, "failed": run.failed})
            print(runs[-1], flush=True)
    for row in runs:
        row["speedup"] = round(row["images"] / row["seconds"] / (runs[0]["images"] / runs[0]["seconds"]), 2)
    best = max(runs, key=lambda row: row["images_per_second"])
    result = {
        "model": "SmolVLM-256M-Instruct architecture, random weights", "quantization": vlm.quantization,
        "dtype": str(vlm.dtype), "new_tokens": args.new_tokens, "image_tokens": 64, "images_dir": str(args.images_dir),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "runs": runs,
        "best_batch_size": best["batch_size"], "best_speedup": best["speedup"], "target_speedup": 4.0,
        "note": "shared CPU: timings are noisy; random weights, so only speed is meaningful",
    }
    (RESULTS / "labeling.json").write_text(json.dumps(result, indent=1))
    plot(result, RESULTS / "labeling.png")
    print(json.dumps({key: result[key] for key in ("best_batch_size", "best_speedup", "quantization")}))


if __name__ == "__main__":
    main()
