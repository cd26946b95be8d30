"""Attribute-aware search measured on queries it was not tuned on: plain RRF, the tuned fusion without attributes
and with them, on the tuning and the held-out part of queries/dev.jsonl and on the attribute queries reworded.

Parts: a dev query belongs to the tuning part when the first byte of SHA-1(``catalog + "\\t" + query``) is even,
else to the held-out part (about half each; the weights of :mod:`mmsupport.attributes` were chosen on the tuning part
only). Reworded: each dev attribute query's attributes (colour, gender, article type, usage, with its relevant ids)
written again from :data:`TEMPLATES`, in the words a shopper might use ("navy formal shirt for men"), and split by
the part of the query it comes from. Plain RRF is LanceDB's default fusion (1 / (60 + rank) over the top 50 of the
vector and the BM25 list). Needs the tables bench/eval_devset.py builds. Writes bench/results/eval_attributes.json.

    python bench/eval_attributes.py [--evaldata ../shared/evaldata] [--db /tmp/mmsupport-evaldb] [--weights 0.5,1]
"""

import argparse
import hashlib
import json
import statistics
from pathlib import Path

import torch

from mmsupport import attributes
from mmsupport.attributes import stem
from mmsupport.catalog import Catalog
from mmsupport.config import REPO_DIR, load_settings
from mmsupport.evaluation import Query, load_queries, query_metrics
from mmsupport.retrieval import CANDIDATES, _fts, _nearest, search
from machine import write_result

#: How the reworded queries are written (one per query, picked by its hash).
TEMPLATES = ("{colour} {usage} {article} for {gender}", "{gender} {article} in {colour} for {usage} wear",
             "{usage} {colour} {article} {gender}", "looking for a {colour} {article} for {gender}, {usage} use",
             "{colour} {article} for {gender} {usage}")
GENDER = {"Men": ("men", "him", "gents"), "Women": ("women", "her", "ladies"), "Boys": ("boys", "a boy"),
          "Girls": ("girls", "a girl"), "Unisex": ("men or women", "everyone")}
#: Article words that stay plural.
PLURAL_ONLY = {"jeans", "shorts", "trousers", "sunglasses", "briefs", "leggings", "jeggings", "pants", "tights",
               "flops", "boxers", "capris", "glasses"}
#: Colours as shoppers shorten them.
COLOUR = {"Navy Blue": "navy", "Off White": "off-white", "Grey Melange": "grey melange"}


def part(query: Query) -> str:
    return "tune" if hashlib.sha1(f"{query.catalog}\t{query.query}".encode()).digest()[0] % 2 == 0 else "held-out"


def _pick(options, key: str, salt: str):
    return options[hashlib.sha1(f"{salt}\t{key}".encode()).digest()[0] % len(options)]


def reworded(query: Query, attrs: dict) -> Query:
    """``query`` written again from its attributes (see :data:`TEMPLATES`), with the same relevant ids."""
    article = attrs["articleType"].lower()
    last = article.split()[-1]
    article = article[: len(article) - len(last)] + (last if last in PLURAL_ONLY else stem(last))
    article = {"tshirt": "t-shirt"}.get(article, article)
    text = _pick(TEMPLATES, query.query, "template").format(
        colour=COLOUR.get(attrs["baseColour"], attrs["baseColour"].lower()), usage=attrs["usage"].lower(),
        article=article, gender=_pick(GENDER[attrs["gender"]], query.query, "gender"))
    return Query(text, query.relevant, "attribute", query.catalog)


def rrf(catalog, text: str, k: int) -> list[str]:
    """Plain reciprocal-rank fusion of the vector and the BM25 top 50."""
    view = catalog.view()
    vector = _nearest(view, catalog.embedder.embed_query(text), CANDIDATES, None, ["id"])
    lexical = _fts(view.dataset, text, CANDIDATES, None, ["id"])
    scores: dict[str, float] = {}
    for rows in (vector, lexical):
        for rank, row in enumerate(rows, start=1):
            scores[row["id"]] = scores.get(row["id"], 0.0) + 1.0 / (60 + rank)
    return sorted(scores, key=lambda item_id: -scores[item_id])[:k]


METHODS = {"rrf": rrf,
           "fused": lambda catalog, text, k: [r["id"] for r, _, _ in search(catalog, text, k=k, attributes=False)],
           "attributes": lambda catalog, text, k: [r["id"] for r, _, _ in search(catalog, text, k=k)]}


def measure(catalog, queries: list[Query], method: str, k: int = 10) -> dict:
    rows = [query_metrics(METHODS[method](catalog, q.query, k), q.relevant, k) for q in queries]
    return {"n": len(rows), **{f"{m}@{k}": round(statistics.fmean(r[m] for r in rows), 3)
                               for m in ("hit", "mrr", "precision", "ndcg")}}


def _pooled(summaries: list[dict]) -> dict:
    """The summary of several disjoint query sets together (means weighted by their sizes)."""
    n = sum(s["n"] for s in summaries)
    return {"n": n, **{key: round(sum(s[key] * s["n"] for s in summaries) / n, 3) for key in summaries[0]
                       if key != "n"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaldata", type=Path, default=REPO_DIR.parent / "shared" / "evaldata")
    parser.add_argument("--db", default="/tmp/mmsupport-evaldb")
    parser.add_argument("--weights", help="also try these ATTRIBUTE_WEIGHT values on the tuning part")
    parser.add_argument("--out", type=Path, default=REPO_DIR / "bench" / "results" / "eval_attributes.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = args.evaldata / "queries" / "dev.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    sets: dict[str, list[Query]] = {}
    for query, line in zip(load_queries(path), lines):
        sets.setdefault(f"{query.kind} {part(query)}", []).append(query)
        if query.kind == "attribute":
            sets.setdefault(f"reworded {part(query)}", []).append(reworded(query, line["attributes"]))
    catalogs = {name: Catalog.open(load_settings(db_dir=args.db, table=name)) for name in ("myntra", "styles")}
    results = {"weight": attributes.ATTRIBUTE_WEIGHT, "sets": {}, "sweep": {}}
    for name, queries in sorted(sets.items()):
        catalog = catalogs[queries[0].catalog]
        results["sets"][name] = {method: measure(catalog, queries, method) for method in METHODS}
        print(name, json.dumps(results["sets"][name]), flush=True)
    for kind in ("known-item", "attribute", "reworded"):
        parts = [results["sets"][f"{kind} {p}"] for p in ("tune", "held-out")]
        results["sets"][f"{kind} all"] = {method: _pooled([by_method[method] for by_method in parts])
                                          for method in METHODS}
    for weight in map(float, args.weights.split(",")) if args.weights else ():
        attributes.ATTRIBUTE_WEIGHT = weight
        results["sweep"][weight] = {name: measure(catalogs[queries[0].catalog], queries, "attributes")
                                    for name, queries in sets.items() if name.endswith(" tune")}
        print("weight", weight, json.dumps(results["sweep"][weight]), flush=True)
    print("| set | method | n | nDCG@10 | P@10 | MRR@10 | hit@10 |\n|---|---|---|---|---|---|---|")
    for name, by_method in sorted(results["sets"].items()):
        for method, s in by_method.items():
            print(f"| {name} | {method} | {s['n']} | {s['ndcg@10']:.3f} | {s['precision@10']:.3f} | "
                  f"{s['mrr@10']:.3f} | {s['hit@10']:.3f} |")
    write_result(args.out, results)


if __name__ == "__main__":
    main()
