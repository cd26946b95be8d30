"""Agent overhead per turn on the bundled sample catalog, with the conversation checks (intent, follow-up or new
topic, variants, no-match) and, without a model, the extractive answers.

Replays every conversation of ``data/conversations.jsonl`` (topic switches, variant questions and one question per
support article among them) plus a thanks and a hand-off turn after each multi-turn conversation, twice: with a fixed
model (a VLM whose answer is always "The closest match is [1].", so model time is ~0 and the turn is pure overhead)
and with no model (extractive answers: every second is overhead). Overhead = total time minus describe + generate.
Needs only the repository (``bench/agent.py`` measures the 12k-row Myntra catalog from ``../shared``). Writes
``bench/results/agent_sample.json``. The CPU is shared: timings are noisy.

    python bench/agent_sample.py [--db /tmp/mmsupport-agent-sample] [--rounds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from machine import write_result
from mmsupport.agent import Agent
from mmsupport.catalog import ensure_sample_catalog
from mmsupport.config import SAMPLE_DATA_DIR, load_settings
from mmsupport.evaluation import load_conversations
from mmsupport.vlm import DESCRIBE_PROMPT, VLM

RESULTS = Path(__file__).resolve().parent / "results"
#: The issue's bar: overhead p50 per turn with a (scripted) model.
BAR_MS = 30


class FixedVLM(VLM):
    """Answers every message with the same citation and describes every photo the same way, instantly."""

    name = "fixed-answer"

    def stream(self, messages, *, max_new_tokens=None, tools=None):
        content = messages[-1]["content"]
        describe = isinstance(content, list) and any(part.get("text") == DESCRIBE_PROMPT for part in content)
        yield "a product photo" if describe else "The closest match is [1]."


def replay(agent: Agent, conversations: list[dict]) -> list[dict]:
    rows = []
    for conversation in conversations:
        turns = [(t["message"], [t["image"]] if t.get("image") else [], t.get("tag") or "") for t in
                 conversation["turns"]]
        if len(turns) > 1:
            turns += [("Thanks a lot!", [], "thanks"), ("Can I talk to a person?", [], "handoff")]
        history = []
        for message, images, tag in turns:
            result = agent.run_turn(message, images, history)
            history = result.history
            rows.append({"overhead_ms": 1000 * result.timings["overhead"], "tag": tag or result.intent,
                         "search_ms": 1000 * result.timings["search"]})
    return rows


def summary(rows: list[dict]) -> dict:
    def stats(values):
        values = sorted(values)
        return {"n": len(values), "p50": round(statistics.median(values), 2),
                "p90": round(values[int(0.9 * (len(values) - 1))], 2), "max": round(values[-1], 2)}

    tags = sorted({row["tag"] for row in rows})
    return {"all": stats([r["overhead_ms"] for r in rows]), "search_ms": stats([r["search_ms"] for r in rows]),
            "by_tag": {tag: stats([r["overhead_ms"] for r in rows if r["tag"] == tag]) for tag in tags}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/mmsupport-agent-sample")
    parser.add_argument("--rounds", type=int, default=2, help="replays per model setting (the first warms up)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(db_dir=args.db, database_url=f"sqlite:///{Path(scratch) / 'conversations.db'}")
        catalog = ensure_sample_catalog(settings)
        conversations = load_conversations(SAMPLE_DATA_DIR / "conversations.jsonl")
        result = {"catalog_rows": len(catalog), "search_mode": settings.search_mode, "bar_overhead_p50_ms": BAR_MS}
        for name, vlm in [("fixed_model", FixedVLM()), ("no_model", None)]:
            agent = Agent(vlm, catalog, dataclasses.replace(settings))
            for _ in range(args.rounds):
                rows = replay(agent, conversations)
            result[name] = summary(rows)
        result["meets_bar"] = result["fixed_model"]["all"]["p50"] <= BAR_MS
    result.update(load_average_1m_at_end=round(os.getloadavg()[0], 1),
                  timed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_result(RESULTS / "agent_sample.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
