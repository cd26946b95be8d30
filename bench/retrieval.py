"""Search latency per mode at 10k and 100k rows, ANN recall@10 against exact search at 100k, and ingest throughput
against raw ``SentenceTransformer.encode`` on the same texts. Writes bench/results/retrieval.json and .png.

Rows are real: texts and MiniLM vectors come from the tables bench/eval_devset.py builds from ../shared/evaldata
(run it first). Past its ~26k rows, extra rows mix two real rows (text joined, vectors averaged and re-normalised).
``--synthetic-base N`` skips eval_devset.py: it embeds the first N styles.csv texts now and mixes those instead
(synthetic vectors, fine for speed; quicker to build at 1M rows). Index build times are recorded per size.
``--s3`` also runs vector and hybrid search on the largest table copied to a local ``moto_server`` (S3 on loopback,
so its latency is a floor). moto answers a ranged read by reading the whole object, so a 1M-row table's one 1.6 GB
data file takes it many minutes to serve: ``--s3-rows-per-file N`` copies the table in files of N rows first (the
layout of a catalog ingested in batches of N) and indexes the copy as an ingest would. Queries are the dev-set
queries. Timings include embedding the query; a second pass with the query vectors cached gives the catalog's own
part. Run on an idle machine: other load changes the figures several-fold.

    python bench/retrieval.py [--source-db /tmp/mmsupport-evaldb] [--sizes 10000,100000] [--ingest-rows 2000]
    python bench/retrieval.py --synthetic-base 13000 --sizes 1000000 --ingest-rows 0 --s3 --out retrieval_1m
    python bench/retrieval.py ... --s3 --s3-rows-per-file 62500
"""

import argparse
import csv
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from mmsupport.catalog import FTS_OPTIONS, Catalog, _schema
from mmsupport.config import REPO_DIR, load_settings
from mmsupport.errors import CatalogError
from mmsupport.retrieval import create_ann_index
from machine import write_result

RESULTS = REPO_DIR / "bench" / "results"
WARM_UP = ["red cotton shirt", "running shoes for men", "leather handbag", "blue denim jeans", "sports watch"]


#: Attribute columns of the source tables carried into the scaled ones, so attribute-aware search has its real work.
ATTRIBUTES = {"gender": ("gender",), "base_colour": ("basecolour", "primary_color"), "articletype": ("articletype",),
              "usage": ("usage",)}


def real_rows(source_db: str) -> tuple[list[str], np.ndarray, dict[str, list]]:
    texts, vectors, attributes = [], [], {name: [] for name in ATTRIBUTES}
    for name in ("myntra", "styles"):
        try:
            table = Catalog.open(load_settings(db_dir=source_db, table=name)).table
        except CatalogError:
            continue
        present = [s for sources in ATTRIBUTES.values() for s in sources if s in table.schema.names]
        data = table.search().select(["text", "vector", *present]).limit(None).to_arrow()
        texts += data.column("text").to_pylist()
        vectors.append(np.stack(data.column("vector").to_numpy(zero_copy_only=False)))
        for column, sources in ATTRIBUTES.items():
            source = next((s for s in sources if s in data.column_names), None)
            attributes[column] += data.column(source).to_pylist() if source else [None] * data.num_rows
    return texts, np.concatenate(vectors).astype(np.float32), attributes


def synthetic_base(evaldata: Path, n: int, embedding_model: str) -> tuple[list[str], np.ndarray, dict[str, list]]:
    """The first ``n`` styles.csv rows as eval_devset.py builds their text, embedded now by the catalog's embedder,
    with their attributes."""
    from mmsupport.embeddings import load_embedder

    with open(evaldata / "fashion-product-images-small/styles.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    texts = [" ".join(filter(None, (r["productDisplayName"], r["gender"], r["baseColour"], r["articleType"],
                                     r["usage"]))) for r in rows]
    attributes = {column: [r[source] or None for r in rows] for column, source in
                  (("gender", "gender"), ("base_colour", "baseColour"), ("articletype", "articleType"),
                   ("usage", "usage"))}
    embedder = load_embedder(embedding_model)
    return texts, np.asarray(embedder.embed(texts), dtype=np.float32), attributes


