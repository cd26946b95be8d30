"""Search the catalog (hybrid by default); --batch FILE.jsonl prints one JSON line per query.

Each result has its id, title, kind (product or article) and score (higher is better). --where is an SQL prefilter
over the table's columns, e.g. "kind = 'article'" or "category = 'shoes' AND price < 80".
"""

from __future__ import annotations

import json

from mmsupport.config import SEARCH_MODES


def add_arguments(parser) -> None:
    parser.add_argument("query", nargs="?", help="what to look for (omit with --batch)")
    parser.add_argument("--batch", help="JSONL file whose lines have a 'query' field (optional 'where', 'k')")
    parser.add_argument("--mode", choices=SEARCH_MODES, help="search mode (default: hybrid)")
    parser.add_argument("-k", type=int, help="number of results (default: settings / MMSUPPORT_TOP_K)")
    parser.add_argument("--where", help="SQL filter applied before ranking")
    parser.add_argument("--db", help="LanceDB folder (default: settings / MMSUPPORT_DB_DIR)")
    parser.add_argument("--table", help="table name (default: settings / MMSUPPORT_TABLE)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def _result(item) -> dict:
    return {"id": item.id, "title": item.title, "kind": item.kind, "score": round(item.score, 4)}


def _batch_queries(path: str):
    from mmsupport.errors import InvalidInput

    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"Cannot read the batch file {path}: {error}.", hint="Pass a UTF-8 JSONL file.") from None
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                data = json.loads(line)
                data["query"]
            except (ValueError, KeyError, TypeError):
                raise InvalidInput(f"{path} line {number} has no 'query'.",
                                   hint='Each line must be JSON like {"query": "red smartwatch"}.') from None
            yield data


def run(args) -> int:
    from mmsupport.catalog import Catalog
    from mmsupport.config import load_settings
    from mmsupport.errors import InvalidInput

    if bool(args.query) == bool(args.batch):
        raise InvalidInput("Give either a QUERY or --batch FILE.jsonl.", hint='Example: search "red smartwatch".')
    settings = load_settings(db_dir=args.db, table=args.table, search_mode=args.mode, top_k=args.k)
    catalog = Catalog.open(settings)
    if args.batch:
        for data in _batch_queries(args.batch):
            items = catalog.search(data["query"], mode=settings.search_mode, k=data.get("k", settings.top_k),
                                   where=data.get("where", args.where))
            print(json.dumps({"query": data["query"], "results": [_result(i) for i in items]}), flush=True)
        return 0
    items = catalog.search(args.query, mode=settings.search_mode, k=settings.top_k, where=args.where)
    if args.json:
        print(json.dumps({"query": args.query, "results": [_result(i) for i in items]}))
        return 0
    if not items:
        print("no results")
    for rank, item in enumerate(items, start=1):
        print(f"{rank:2}. [{item.id}] {item.title} ({item.kind}) score {item.score:.3f}")
    return 0
