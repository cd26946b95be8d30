"""Evaluate the support agent on scripted conversations: retrieval hit rate, citation validity, no-match correctness.

Each line of the conversations file is {"id", "turns": [{"message", "image", "relevant": [ids], "expect_no_match"}]}
(see data/README.md); image paths are relative to the repository root or the file. Turns run in order with the
conversation so far as history. Metrics: hit rate = turns with relevant ids where one of them was retrieved; citation
validity = cited ids that were retrieved in the same turn; no-match accuracy = turns whose no_match equals
expect_no_match. Without a loadable model the run is retrieval-only and the report says so ("model": null).
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


def load_conversations(path: Path) -> list[dict]:
    """Parse and check a conversations file; image paths come back absolute."""
    from mmsupport.config import REPO_DIR
    from mmsupport.errors import InvalidInput

    if not path.is_file():
        raise InvalidInput(f"The conversations file {path} does not exist.", hint="Pass --conversations FILE.jsonl.")
    conversations = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            conversation = json.loads(line)
            turns = conversation["turns"]
            for turn in turns:
                if not isinstance(turn["message"], str):
                    raise TypeError("message is not a string")
                turn.setdefault("relevant", [])
                turn.setdefault("expect_no_match", False)
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InvalidInput(f"{path}:{number} is not a conversation ({type(error).__name__}: {error}).",
                               hint='Each line needs {"id", "turns": [{"message", "relevant", ...}]}.') from None
        for turn in turns:
            if turn.get("image"):
                candidates = [Path(turn["image"]), REPO_DIR / turn["image"], path.parent / turn["image"]]
                found = next((c for c in candidates if c.is_file()), None)
                if found is None:
                    raise InvalidInput(f"{path}:{number}: image {turn['image']} not found.",
                                       hint="Give image paths relative to the repository root or the file.")
                turn["image"] = str(found.resolve())
        conversations.append({"id": conversation.get("id", f"line{number}"), "turns": turns})
    return conversations


def evaluate_agent(agent, conversations: list[dict], *, progress: bool = True) -> dict:
    """Replay ``conversations`` through ``agent``; return the summary and one record per turn."""
    from tqdm.auto import tqdm

    from mmsupport.agent import CITATION

    records = []
    for conversation in tqdm(conversations, desc="conversations", disable=not progress):
        history = []
        for index, turn in enumerate(conversation["turns"]):
            result = agent.run_turn(turn["message"], [turn["image"]] if turn.get("image") else [], history)
            history = result.history
            retrieved = [item.id for item in result.items]
            cited = CITATION.findall(result.answer)
            records.append({
                "conversation": conversation["id"], "turn": index, "query": result.query,
                "no_match": result.no_match, "expect_no_match": bool(turn["expect_no_match"]),
                "hit": bool(set(retrieved) & set(turn["relevant"])) if turn["relevant"] else None,
                "retrieved": retrieved, "citations": cited, "invalid_citations": [c for c in cited if c not in retrieved],
                "flagged": result.flagged, "seconds": round(result.timings["total"], 3)})
    judged = [r for r in records if r["hit"] is not None]
    citations = sum(len(r["citations"]) for r in records)
    invalid = sum(len(r["invalid_citations"]) for r in records)
    return {
        "conversations": len(conversations), "turns": len(records),
        "hit_rate": sum(r["hit"] for r in judged) / len(judged) if judged else None,
        "citation_validity": (citations - invalid) / citations if citations else None,
        "citations": citations,
        "no_match_accuracy": sum(r["no_match"] == r["expect_no_match"] for r in records) / len(records),
        "missed_no_match": sum(r["expect_no_match"] and not r["no_match"] for r in records),
        "false_no_match": sum(r["no_match"] and not r["expect_no_match"] for r in records),
        "records": records,
    }


def run(args) -> int:
    from mmsupport.agent import Agent
    from mmsupport.cli.chat import load_vlm_or_none, open_catalog
    from mmsupport.config import SAMPLE_DATA_DIR, load_settings

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
    for record in report["records"]:
        if record["hit"] is False or record["no_match"] != record["expect_no_match"] or record["invalid_citations"]:
            print(f"  miss {record['conversation']}#{record['turn']}: {record['query'][:100]}")
    return 0
