"""Ask the support agent one question (with an optional photo) and print its grounded answer.

Uses the bundled sample catalog when no --db is given. When the vision-language model cannot be loaded the answer is
retrieval-only (the matching items, cited) and a notice goes to stderr. With --json prints one object: answer,
citations, items [{id, score, title, ...}], steps, no_match, flagged, notices, timings, query, model.
"""

from __future__ import annotations

import json
import sys

from mmsupport.config import SEARCH_MODES


def add_arguments(parser) -> None:
    parser.add_argument("message", metavar="MESSAGE", help="the customer's question")
    parser.add_argument("--image", action="append", default=[], metavar="FILE",
                        help="photo of the product (repeat for several)")
    parser.add_argument("--model", help="VLM Hub id or local folder (default: settings / MMSUPPORT_MODEL)")
    parser.add_argument("--db", help="LanceDB folder with the catalog (default: build the bundled sample catalog)")
    parser.add_argument("--table", help="catalog table name (default: settings / MMSUPPORT_TABLE)")
    parser.add_argument("--mode", choices=SEARCH_MODES, help="search mode (default: settings)")
    parser.add_argument("--k", type=int, help="items retrieved per search (default: settings)")
    parser.add_argument("--json", action="store_true", help="print the turn result as JSON")


def open_catalog(settings, db_given: bool):
    """The catalog named by ``settings``; the bundled sample catalog (built on first use) when no --db was given."""
    from mmsupport.catalog import Catalog, ensure_sample_catalog

    return Catalog.open(settings) if db_given else ensure_sample_catalog(settings)


def load_vlm_or_none(settings):
    """The VLM, or ``None`` with a one-line notice on stderr when it cannot be loaded."""
    from mmsupport.errors import ModelUnavailable
    from mmsupport.vlm import load_vlm

    try:
        return load_vlm(settings)
    except ModelUnavailable as error:
        print(f"notice: answering without the model ({error})", file=sys.stderr)
        return None


def run(args) -> int:
    from mmsupport.agent import Agent
    from mmsupport.config import load_settings
    from mmsupport.images import load_image

    settings = load_settings(model=args.model, db_dir=args.db, table=args.table, search_mode=args.mode, top_k=args.k)
    images = [load_image(path, max_side=settings.image_max_side) for path in args.image]  # bad files fail first
    catalog = open_catalog(settings, args.db is not None)
    vlm = load_vlm_or_none(settings)
    result = Agent(vlm, catalog, settings).run_turn(args.message, images)
    if args.json:
        print(json.dumps({**result.to_dict(), "model": vlm.name if vlm else None}))
        return 0
    print(result.answer)
    for item in result.items:
        print(f"  [{item.id}] {item.title} (score {item.score:.3f})")
    return 0