def scaled_table(db, name: str, n: int, texts: list[str], vectors: np.ndarray, attributes: dict[str, list], rng):
    """A catalog table of ``n`` rows built straight from real (and mixed real) texts and vectors; a mixed row has
    the attributes of its first row."""
    base = min(n, len(texts))
    a, b = rng.integers(0, len(texts), size=(2, n - base))
    mixed = vectors[a] + vectors[b]
    all_vectors = np.concatenate([vectors[:base], mixed / np.linalg.norm(mixed, axis=1, keepdims=True)])
    all_texts = texts[:base] + [f"{texts[i]} {texts[j]}" for i, j in zip(a, b)]
    schema = _schema(list(attributes), vectors.shape[1])
    columns = {column: [None] * n for column in schema.names}
    columns.update({column: values[:base] + [values[i] for i in a] for column, values in attributes.items()})
    columns.update(id=[f"r{i}" for i in range(n)], kind=["product"] * n, title=[t[:60] for t in all_texts],
                   text=all_texts, row_hash=[""] * n, sentences=[[]] * n, sentence_vectors=[[]] * n)
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(all_vectors.reshape(-1)), vectors.shape[1])
    start = time.perf_counter()
    table = db.create_table(name, pa.table(columns, schema=schema), schema=schema, mode="overwrite")
    build = {"write_s": round(time.perf_counter() - start, 1)}
    from lancedb.index import FTS

    start = time.perf_counter()
    table.create_index("text", config=FTS(**FTS_OPTIONS))
    build["fts_index_s"] = round(time.perf_counter() - start, 1)
    return table, build


def _built(db, name: str, n: int):
    """The table ``name`` of ``db`` if it is there with ``n`` rows and its full-text (and, from 100k rows, vector)
    index, else None."""
    try:
        table = db.open_table(name)
    except ValueError:  # not there
        return None
    columns = {tuple(index.columns) for index in table.list_indices()}
    wanted = {("text",), ("vector",)} if n >= 100_000 else {("text",)}
    return table if table.count_rows() == n and wanted <= columns else None


def latencies(catalog: Catalog, queries: list[str], mode: str) -> dict:
    """Per-query ms, first with every query embedded afresh (what a user waits for), then again with the query
    vectors cached (the catalog's own part), the latter also split by whether the query names a catalog attribute
    (which adds a second, prefiltered nearest-neighbour query: :mod:`mmsupport.attributes`)."""
    from mmsupport.attributes import AttributeIndex

    for query in WARM_UP:  # a serving process is warm: indexes read, caches filled
        catalog.search(query, mode=mode, k=10)
    catalog.embedder._query_cache.cache_clear()
    named = AttributeIndex.of(catalog.view())
    attribute = [named.read(query).boosts for query in queries]
    result = {}
    for label in ("", "_cached_query_vector"):
        times = []
        for query in queries:
            start = time.perf_counter()
            catalog.search(query, mode=mode, k=10)
            times.append((time.perf_counter() - start) * 1000)
        result |= {f"p50_ms{label}": round(statistics.median(times), 2),
                   f"p99_ms{label}": round(float(np.percentile(times, 99)), 2)}
    for label, naming in (("naming_attributes", True), ("naming_none", False)):
        some = [t for t, a in zip(times, attribute) if a == naming]
        result[f"p50_ms_cached_query_vector_{label}"] = round(statistics.median(some), 2) if some else None
    return result | {"n": len(queries), "n_naming_attributes": sum(attribute)}


def embedding_latency(embedder, queries: list[str]) -> dict:
    """What embedding the query alone costs: the part of vector/hybrid latency that is not the catalog's."""
    times = []
    for query in queries:
        start = time.perf_counter()
        embedder._encode_one(query)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(float(np.percentile(times, 99)), 2),
            "n": len(times)}


def ann_recall(catalog: Catalog, queries: list[str]) -> float:
    """Recall@10 of the catalog's vector search (the ANN index, or the float16 vectors once in memory) against exact
    float32 search: the top 10 of the :data:`~mmsupport.retrieval.CANDIDATES` rows a search asks for."""
    from mmsupport.retrieval import CANDIDATES, ExactIndex, _nearest

    view = catalog.view()
    exact, hits = ExactIndex(view.dataset), 0
    for query in queries:
        vector = catalog.embedder.embed_query(query)
        truth = {row["id"] for row in exact.nearest(vector, 10)}
        found = _nearest(view, vector, CANDIDATES, None, ["id"])[:10]
        hits += len(truth & {row["id"] for row in found})
    return hits / (10 * len(queries))


