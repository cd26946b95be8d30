"""Image embedding speed on CPU with the default CLIP architecture (ViT-B/32, random weights: speed only, never
quality): ingest throughput (pictures/s, batches of :data:`mmsupport.image_embeddings.BATCH`) and query-photo latency
p50/p90 (decode + preprocess + forward of one shopper photo), per thread count and CPU variant: the runtime (ONNX
Runtime, the default, or PyTorch) with fp32 or int8 dynamic quantization of the linear layers (the default), and
PyTorch bf16 where the CPU has avx512_bf16/AMX. Also records each variant's cosine to PyTorch fp32, the machine's
load average and its CPU flags. Writes bench/results/image_embeddings.json.

    python bench/image_embeddings.py [--queries 30] [--pictures 64] [--threads 1,2] [--model-dir /tmp/clip-b32]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from machine import machine, write_result
from mmsupport.config import REPO_DIR, SAMPLE_DATA_DIR
from mmsupport.image_embeddings import ImageEmbedder
from mmsupport.images import load_image

PHOTOS = sorted((SAMPLE_DATA_DIR / "images").glob("P*.png"))
CUSTOMER = sorted((SAMPLE_DATA_DIR / "images" / "customer").glob("*.png"))


def build_default_clip(path: Path) -> Path:
    """openai/clip-vit-base-patch32's architecture and processor with random weights and a small BPE tokenizer
    (the text side is not timed)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(["red sneakers with white soles", "a black leather jacket"],
                                  trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    config = CLIPConfig()  # the defaults are ViT-B/32: 224 px, 32 px patches, 12 layers, 512-d projection
    CLIPModel(config).save_pretrained(path)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=fast).save_pretrained(path)
    return path


def query_times(embedder: ImageEmbedder, photos: list, n: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per query photo (a different photo each time, so no cache helps). On a loaded machine
    the CPU time of one thread is the better guess of the wall time on an idle one."""
    for photo in photos[:2]:
        embedder.embed_images([photo])
    wall, cpu = [], []
    for i in range(n):
        started, used = time.perf_counter(), time.process_time()
        embedder.embed_images([photos[i % len(photos)]])
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    return wall, cpu


def variant(folder: Path, name: str, cache: Path) -> ImageEmbedder | None:
    """The embedder in CPU variant ``name`` (``runtime-dtype``); ``None`` when this host cannot run it."""
    runtime, dtype = name.split("-")
    if dtype != "bf16":
        return ImageEmbedder(str(folder), device="cpu", runtime=runtime, cache_dir=cache,
                             quantization="none" if dtype == "fp32" else "int8-dynamic")
    if not set(machine()["cpu_flags"]) & {"avx512_bf16", "amx_bf16"}:
        return None
    embedder = ImageEmbedder(str(folder), device="cpu", runtime="torch", quantization="none")
    embedder.model = embedder.model.to(torch.bfloat16)
    forward = embedder._forward

    def bf16_forward(method, inputs):
        inputs = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}
        return forward(method, inputs)
    embedder._forward = bf16_forward
    return embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--pictures", type=int, default=64)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--variants", default="onnx-int8,onnx-fp32,torch-int8,torch-fp32,torch-bf16")
    parser.add_argument("--model-dir", type=Path, help="where the random ViT-B/32 is (built there when missing)")
    parser.add_argument("--out", type=Path, default=REPO_DIR / "bench" / "results" / "image_embeddings.json")
    args = parser.parse_args()
    folder = args.model_dir if args.model_dir and (args.model_dir / "config.json").is_file() else \
        build_default_clip(args.model_dir or Path(tempfile.mkdtemp(prefix="clip-b32-")))
    photos = [load_image(path) for path in CUSTOMER + PHOTOS]  # decoded once: the app decodes at upload
    pictures = PHOTOS[: args.pictures]
    with tempfile.TemporaryDirectory(prefix="image-embeddings-cache-") as cache:
        runs = measure(args, folder, photos, pictures, Path(cache))
    write_result(args.out, {"model": "CLIP ViT-B/32 architecture, random weights", "runs": runs,
                            "queries": args.queries, "pictures": len(pictures)})


def measure(args: argparse.Namespace, folder: Path, photos: list, pictures: list, cache: Path) -> list[dict]:
    """Time every variant at every thread count; ``cache`` holds their exports for this run only."""
    reference = ImageEmbedder(str(folder), device="cpu", runtime="torch", quantization="none").embed_images(photos[:8])
    runs = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for name in args.variants.split(","):
            embedder = variant(folder, name, cache)
            if embedder is None:
                print(f"{name}: not on this CPU")
                continue
            cosine = float(np.min(np.sum(embedder.embed_images(photos[:8]) * reference, axis=1)))
            load = os.getloadavg()[0]
            started = time.perf_counter()
            embedder.embed_images(pictures)
            per_second = len(pictures) / (time.perf_counter() - started)
            times, cpu = query_times(embedder, photos, args.queries)
            run = {"threads": threads, "variant": name, "ingest_images_per_s": round(per_second, 1),
                   "query_p50_ms": round(1000 * statistics.median(times), 1),
                   "query_p90_ms": round(1000 * statistics.quantiles(times, n=10)[-1], 1),
                   "query_cpu_p50_ms": round(1000 * statistics.median(cpu), 1),
                   "min_cosine_to_fp32": round(cosine, 4), "load_average_1min": round(load, 2)}
            runs.append(run)
            print(run, flush=True)
    return runs


if __name__ == "__main__":
    main()
