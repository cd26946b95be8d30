"""Labeling throughput (images/s) of the default model's architecture at several batch sizes, on real thumbnails.

Builds SmolVLM-256M-Instruct's architecture with random weights (``build_random_smolvlm`` from bench/vlm.py; no
download), saves it with an Idefics3 processor (64 image tokens per image, no splitting, as mmsupport runs it) and a
byte-level BPE tokenizer trained on the spot on the Myntra descriptions, 16k tokens, so the labeling prompt has a
realistic length (``tests/tiny_models.py``). It loads through ``load_vlm`` with the default CPU settings and runs
:func:`mmsupport.labeling.label_images` on product thumbnails from
``../shared/evaldata/fashion-product-images-small/images``. Every reply is exactly ``--new-tokens`` long
(``min_new_tokens``), one attempt per image, so the figures are pure generation throughput, not label quality.

Each batch size is also run with one new token on other images of the same count: that is the prefill (image
preprocessing, vision encoder, prompt) per image, which batching cannot share; decode is the rest. The speedup of
any batch size is bounded by (batch-1 seconds per image) / (its prefill seconds per image), reported as
``ceiling_if_decode_were_free``.

Writes bench/results/labeling.json and bench/results/labeling.png. Run it on an otherwise idle machine.

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
from machine import write_result

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EVALDATA = HERE.parent.parent / "shared" / "evaldata"
THUMBNAILS = EVALDATA / "fashion-product-images-small" / "images"
MYNTRA = EVALDATA / "myntra-fashion-products-catalog" / "myntra_products_catalog.csv"
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["batch_size"] for row in result["runs"]]
    rates = [row["images_per_second"] for row in result["runs"]]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar([str(size) for size in sizes], rates, color="#4c72b0")
    axis.axhline(4 * rates[0], color="#c44e52", linestyle="--", label="target: 4× batch 1")
    ceilings = [1 / row["prefill_seconds_per_image"] for row in result["runs"]]
    axis.scatter([str(size) for size in sizes], ceilings, marker="_", s=900, color="black",
                 label="prefill alone (decode free)")
    for index, (rate, run) in enumerate(zip(rates, result["runs"])):
        axis.text(index, rate, f"{rate:.3g}\n({run['speedup']:.1f}×)", ha="center", va="bottom", fontsize=8)
    axis.set_ylim(0, max(*ceilings, 4 * rates[0]) * 1.3)
    axis.set_xlabel("batch size")
    axis.set_ylabel("images / s")
    axis.set_title(f"Labeling throughput, SmolVLM-256M architecture, {result['new_tokens']} new tokens, CPU")
    axis.title.set_fontsize(9)
    axis.legend(fontsize=8, loc="upper right")
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

    import pandas as pd
    import torch

    from mmsupport.config import load_settings
    from mmsupport.labeling import PROMPT, Taxonomy, label_images
    from vlm import build_random_smolvlm
    from mmsupport.vlm import load_vlm

    if not args.images_dir.is_dir():
        sys.exit(f"{args.images_dir} not found: point --images-dir at a folder of product images")
    thumbnails = sorted(args.images_dir.glob("*.jpg"))
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        descriptions = pd.read_csv(MYNTRA)["Description"].dropna().tolist()
        settings = load_settings(model=str(build_random_smolvlm(Path(folder) / "smolvlm-256m-random", descriptions)))
        vlm = load_vlm(settings)

        def seconds_per_image(images: list[Path], batch_size: int, new_tokens: int, name: str) -> float:
            vlm.model.generation_config.min_new_tokens = new_tokens  # random weights would stop at random
            start = time.perf_counter()
            run = label_images(vlm, images, Path(folder) / name, batch_size=batch_size, max_attempts=1,
                               max_new_tokens=new_tokens, progress=False)
            assert run.labelled + run.failed == len(images)
            return (time.perf_counter() - start) / len(images)

        prompt_tokens = vlm._inputs([[{"role": "user", "content": [
            {"type": "image", "image": str(thumbnails[0])},
            {"type": "text", "text": PROMPT.format(categories=", ".join(Taxonomy.load().categories))}]}]],
            None)["input_ids"].shape[1]
        seconds_per_image(thumbnails[-2:], 2, 4, "warm.jsonl")
        runs, used = [], 0
        for batch_size in args.batch_sizes:
            count = max(args.min_images, batch_size * args.batches)
            full, prefill = thumbnails[used:used + count], thumbnails[used + count:used + 2 * count]
            used += 2 * count  # fresh images for every run: nothing comes from a cache
            total = seconds_per_image(full, batch_size, args.new_tokens, f"labels_{batch_size}.jsonl")
            first = min(seconds_per_image(prefill, batch_size, 1, f"prefill_{batch_size}.jsonl"), total)
            runs.append({"batch_size": batch_size, "images": count, "seconds_per_image": round(total, 3),
                         "images_per_second": float(f"{1 / total:.4g}"),
                         "prefill_seconds_per_image": round(first, 3),
                         "decode_seconds_per_image": round(total - first, 3)})
            print(runs[-1], flush=True)
    for row in runs:
        row["speedup"] = round(runs[0]["seconds_per_image"] / row["seconds_per_image"], 2)
        row["ceiling_if_decode_were_free"] = round(runs[0]["seconds_per_image"] / row["prefill_seconds_per_image"], 2)
    best = max(runs, key=lambda row: row["images_per_second"])
    result = {
        "model": "SmolVLM-256M-Instruct architecture, random weights", "quantization": vlm.quantization,
        "dtype": str(vlm.dtype), "new_tokens": args.new_tokens, "image_tokens": 64, "prompt_tokens": prompt_tokens,
        "images_dir": str(args.images_dir), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "runs": runs, "best_batch_size": best["batch_size"], "best_speedup": best["speedup"], "target_speedup": 4.0,
        "note": "random weights, so only speed is meaningful; run on an idle machine",
    }
    write_result(RESULTS / "labeling.json", result)
    plot(result, RESULTS / "labeling.png")
    print(json.dumps({key: result[key] for key in ("best_batch_size", "best_speedup", "quantization")}))


if __name__ == "__main__":
    main()
