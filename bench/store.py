"""What recording a turn in the conversation store costs the turn, on SQLite and (when it can start one) PostgreSQL.

Per turn, the chat's thread builds the row (:func:`mmsupport.app.turnlog.turn_row`), reads the photo's bytes for its
hash and queues the write (:func:`mmsupport.app.turnlog.log_turn`); that is the time the shopper could notice, and the
issue's bar is 5 ms p50. The write itself runs on the store's background thread: its latency (queued → committed)
and throughput are reported too, measured while the turns are being logged.

Turns are real: the sample catalog's retrieval-only agent answers a mix of questions (a third with a customer photo),
once, and the bench then logs them ``--turns`` times into fresh stores. PostgreSQL 15 is started from Debian's
binaries on a temporary folder and a free port (as the ``postgres`` user when run as root); it is skipped with the
reason when that is not possible. Writes bench/results/store.json.

    python bench/store.py [--turns 500]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import write_result  # noqa: E402

from mmsupport.app import turnlog  # noqa: E402
from mmsupport.config import SAMPLE_DATA_DIR, load_settings  # noqa: E402
from mmsupport.store import ConversationStore  # noqa: E402

RESULTS = REPO / "bench" / "results"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
BAR_MS = 5
QUESTIONS = ["Do you sell waterproof hiking boots?", "My watch button is flashing red, what does that mean?",
             "What is your return policy?", "Do you sell lawn mowers?", "Any running shoes in blue?",
             "The seam on my jacket tore after two months. Is that covered by the warranty?"]
PHOTOS = sorted((SAMPLE_DATA_DIR / "images" / "customer").glob("*.png"))


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def sample_turns(db_dir: Path) -> list[tuple[str, object, list[str]]]:
    """``(question, TurnResult, photo paths)`` for each question, answered by the retrieval-only agent."""
    from mmsupport.agent import Agent
    from mmsupport.catalog import ensure_sample_catalog

    settings = load_settings(db_dir=db_dir)
    agent = Agent(None, ensure_sample_catalog(settings), settings)
    turns = []
    for i, question in enumerate(QUESTIONS):
        photos = [str(PHOTOS[i % len(PHOTOS)])] if i % 3 == 0 and PHOTOS else []
        turns.append((question, agent.run_turn(question), photos))
    return turns, settings


def measure(url: str, turns: list, settings, count: int) -> dict:
    """Log ``count`` turns into the store at ``url``; the turn-side cost and the background write latency."""
    store = ConversationStore(url)
    store.log_turn("warm-up-session", {"question": "warm up", "answer": "ok"})
    store.flush()
    on_turn, queued_at, sessions = [], [], 50
    real_submit = store.submit
    committed: list[float] = []

    def timed_submit(write):
        def timed(connection):
            write(connection)
            connection.commit()  # the row is in once this returns
            committed.append(time.perf_counter())
        real_submit(timed)

    store.submit = timed_submit
    started = time.perf_counter()
    for i in range(count):
        question, result, photos = turns[i % len(turns)]
        session = {"id": f"bench-{i % sessions:04d}-{os.getpid()}", "variant": "control", "channel": "web"}
        clock = turnlog.TurnClock()
        clock.saw(result.answer)
        clock.done()
        begin = time.perf_counter()
        row = turnlog.turn_row(question, settings, clock, result=result, model="scripted")
        turnlog.log_turn(store, session, row, turnlog.photo_bytes(photos))
        end = time.perf_counter()
        on_turn.append(end - begin)
        queued_at.append(end)
        time.sleep(0.02)  # turns arrive spread out, as from shoppers (50 a second), not in one burst
    store.flush()
    elapsed = time.perf_counter() - started
    latency = [done - queued for queued, done in zip(queued_at, committed)]
    store.engine.dispose()
    return {"turns": count, "failures": store.failures,
            "on_turn_ms": {"p50": 1000 * statistics.median(on_turn), "p90": 1000 * percentile(on_turn, 0.9),
                           "max": 1000 * max(on_turn)},
            "write_latency_ms": {"p50": 1000 * statistics.median(latency), "p90": 1000 * percentile(latency, 0.9)},
            "turns_per_s_written": count / elapsed,
            "meets_bar": 1000 * statistics.median(on_turn) <= BAR_MS}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres():
    """A throw-away PostgreSQL 15 on a free local port; yields its URL, or a string saying why there is none."""
    if not (PG_BIN / "initdb").exists():
        yield "skipped: /usr/lib/postgresql/15/bin/initdb is absent (apt-get install postgresql)"
        return
    folder = Path(tempfile.mkdtemp(prefix="mmsupport-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    port, data = _free_port(), folder / "data"
    run = lambda *args: subprocess.run([*as_user, *map(str, args)], check=True, capture_output=True)  # noqa: E731
    try:
        run(PG_BIN / "initdb", "-D", data, "-U", "bench", "--auth=trust")
        run(PG_BIN / "pg_ctl", "-D", data, "-l", folder / "log", "-w", "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
        run(PG_BIN / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "bench", "support")
        yield f"postgresql+psycopg://bench@127.0.0.1:{port}/support"
    except subprocess.CalledProcessError as error:
        yield f"skipped: {Path(error.cmd[len(as_user)]).name} failed: {error.stderr.decode()[-300:]}"
    finally:
        subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        turns, settings = sample_turns(Path(scratch) / "db")
        results = {"sqlite": measure(f"sqlite:///{Path(scratch) / 'conversations.db'}", turns, settings, args.turns)}
        with postgres() as url:
            results["postgresql"] = measure(url, turns, settings, args.turns) if url.startswith("postgresql") \
                else {"skipped": url}
    result = {"bar_on_turn_p50_ms": BAR_MS, "stores": results}
    write_result(RESULTS / "store.json", result)
    for name, figures in results.items():
        print(name, {k: v for k, v in figures.items()})


if __name__ == "__main__":
    main()
