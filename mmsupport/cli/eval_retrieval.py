"""Evaluate retrieval on a JSONL query file: hit@K, recall@K, MRR@K, P@K, nDCG@K and median rank per search mode.

Query lines look like {"query": "...", "relevant": ["id", ...], "kind": "known-item", "catalog": "myntra"}; results
are grouped by kind. --catalog keeps only the lines for one catalog (the table must hold that catalog).
"""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--queries", required=True, help="JSONL file of queries with relevant ids")
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
