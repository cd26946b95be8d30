"""Support traffic for the A/B report: scripted shoppers drive the running app over its API, then the report is built
from the rows the app logged.

    python bench/support_traffic.py                          # 400 sessions, 4 at a time, on a fresh app
    python bench/support_traffic.py --sessions 40 --db-url postgresql+psycopg://user@127.0.0.1:5432/shop
    python bench/support_traffic.py --url http://127.0.0.1:7860 --db-url sqlite:////path/conversations.db

Without ``--url`` it starts the app in a child process on the sample catalog in a temp folder, with a variants file of
two variants (``control``, and ``fts``: full-text search, top 3) and the store at ``--db-url`` (default a temp SQLite
file); the VLM is a weightless stand-in that cites what it is given, so the rows measure the app, not a model.

Each shopper (``gradio_client``, API contract of issue 13): asks 1-4 questions through ``/chat`` with its
``session_id`` (some with a photo, some about things the shop does not sell), votes thumbs on answers through
``/feedback`` (more often down after a no-match or an answer without citations), asks for a person after a no-match
now and then ("can I talk to a person?" in the chat, or ``/handoff``), and at the end marks the chat solved or "still
need help" and rates it 1-5. Behaviour depends only on what the app answered, never on the variant, so any
difference in the report comes from the app. Writes ``bench/results/support_traffic.json`` (traffic counts and the
report) and ``support_report.html``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHOTOS = sorted((REPO / "data" / "images" / "customer").glob("*.png"))
QUESTIONS = ["What is this and do you sell it?", "Do you have waterproof hiking boots?", "My watch flashes red.",
             "What is your return policy?", "Blue running shoes under 80?", "Is a torn seam covered by warranty?",
             "Do you have this in another colour?", "How do I clean a leather bag?"]
#: Questions about things the sample shop does not sell: they should come back as no-matches.
OFF_CATALOG = ["Do you sell lawn mowers?", "Can I buy a quantum flux capacitor?", "Do you repair pianos?"]
PERSON = "Can I talk to a person please?"
VARIANTS_YAML = "variants:\n  control: {weight: 1}\n  fts: {weight: 1, search_mode: fts, top_k: 3}\n"
#: The endpoints and parameters the shoppers need (issue 13's API contract); without ``/handoff`` they ask for a
#: person in the chat only.
CONTRACT = {"/chat": {"session_id"}, "/feedback": {"session_id", "kind", "value"}}


def serve(port: int, root: Path, db_url: str) -> None:
    """Child process: the app with the stand-in VLM, two variants and the store at ``db_url``, until killed."""
    from ui_load import citing_vlm

    from mmsupport.app import build_demo
    from mmsupport.config import load_settings

    (root / "variants.yaml").write_text(VARIANTS_YAML)
    settings = load_settings(db_dir=root / "db", database_url=db_url,
                             variants=root / "variants.yaml")
    build_demo(settings, vlm=citing_vlm()).launch(server_name="127.0.0.1", server_port=port, quiet=True)


def check_contract(client) -> bool:
    """Stop with a clear message when the app lacks an endpoint or parameter the shoppers need; returns whether it
    has ``/handoff``."""
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name, needed in CONTRACT.items():
        have = {parameter["parameter_name"] for parameter in endpoints.get(name, {}).get("parameters", [])}
        if name not in endpoints or not needed <= have:
            raise SystemExit(f"the app's {name} lacks {sorted(needed - have) or 'the endpoint'}: this bench needs "
                             f"issue 13's API (the sessions part merged)")
    return "/handoff" in endpoints


def shopper(client, rng: random.Random, log: list[dict], handoff_api: bool = True) -> None:
    """One scripted session; every call and its outcome is appended to ``log``."""
    from gradio_client import handle_file

    session_id = secrets.token_hex(16)
    handed_off, unhappy = False, 0

    def call(api: str, **arguments):
        sent = time.monotonic()
        try:
            reply = client.predict(**arguments, api_name=api)
        except Exception as error:  # counted in the result, never retried
            log.append({"session": session_id, "api": api, "error": f"{type(error).__name__}: {error}"})
            return None
        log.append({"session": session_id, "api": api, "seconds": time.monotonic() - sent})
        return reply

    for number in range(rng.randint(1, 4)):
        question = rng.choice(OFF_CATALOG) if rng.random() < 0.2 else rng.choice(QUESTIONS)
        photo = handle_file(str(rng.choice(PHOTOS))) if PHOTOS and rng.random() < 0.3 else None
        # mode "" and k None: the session's variant decides how to search
        reply = call("/chat", message=question, image=photo, mode="", k=None, category="", session_id=session_id)
        if reply is None:
            continue
        log[-1]["variant"] = reply.get("variant")
        poor = reply["no_match"] or not reply["citations"]
        unhappy += poor
        if rng.random() < 0.6:
            up = int(rng.random() < (0.25 if poor else 0.8))
            call("/feedback", session_id=session_id, kind="thumbs", value=up, turn_id=reply.get("turn_id"))
        if poor and rng.random() < 0.35:
            if rng.random() < 0.5 or not handoff_api:
                handed_off = bool((call("/chat", message=PERSON, image=None, mode="", k=None, category="",
                                        session_id=session_id) or {}).get("handoff"))
            else:
                handed_off = bool((call("/handoff", session_id=session_id, message=question) or {}).get("reference"))
            break
    if not handed_off and rng.random() < 0.7:
        solved = int(rng.random() < (0.3 if unhappy else 0.85))
        call("/feedback", session_id=session_id, kind="resolved", value=solved)
    if rng.random() < 0.5:
        mood = 1.5 if handed_off else 4.2 - unhappy
        call("/feedback", session_id=session_id, kind="csat", value=min(5, max(1, round(rng.gauss(mood, 1)))))


def drive(url: str, sessions: int, workers: int, seed: int) -> dict:
    """Run ``sessions`` shoppers, ``workers`` at a time, against the app at ``url``; returns the traffic figures."""
    from gradio_client import Client

    handoff_api = check_contract(Client(url, verbose=False))
    log: list[dict] = []
    numbers = iter(range(sessions))
    lock = threading.Lock()
    started = time.monotonic()

    def work():
        client = Client(url, verbose=False)
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            shopper(client, random.Random(seed * 100_003 + number), log, handoff_api)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = {api: sum(entry["api"] == api for entry in log) for api in ("/chat", "/feedback", "/handoff")}
    variants = {}
    for entry in log:
        if entry.get("variant"):
            variants.setdefault(entry["variant"], set()).add(entry["session"])
    return {"sessions": sessions, "workers": workers, "seed": seed, "seconds": round(time.monotonic() - started, 1),
            "calls": calls, "sessions_per_variant": {name: len(ids) for name, ids in sorted(variants.items())},
            "errors": [entry["error"] for entry in log if "error" in entry]}


def wait_for_app(url: str, timeout: float = 600) -> None:
    """Wait until the page answers and the catalog can be searched."""
    import httpx
    from gradio_client import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200 and Client(url, verbose=False).predict(
                    "boots", "hybrid", 1, "", api_name="/search"):
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the app at {url} did not come up within {timeout:.0f} s")


def run(sessions: int, workers: int, seed: int, db_url: str | None, url: str | None, out: Path) -> dict:
    """Drive the app (started here unless ``url`` is given), then build and write the report; returns the result."""
    from machine import write_result
    from ui_load import free_port

    from mmsupport.report import build_report
    from mmsupport.report_html import render_html
    from mmsupport.store import ConversationStore

    root = Path(tempfile.mkdtemp(prefix="mmsupport-traffic-"))
    db_url = db_url or f"sqlite:///{root / 'conversations.db'}"
    server = None
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(root), db_url], cwd=REPO,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"},
                                  stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "wb"))
    try:
        wait_for_app(url)
        traffic = drive(url, sessions, workers, seed)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    report = build_report(ConversationStore(db_url).engine)
    (out / "support_report.html").parent.mkdir(parents=True, exist_ok=True)
    (out / "support_report.html").write_text(render_html(report), encoding="utf-8")
    result = {"traffic": traffic, "report": report}
    write_result(out / "support_traffic.json", result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--workers", type=int, default=4, help="shoppers at a time")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--db-url", help="store the app writes to and the report reads (default: a temp SQLite file)")
    parser.add_argument("--url", help="drive this running app instead of starting one (give its --db-url too)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "ROOT", "DB_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]), args.serve[2])
        return 0
    if args.url and not args.db_url:
        parser.error("--url needs --db-url: the report reads the store that app writes to")
    result = run(args.sessions, args.workers, args.seed, args.db_url, args.url, args.out)
    print(json.dumps({"traffic": result["traffic"], "verdicts": result["report"]["verdicts"]}, indent=1))
    return 0 if not result["traffic"]["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