def ingest_throughput(texts: list[str], embedding_model: str, workdir: Path) -> dict:
    from sentence_transformers import SentenceTransformer

    path = workdir / "ingest.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "description"])
        writer.writerows([f"t{i}", text] for i, text in enumerate(texts))
    model = SentenceTransformer(embedding_model, device="cpu")
    model.encode(texts[:64], batch_size=64, normalize_embeddings=True)  # warm-up
    start = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    raw = len(texts) / (time.perf_counter() - start)
    catalog = Catalog.open(load_settings(db_dir=workdir / "db", table="ingest"), create=True)
    catalog.embedder.embed(texts[:64])  # same warm-up
    start = time.perf_counter()
    catalog.ingest_csv(path, progress=False)
    ingest = len(texts) / (time.perf_counter() - start)
    return {"rows": len(texts), "raw_encode_rows_per_s": round(raw, 1), "ingest_rows_per_s": round(ingest, 1),
            "ratio": round(ingest / raw, 3)}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    sizes = list(results["latency"])
    modes = [mode for mode in results["latency"][sizes[0]] if mode != "query_embedding_only"]
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        xs = [x + i * width for x in range(len(sizes))]
        ax.bar(xs, [results["latency"][s][mode]["p50_ms"] for s in sizes], width, label=f"{mode} p50")
        ax.scatter(xs, [results["latency"][s][mode]["p99_ms"] for s in sizes], marker="_", s=200, color="black")
    ax.set_xticks([x + width for x in range(len(sizes))], [f"{int(s):,} rows" for s in sizes])
    ax.set_ylabel("ms per query (bar p50, dash p99)")
    ax.set_title("search latency, shared 2-core CPU, query embedding included")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def split_table(table_dir: Path, name: str, rows_per_file: int, workdir: Path) -> tuple[Path, dict]:
    """A copy in ``workdir`` of the table at ``table_dir``, in data files of at most ``rows_per_file`` rows, indexed
    as the catalog indexes it, with the seconds each step took."""
    import lance
    import lancedb
    from lancedb.index import FTS

    start = time.perf_counter()
    source = lance.dataset(table_dir)
    lance.write_dataset(source.to_batches(batch_size=rows_per_file), workdir / table_dir.name, schema=source.schema,
                        max_rows_per_file=rows_per_file)
    build = {"write_s": round(time.perf_counter() - start, 1), "rows_per_file": rows_per_file}
    table = lancedb.connect(str(workdir)).open_table(name)
    start = time.perf_counter()
    table.create_index("text", config=FTS(**FTS_OPTIONS))
    build["fts_index_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    create_ann_index(table)
    build["ann_index_s"] = round(time.perf_counter() - start, 1)
    Catalog.open(load_settings(db_dir=workdir, table=name)).cleanup()
    return workdir / table_dir.name, build


def s3_latencies(table_dir: Path, name: str, queries: list[str]) -> dict:
    """Vector and hybrid latency on the table at ``table_dir`` copied into a fresh local ``moto_server``."""
    import os
    import shutil
    import socket
    import subprocess
    import sys

    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
        for _ in range(100):
            try:
                s3.create_bucket(Bucket="bench")
                break
            except Exception:  # noqa: BLE001 (not listening yet)
                time.sleep(0.2)
        start = time.perf_counter()
        for path in table_dir.rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), "bench", f"db/{table_dir.name}/{path.relative_to(table_dir)}")
        upload_s = round(time.perf_counter() - start, 1)
        catalog = Catalog.open(load_settings(db_dir="s3://bench/db", table=name))
        start, vectors = time.perf_counter(), catalog.view().vectors
        if vectors is not None:  # as in main(): a serving process has them
            vectors.result()
        load_s = round(time.perf_counter() - start, 1)
        return {"upload_s": upload_s, "vectors_in_memory_load_s": load_s,
                **{mode: latencies(catalog, queries, mode) for mode in ("vector", "hybrid")}}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-db", default="/tmp/mmsupport-evaldb", help="where bench/eval_devset.py ingested")
    parser.add_argument("--evaldata", type=Path, default=REPO_DIR.parent / "shared/evaldata")
    parser.add_argument("--synthetic-base", type=int, help="mix vectors of the first N styles.csv texts, embedded now")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--n-queries", type=int, default=200)
    parser.add_argument("--ingest-rows", type=int, default=2000, help="0 skips the ingest measurement")
    parser.add_argument("--s3", action="store_true", help="also search the largest table on a local moto_server")
    parser.add_argument("--s3-rows-per-file", type=int, help="copy that table in files of this many rows first")
    parser.add_argument("--out", default="retrieval", help="name of the JSON and PNG under bench/results")
    parser.add_argument("--db", type=Path, help="build the tables in this folder and keep them; a table already "
                        "there with its indexes is reused (its build is not timed again)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--kind", help="only the dev queries of this kind (known-item or attribute)")
    parser.add_argument("--modes", default="vector,fts,hybrid")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import lancedb

    rng = np.random.default_rng(0)
    embedding_model = load_settings().embedding_model

    @functools.cache
    def source() -> tuple[list[str], np.ndarray, dict[str, list]]:
        """The base rows' texts, vectors and attributes (read or embedded only when a table is built or ingest
        measured)."""
        if args.synthetic_base:
            return synthetic_base(args.evaldata, args.synthetic_base, embedding_model)
        return real_rows(args.source_db)

    lines = [json.loads(line) for line in (args.evaldata / "queries/dev.jsonl").read_text().splitlines()]
    queries = [line["query"] for line in lines if args.kind in (None, line.get("kind"))][:args.n_queries]
    results = {"rows": f"synthetic: mixes of {args.synthetic_base} embedded styles.csv texts" if args.synthetic_base
               else "real",
               "latency": {}, "ann": {}, "build": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db = lancedb.connect(str(args.db or tmp / "db"))
        for n in map(int, args.sizes.split(",")):
            table = _built(db, f"rows{n}", n)
            if table is not None:
                results["build"][n] = "reused from --db"
            else:
                table, results["build"][n] = scaled_table(db, f"rows{n}", n, *source(), rng)
            if n >= 100_000 and isinstance(results["build"][n], dict):
                start = time.perf_counter()
                create_ann_index(table)
                results["build"][n]["ann_index_s"] = round(time.perf_counter() - start, 1)
            catalog = Catalog.open(load_settings(db_dir=args.db or tmp / "db", table=f"rows{n}"))
            start = time.perf_counter()
            catalog.cleanup()  # the indexes every ingest keeps, bitmaps on the attribute columns of large tables too
            if isinstance(results["build"][n], dict):
                results["build"][n]["attribute_indexes_s"] = round(time.perf_counter() - start, 1)
            print(n, "built", json.dumps(results["build"][n]), flush=True)
            start, vectors = time.perf_counter(), catalog.view().vectors
            if vectors is not None:  # searches time the vectors in memory, which a serving process has loaded
                vectors.result()
                results["ann"][n] = {"vectors_in_memory_load_s": round(time.perf_counter() - start, 1)}
            results["latency"][n] = {mode: latencies(catalog, queries, mode) for mode in args.modes.split(",")}
            results["latency"][n]["query_embedding_only"] = embedding_latency(catalog.embedder, queries)
            if n >= 100_000:
                results["ann"].setdefault(n, {})["recall@10_vs_exact"] = round(ann_recall(catalog, queries), 4)
            print(n, json.dumps(results["latency"][n]), json.dumps(results["ann"].get(n, {})), flush=True)
        if args.s3:
            n = max(results["latency"])
            table_dir, split = (args.db or tmp / "db") / f"rows{n}.lance", {}
            if args.s3_rows_per_file:
                (tmp / "split").mkdir()
                table_dir, split = split_table(table_dir, f"rows{n}", args.s3_rows_per_file, tmp / "split")
                print("split", json.dumps(split), flush=True)
            results["s3_moto_loopback"] = {n: {**s3_latencies(table_dir, f"rows{n}", queries), "split": split}}
            print("s3", json.dumps(results["s3_moto_loopback"]), flush=True)
        if args.ingest_rows:
            results["ingest"] = ingest_throughput(source()[0][-args.ingest_rows:], embedding_model, tmp)
            print(json.dumps(results["ingest"]))
    write_result(RESULTS / f"{args.out}.json", results)
    plot(results, RESULTS / f"{args.out}.png")


if __name__ == "__main__":
    main()
