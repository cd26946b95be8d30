"""Evaluate the support agent on scripted conversations (:func:`mmsupport.evaluation.evaluate_agent`): retrieval hit
rate, citation validity, no-match correctness, topic-switch and variant turns, quotes from the right article.

Each line of the conversations file is {"id", "turns": [{"message", "image", "relevant": [ids], "expect_no_match",
"tag"}]} (see data/README.md). Without a loadable model the run is retrieval-only and the report says so
("model": null).
"""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--conversations", type=Path, metavar="FILE.jsonl",
                        help="conversations to replay (default: the bundled data/conversations.jsonl)")
    parser.add_argument("--model", help="VLM Hub id or local folder (default: settings / MMSUPPORT_MODEL)")
    parser.add_argument("--db", help="LanceDB folder with the catalog (default: build the bundled sample catalog)")
    parser.add_argument("--table", help="catalog table name (default: settings / MMSUPPORT_TABLE)")
    parser.add_argument("--mode", choices=["vector", "fts", "hybrid"], help="search mode (default: settings)")
    parser.add_argument("--json", action="store_true", help="print the report (with every turn) as JSON")


def run(args) -> int:
    from mmsupport.agent import Agent
    from mmsupport.cli.chat import load_vlm_or_none, open_catalog
    from mmsupport.config import SAMPLE_DATA_DIR, load_settings
    from mmsupport.evaluation import evaluate_agent, load_conversations

    conversations = load_conversations(args.conversations or SAMPLE_DATA_DIR / "conversations.jsonl")
    settings = load_settings(model=args.model, db_dir=args.db, table=args.table, search_mode=args.mode)
    catalog = open_catalog(settings, args.db is not None)
    vlm = load_vlm_or_none(settings)
    report = {"model": vlm.name if vlm else None, "search_mode": settings.search_mode,
              **evaluate_agent(Agent(vlm, catalog, settings), conversations, progress=not args.json)}
    if args.json:
        print(json.dumps(report))
        return 0
    mode = f"model {report['model']}" if vlm else "retrieval-only (no model)"
    print(f"{report['conversations']} conversations, {report['turns']} turns, {mode}, {settings.search_mode} search")
    for name in ("hit_rate", "citation_validity", "no_match_accuracy"):
        value = report[name]
        print(f"{name:>18}: {'n/a' if value is None else f'{value:.3f}'}")
    print(f"{'missed_no_match':>18}: {report['missed_no_match']}\n{'false_no_match':>18}: {report['false_no_match']}")
    for tag, counts in report["tags"].items():
        print(f"{tag:>18}: {counts['right']}/{counts['turns']} right")
    if report["quoted_from_relevant"] is not None:
        print(f"{'quoted_from_article':>18}: {report['quoted_from_relevant']:.3f} ({report['quoted']} turns quoted)")
    for record in report["records"]:
        if (record["hit"] is False or record["no_match"] != record["expect_no_match"] or record["invalid_citations"]
                or record.get("right") is False or record.get("quoted_from_relevant") is False):
            print(f"  miss {record['conversation']}#{record['turn']}: {record['query'][:100]}")
    return 0
