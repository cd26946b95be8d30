"""Search the catalog (hybrid by default); --batch FILE.jsonl prints one JSON line per query.

--image PHOTO searches with a photo: in image mode by the pictures alone, in the other modes fused with the words'
results (README, "Image search"); --mode image without a photo searches the pictures with the words.

Each result has its id, title, kind (product or article) and score (higher is better). --where is an SQL prefilter
over the table's columns, e.g. "kind = 'article'" or "category = 'shoes' AND price < 80".
"""

from __future__ import annotations

import json

from mmsupport.config import SEARCH_MODES


def add_arguments(parser) -> None:
    parser.add_argument("query", nargs="?", help="what to look for (omit with --batch; optional with --image)")
    parser.add_argument("--image", metavar="PHOTO", help="search with this photo too (JPEG, PNG, WebP or GIF)")
    parser.add_argument("--batch", help="JSONL file whose lines have a 'query' and/or 'image' field (optional "
                        "'where', 'k')")
    parser.add_argument("--mode", choices=SEARCH_MODES, help="search mode (default: hybrid)")
    parser.add_argument("-k", type=int, help="number of results (default: settings / MMSUPPORT_TOP_K)")
    parser.add_argument("--where", help="SQL filter applied before ranking")
    parser.add_argument("--db", help="LanceDB folder (default: settings / MMSUPPORT_DB_DIR)")
    parser.add_argument("--table", help="table name (default: settings / MMSUPPORT_TABLE)")
    parser.add_argument("--image-model", help="CLIP/SigLIP id or folder for image vectors, or off (default: settings / "
                        "MMSUPPORT_IMAGE_EMBEDDING_MODEL)")
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
                if not (data.get("query") or data.get("image")):
                    raise KeyError("query")
            except (ValueError, KeyError, TypeError, AttributeError):
                raise InvalidInput(f"{path} line {number} has no 'query' or 'image'.",
                                   hint='Each line must be JSON like {"query": "red smartwatch"}.') from None
            yield data


def run(args) -> int:
    from mmsupport.catalog import Catalog
    from mmsupport.config import load_settings
    from mmsupport.errors import InvalidInput

    if bool(args.query or args.image) == bool(args.batch):
        raise InvalidInput("Give either a QUERY (and/or --image PHOTO) or --batch FILE.jsonl.",
                           hint='Example: search "red smartwatch".')
    settings = load_settings(db_dir=args.db, table=args.table, search_mode=args.mode, top_k=args.k,
                             image_embedding_model=args.image_model)
    catalog = Catalog.open(settings)
    if args.batch:
        for data in _batch_queries(args.batch):
            items = catalog.search(data.get("query") or "", mode=settings.search_mode,
                                   k=data.get("k", settings.top_k), where=data.get("where", args.where),
                                   image=data.get("image"))
            print(json.dumps({**{key: data[key] for key in ("query", "image") if key in data},
                              "results": [_result(i) for i in items]}), flush=True)
        return 0
    items = catalog.search(args.query or "", mode=settings.search_mode, k=settings.top_k, where=args.where,
                           image=args.image)
    if args.json:
        print(json.dumps({"query": args.query, "image": args.image, "results": [_result(i) for i in items]}))
        return 0
    if not items:
        print("no results")
    for rank, item in enumerate(items, start=1):
        print(f"{rank:2}. [{item.id}] {item.title} ({item.kind}) score {item.score:.3f}")
    return 0
