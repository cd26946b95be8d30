"""Evaluate retrieval on a JSONL query file: hit@K, recall@K, MRR@K, P@K, nDCG@K and median rank per search mode.

Query lines look like {"query": "...", "relevant": ["id", ...], "kind": "known-item", "catalog": "myntra"}; results
are grouped by kind. --catalog keeps only the lines for one catalog (the table must hold that catalog).

--photos FILE.jsonl evaluates photo queries instead ({"image": "a.jpg", "relevant": [...], "id", "text"}, see
mmsupport.photo_evaluation): precision@K and recall@K for the words alone, the photo alone and both fused. The words
are each line's "text", or with --describe the vision-language model's description of the photo (--model).
"""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--queries", help="JSONL file of queries with relevant ids")
    parser.add_argument("--photos", help="JSONL file of photo queries with relevant ids (instead of --queries)")
    parser.add_argument("--image-model", help="CLIP/SigLIP id or folder the table's image vectors were built with "
                        "(default: settings / MMSUPPORT_IMAGE_EMBEDDING_MODEL)")
    parser.add_argument("--describe", action="store_true", help="with --photos: the words are the VLM's description")
    parser.add_argument("--model", help="with --describe: VLM Hub id or folder (default: settings / MMSUPPORT_MODEL)")
    parser.add_argument("--db", help="LanceDB folder (default: settings / MMSUPPORT_DB_DIR)")
    parser.add_argument("--table", help="table name (default: settings / MMSUPPORT_TABLE)")
    parser.add_argument("--catalog", help="only queries whose 'catalog' field is this")
    parser.add_argument("--modes", default="vector,fts,hybrid", help="comma-separated modes (default: all three)")
    parser.add_argument("-k", type=int, default=10, help="cut-off K (default 10)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--plot", help="write a bar chart of the metrics per mode to this PNG")


def plot(results: dict, k: int, path: str) -> None:
    """Bar chart: one group per metric (for each query kind), one bar per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(results)
    kinds = [kind for kind in results[modes[0]] if kind != "all"]
    metrics = [f"{m}@{k}" for m in ("hit", "mrr", "precision", "ndcg")]
    labels = [f"{kind}\n{metric}" for kind in kinds for metric in metrics]
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 1.1), 4))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        values = [results[mode][kind][metric] for kind in kinds for metric in metrics]
        ax.bar([x + i * width for x in range(len(labels))], values, width, label=mode)
    ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(labels))], labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("retrieval quality per search mode")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(args) -> int:
    from mmsupport.catalog import Catalog
    from mmsupport.config import load_settings
    from mmsupport.errors import InvalidInput
    from mmsupport.evaluation import evaluate, load_queries
    from mmsupport.config import SEARCH_MODES

    if bool(args.queries) == bool(args.photos):
        raise InvalidInput("Give either --queries FILE.jsonl or --photos FILE.jsonl.",
                           hint="Example: eval retrieval --queries ../shared/evaldata/queries/dev.jsonl")
    if args.photos:
        return _run_photos(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in SEARCH_MODES]
    if unknown or not modes:
        raise InvalidInput(f"Unknown mode(s) {', '.join(unknown) or '(none)'}.", hint=f"Use --modes {','.join(SEARCH_MODES)}.")
    queries = load_queries(args.queries, catalog=args.catalog)
    catalog = Catalog.open(load_settings(db_dir=args.db, table=args.table))
    results = {mode: evaluate(catalog, queries, mode=mode, k=args.k) for mode in modes}
    if args.plot:
        plot(results, args.k, args.plot)
    if args.json:
        print(json.dumps(results))
        return 0
    k = args.k
    print(f"{'mode':8} {'kind':12} {'n':>4} {'hit':>6} {'recall':>6} {'MRR':>6} {'P':>6} {'nDCG':>6} {'med.rank':>8}"
          f" {'p50 ms':>7}   (@{k})")
    for mode, by_kind in results.items():
        for kind, s in by_kind.items():
            rank = "-" if s["median_rank"] is None else f"{s['median_rank']:g}"
            print(f"{mode:8} {kind:12} {s['n']:4} {s[f'hit@{k}']:6.3f} {s[f'recall@{k}']:6.3f} {s[f'mrr@{k}']:6.3f} "
                  f"{s[f'precision@{k}']:6.3f} {s[f'ndcg@{k}']:6.3f} {rank:>8} {s['p50_ms']:7.1f}")
    return 0


def _run_photos(args) -> int:
    """``--photos``: the photo-query table (words, photo, fused)."""
    from mmsupport.catalog import Catalog
    from mmsupport.config import load_settings
    from mmsupport.photo_evaluation import evaluate_photos, load_photo_queries

    settings = load_settings(db_dir=args.db, table=args.table, image_embedding_model=args.image_model,
                             model=args.model)
    queries = load_photo_queries(args.photos)
    describe = None
    if args.describe:
        from mmsupport.vlm import load_vlm

        describe = load_vlm(settings).describe
    results = evaluate_photos(Catalog.open(settings), queries, k=args.k, describe=describe)
    if args.json:
        print(json.dumps(results))
        return 0
    words = f"VLM description ({settings.model})" if describe else "each line's text"
    print(f"{len(queries)} photo queries; image model {settings.image_embedding_model}; words: {words}")
    print_photo_table(results, args.k)
    return 0


def print_photo_table(results: dict, k: int) -> None:
    """The photo-query table: one line per side (words, photo, fused)."""
    print(f"{'side':10} {'n':>4} {'P':>6} {'recall':>6} {'MRR':>6} {'p50 ms':>7}   (@{k})")
    for side, s in results.items():
        if s is None:
            print(f"{side:10} missing: no query has words (add 'text' to the lines, or pass --describe)")
            continue
        print(f"{side:10} {s['n']:4} {s[f'precision@{k}']:6.3f} {s[f'recall@{k}']:6.3f} "
              f"{s[f'mrr@{k}']:6.3f} {s['p50_ms']:7.1f}")
