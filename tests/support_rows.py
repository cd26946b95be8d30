"""Generated support traffic written straight into a conversation store, for report tests and the notebook test.

Random but seeded: sessions of two variants with turns (scores, no-matches, timings), thumbs votes, solved / still
need help marks, CSAT ratings and hand-off tickets. :func:`fill` returns what it wrote, so tests can compute the
expected figures from it without reading the store back through the report.
"""

from __future__ import annotations

import random
import secrets

from mmsupport.store import ConversationStore


#: Each variant's chance that its shopper marks a session solved, so the variants differ.
SOLVED = {"control": 0.55, "fts": 0.75}


def fill(store: ConversationStore, sessions: int = 120, seed: int = 7,
         variants: dict[str, float] | None = None) -> list[dict]:
    """Write ``sessions`` generated sessions; returns one dict per session with everything written for it.

    ``variants`` maps each variant to the chance its shopper marks a session solved (default :data:`SOLVED`).
    """
    variants = variants or SOLVED
    rng = random.Random(seed)
    written = []
    for _ in range(sessions):
        variant = rng.choice(list(variants))
        session = {"id": secrets.token_hex(16), "variant": variant, "turns": [], "thumbs": [], "marks": [],
                   "ratings": [], "tickets": 0}
        for _ in range(rng.randint(1, 4)):
            turn = {"question": "where is my order?", "answer": "It is on its way.",
                    "top_score": None if rng.random() < 0.1 else round(rng.random(), 3),
                    "no_match": rng.random() < 0.2,
                    "first_token_s": None if rng.random() < 0.05 else round(rng.uniform(0.2, 3.0), 3),
                    "answer_s": round(rng.uniform(1.0, 9.0), 3)}
            turn_id = store.log_turn(session["id"], turn, variant=variant, channel=rng.choice(["web", "api"]))
            session["turns"].append(turn)
            if rng.random() < 0.5:
                vote = int(rng.random() < 0.6)
                store.record_feedback(session["id"], "thumbs", vote, turn_id=turn_id, variant=variant)
                session["thumbs"].append(vote)
        roll = rng.random()
        if roll < 0.6:
            mark = int(rng.random() < variants[variant])
            store.record_feedback(session["id"], "resolved", mark, variant=variant)
            session["marks"].append(mark)
        if rng.random() < 0.5:
            rating = rng.randint(1, 5)
            store.record_feedback(session["id"], "csat", rating, variant=variant)
            session["ratings"].append(rating)
        if rng.random() < 0.2:
            store.open_ticket(session["id"], reason="asked", transcript=[], variant=variant)
            session["tickets"] = 1
        written.append(session)
    store.flush()
    return written
