"""What logging a turn costs: the time ``ConversationStore.log_turn`` takes on the turn's path, and the time its
background write takes (one transaction: the session row, the turn, a thumbs vote).

    python bench/store_log.py                                   # a temp SQLite file
    python bench/store_log.py --db-url postgresql+psycopg://user@127.0.0.1:5432/bench --turns 500

Writes ``bench/results/store_log_<dialect>.json``. The CPU is shared on dev machines: timings are noisy.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TURN = {"question": "Do you have these running shoes in blue?", "answer": "Yes: the Stride Runner [P0054]. " * 8,
        "citations": ["P0054"], "retrieved_ids": ["P0054", "P0012", "A0003", "P0101", "P0007"], "top_score": 0.71,
        "no_match": False, "intent": "search", "focus_used": False, "search": {"mode": "hybrid", "k": 5},
        "model": "bench", "first_token_s": 0.4, "answer_s": 1.9, "error": None}


def _quantiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 3),
            "max_ms": round(ordered[-1] * 1000, 3)}


def measure(url: str, turns: int) -> dict:
    """Log ``turns`` turns (one session per 4 turns, a photo each) and time both halves of each."""
    from mmsupport.store import ConversationStore

    store = ConversationStore(url)
    on_path, written = [], []
    for number in range(turns):
        session = secrets.token_hex(16) if number % 4 == 0 else session
        started = time.perf_counter()
        turn_id = store.log_turn(session, TURN, variant="control", photos=[b"photo %d" % number])
        on_path.append(time.perf_counter() - started)
        store.record_feedback(session, "thumbs", 1, turn_id=turn_id)
        store.flush()  # one turn at a time, so the write is timed alone
        written.append(time.perf_counter() - started)
    return {"dialect": store.engine.dialect.name, "turns": turns, "failures": store.failures,
            "log_turn_on_the_turn_path": _quantiles(on_path), "background_write_turn_and_vote": _quantiles(written)}


def main() -> int:
    from machine import write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", help="store to write to (default: a temp SQLite file)")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    url = args.db_url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='mmsupport-store-')) / 'conversations.db'}"
    result = measure(url, args.turns)
    write_result(args.out / f"store_log_{result['dialect']}.json", result)
    print(json.dumps(result, indent=1))
    return 0 if result["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
