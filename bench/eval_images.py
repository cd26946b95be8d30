"""Photo queries on Fashion Product Images (../shared/evaldata): does a product photo find the products of the same
article type and colour? P@10 / R@10 for the words alone, the photo alone and both fused.

Builds a table of the styles.csv rows that have a thumbnail (text = name + gender + colour + article type + usage,
as bench/eval_devset.py) with image vectors from ``--image-model``, writes photo queries for a fixed sample of those
products (relevant: the other products with the same ``articleType`` and ``baseColour``; the query's own product is
left out of its results) and evaluates them as ``python -m mmsupport eval retrieval --photos`` does. The words of a
photo are its product's own name (an ideal description: an upper bound for the text side), or with ``--describe`` the
vision-language model's description of the thumbnail (``--model``).

Offline, ``--image-model tiny`` builds a tiny random CLIP: the figures then say nothing about quality, only that the
pipeline runs. With the Hub: ``python bench/eval_images.py --image-model openai/clip-vit-base-patch32`` (add
``--describe --model HuggingFaceTB/SmolVLM-256M-Instruct`` for real descriptions). Writes
bench/results/eval_images.json; the data stay in ``--work`` (never the repo).

    python bench/eval_images.py [--image-model tiny|ID] [--queries 200] [--work /tmp/mmsupport-evalimages]
"""

import argparse
import csv
import json
import random
from pathlib import Path

import torch

from machine import write_result
from mmsupport.__main__ import main as mmsupport
from mmsupport.catalog import Catalog
from mmsupport.cli.eval_retrieval import print_photo_table
from mmsupport.config import REPO_DIR, load_settings
from mmsupport.photo_evaluation import evaluate_photos, load_photo_queries
from mmsupport.vlm import load_vlm

TEXT = ["productDisplayName", "gender", "baseColour", "articleType", "usage"]


def tiny_clip(folder: Path) -> Path:
    """A tiny random CLIP (as tests build one) for an offline run."""
    import sys

    sys.path.insert(0, str(REPO_DIR / "tests"))
    from tiny_models import build_tiny_image_model

    return folder if (folder / "config.json").is_file() else build_tiny_image_model(folder, "clip")


def write_inputs(styles: Path, work: Path, n: int, seed: int) -> tuple[Path, Path]:
    """The catalog CSV (rows with a thumbnail) and the photo queries, both in ``work``."""
    with open(styles, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if row["image"] and (styles.parent / row["image"]).is_file()]
    catalog_csv = work / "styles_with_images.csv"
    with open(catalog_csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", *TEXT, "image"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    groups: dict[tuple, list[str]] = {}
    for row in rows:
        groups.setdefault((row["articleType"], row["baseColour"]), []).append(row["id"])
    candidates = [row for row in rows if len(groups[(row["articleType"], row["baseColour"])]) > 1]
    sample = random.Random(seed).sample(candidates, min(n, len(candidates)))
    queries = work / "photo_queries.jsonl"
    with open(queries, "w", encoding="utf-8") as f:
        for row in sample:
            relevant = [i for i in groups[(row["articleType"], row["baseColour"])] if i != row["id"]]
            f.write(json.dumps({"image": str(styles.parent / row["image"]), "id": row["id"], "relevant": relevant,
                                "text": row["productDisplayName"]}) + "\n")
    return catalog_csv, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaldata", type=Path, default=REPO_DIR.parent / "shared" / "evaldata")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmsupport-evalimages"))
    parser.add_argument("--image-model", default="tiny", help="tiny (random, offline) or a CLIP/SigLIP id/folder")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--describe", action="store_true", help="words from the VLM instead of the product name")
    parser.add_argument("--model", help="with --describe: the VLM")
    parser.add_argument("--out", type=Path, default=REPO_DIR / "bench" / "results" / "eval_images.json")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared, oversubscribed CPU more threads only spin)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    model = str(tiny_clip(args.work / "tiny-clip")) if args.image_model == "tiny" else args.image_model
    styles = args.evaldata / "fashion-product-images-small" / "styles.csv"
    catalog_csv, queries = write_inputs(styles, args.work, args.queries, args.seed)
    table = "styles_images_" + ("tiny" if args.image_model == "tiny" else "".join(
        ch if ch.isalnum() else "_" for ch in args.image_model))[-60:]
    where = ["--db", str(args.work / "db"), "--table", table, "--image-model", model]
    assert mmsupport(["ingest", "--csv", str(catalog_csv), "--images", str(styles.parent), "--id-col", "id",
                      "--title-col", "productDisplayName", "--text-cols", ",".join(TEXT), *where]) == 0
    settings = load_settings(db_dir=args.work / "db", table=table, image_embedding_model=model, model=args.model)
    catalog = Catalog.open(settings)
    describe = load_vlm(settings).describe if args.describe else None
    results = evaluate_photos(catalog, load_photo_queries(queries), k=10, describe=describe)
    words = f"VLM description ({settings.model})" if args.describe else "the product's own name (ideal description)"
    print(f"{args.queries} photo queries, {len(catalog)} products; image model {args.image_model}"
          f"{' (random weights: figures say nothing about quality)' if args.image_model == 'tiny' else ''}; "
          f"words: {words}")
    print_photo_table(results, 10)
    write_result(args.out, {"image_model": args.image_model, "random_weights": args.image_model == "tiny",
                            "words": words, "queries": args.queries, "rows": len(catalog), "results": results})


if __name__ == "__main__":
    main()
