"""Retrieval quality on the real catalogs in ../shared/evaldata with queries/dev.jsonl, for every search mode.

Ingests the Myntra catalog (id Product_ID, text Description) and Fashion Product Images styles.csv (id ``id``, text =
name + gender + colour + article type + usage) into two tables, then reports known-item hit@10 / MRR@10 (Myntra) and
attribute P@10 / nDCG@10 (styles) per mode, next to the reference figures. Writes bench/results/eval_devset.json.

    python bench/eval_devset.py [--evaldata ../shared/evaldata] [--db /tmp/mmsupport-evaldb]
"""

import argparse
import json
from pathlib import Path

import torch

from mmsupport.catalog import Catalog
from mmsupport.config import REPO_DIR, load_settings
from mmsupport.evaluation import evaluate, load_queries
from machine import write_result

CATALOGS = {
    "myntra": dict(csv="myntra-fashion-products-catalog/myntra_products_catalog.csv", id_col="Product_ID",
                   title_col="Product_Name", text_cols=["Description"]),
    "styles": dict(csv="fashion-product-images-small/styles.csv", id_col="id", title_col="productDisplayName",
                   text_cols=["productDisplayName", "gender", "baseColour", "articleType", "usage"]),
}
#: Best reference figure per column (README of evaldata), which the default mode must match or beat.
REFERENCE = {"known-item hit@10": 0.967, "known-item mrr@10": 0.87, "attribute precision@10": 0.436,
             "attribute ndcg@10": 0.701}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaldata", type=Path, default=REPO_DIR.parent / "shared" / "evaldata")
    parser.add_argument("--db", default="/tmp/mmsupport-evaldb")
    parser.add_argument("--modes", default="vector,fts,hybrid")
    parser.add_argument("--out", type=Path, default=REPO_DIR / "bench" / "results" / "eval_devset.json")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared, oversubscribed CPU more threads only spin)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    queries_path = args.evaldata / "queries" / "dev.jsonl"
    results = {}
    for name, spec in CATALOGS.items():
        catalog = Catalog.open(load_settings(db_dir=args.db, table=name), create=True)
        spec = dict(spec)
        report = catalog.ingest_csv(args.evaldata / spec.pop("csv"), **spec)
        print(name, json.dumps({k: v for k, v in report.to_dict().items() if k != "rejected_rows"}))
        queries = load_queries(queries_path, catalog=name)
        for mode in args.modes.split(","):
            for kind, summary in evaluate(catalog, queries, mode=mode, k=10).items():
                results.setdefault(mode, {})[kind] = summary
    table = {mode: {col: by_kind[col.split()[0]][col.split()[1]] for col in REFERENCE} for mode, by_kind in
             results.items()}
    print(f"| mode | {' | '.join(REFERENCE)} | p50 ms (myntra/styles) |")
    print("|---|" + "---|" * (len(REFERENCE) + 1))
    for mode, row in table.items():
        ms = f"{results[mode]['known-item']['p50_ms']}/{results[mode]['attribute']['p50_ms']}"
        print(f"| {mode} | {' | '.join(f'{v:.3f}' for v in row.values())} | {ms} |")
    print(f"| reference best | {' | '.join(f'{v:.3f}' for v in REFERENCE.values())} | |")
    write_result(args.out, {"results": results, "table": table, "reference": REFERENCE})


if __name__ == "__main__":
    main()
