"""Load test of the app: concurrent HTTP sessions sending photo + question turns to ``/chat`` on 127.0.0.1, while a
few other clients search the catalog through ``/search``.

    python bench/ui_load.py                          # 20 chat sessions and 4 searchers for 120 s
    python bench/ui_load.py --sessions 5 --searchers 2 --seconds 30

Starts the app in a child process on a fresh sample catalog in a temp folder (catalog, agent and UI run for real; the
VLM is a weightless stand-in that cites what it is given, so the figures measure the app, not a model), records how
long the page and the catalog take to come up on a first start and how long one search takes alone, then runs the
sessions and samples the server's RSS.
Writes ``bench/results/ui_load.json`` and ``ui_load.png``. The CPU is shared on dev machines: timings are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHOTOS = sorted((REPO / "data" / "images" / "customer").glob("*.png"))
QUESTIONS = [
    "What is this and do you sell it?",
    "Is this covered by the warranty?",
    "Do you have this in another colour?",
    "How do I fix this?",
]
SEARCHES = ["waterproof hiking boots", "my watch flashes red", "return policy", "blue running shoes",
            "leather bag", "warranty for a torn seam"]
#: A searcher's pause between searches, as a person reading the results would.
SEARCH_PAUSE = 0.25


def citing_vlm():
    """A stand-in VLM with no weights: it cites the first catalog item it is given, in small streamed pieces.

    Unlike tests/fakes.py's ScriptedVLM it keeps no record of the conversations, so memory measures the app.
    """
    from mmsupport.safety import data_items
    from mmsupport.vlm import VLM

    class CitingVLM(VLM):
        name = "citing-stub"

        def stream(self, messages, **kwargs):
            content = messages[-1]["content"]
            text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
            found = data_items(text)
            reply = f"The best match is {found[0]['title']} [{found[0]['id']}]." if found else "a product photo"
            for start in range(0, len(reply), 8):
                yield reply[start:start + 8]

    return CitingVLM()


def serve(port: int, db_dir: Path) -> None:
    """Child process: build the app with the stand-in VLM and serve it until killed."""
    from mmsupport.config import load_settings
    from mmsupport.app import build_demo

    settings = load_settings(db_dir=db_dir)
    build_demo(settings, vlm=citing_vlm()).launch(server_name="127.0.0.1", server_port=port, quiet=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` is true; raises if it is not within ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception:  # the server is not up yet
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def _latencies(calls: list[dict], prefix: str) -> dict:
    latencies = sorted(c["seconds"] for c in calls) or [float("nan")]
    return {f"{prefix}p50": round(statistics.median(latencies), 3),
            f"{prefix}p95": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            f"{prefix}max": round(latencies[-1], 3)}


class HttpClient:
    """The app's HTTP API spoken as any non-Python client would (Gradio's ``/gradio_api/call`` protocol: an upload,
    a POST, then the result as server-sent events), on one asyncio loop. gradio_client's threads and polling took
    about 1.4 of the 2 cores of a dev machine to drive this load, starving the server they measured; this client
    takes a small share (``client_cpu_s`` in the result), as shoppers' browsers on other machines would."""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.AsyncClient(base_url=url, timeout=300)

    async def upload(self, path: Path) -> dict:
        """Upload a file; the value that names it in a call."""
        response = await self.http.post("/gradio_api/upload",
                                        files={"files": (path.name, path.read_bytes(), "image/png")})
        response.raise_for_status()
        return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}

    async def call(self, api: str, *data):
        """Call endpoint ``api`` with its inputs ``data``; its output, or ``RuntimeError`` with the server's error."""
        response = await self.http.post(f"/gradio_api/call/{api}", json={"data": list(data)})
        response.raise_for_status()
        event = None
        async with self.http.stream("GET", f"/gradio_api/call/{api}/{response.json()['event_id']}") as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line.partition(":")[2].strip()
                    if event == "error":
                        raise RuntimeError(f"/{api}: {payload}")
                    return json.loads(payload)[0]
        raise RuntimeError(f"/{api}: the event stream ended without a result")

    async def chat(self, question: str, photo: Path) -> dict:
        return await self.call("chat", question, await self.upload(photo), "hybrid", 5, "", None, None)

    async def search(self, query: str) -> list:
        return await self.call("search", query, "hybrid", 5, "", None)

    async def close(self) -> None:
        await self.http.aclose()


def run_load(sessions: int = 20, seconds: float = 120.0, workdir: Path | None = None, searchers: int = 4,
             max_sessions: int | None = None) -> dict:
    """Run the load test and return its figures (see the module docstring). ``max_sessions``: the server's
    ``MMSUPPORT_MAX_SESSIONS`` (``None``: the app's default)."""
    import asyncio

    import httpx
    import psutil

    workdir = Path(workdir or tempfile.mkdtemp(prefix="mmsupport-load-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(workdir / "db")], cwd=REPO,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                                   **({"MMSUPPORT_MAX_SESSIONS": str(max_sessions)} if max_sessions else {})},
                              stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"))
    rss: list[tuple[float, float]] = []
    turns: list[dict] = []
    searches: list[dict] = []
    alone: list[dict] = []  # one client searching on an otherwise idle server: the figure load is compared with
    errors: list[str] = []
    cpu: dict[str, float] = {}

    async def load() -> tuple[float, float]:
        probe = HttpClient(url)
        page_up = await asyncio.to_thread(wait_until, lambda: httpx.get(url, timeout=2).status_code == 200, 300,
                                          "the page")
        catalog_up = time.monotonic()
        while True:
            try:
                if await probe.search("boots"):
                    break
            except (httpx.HTTPError, RuntimeError):  # the server is still loading the catalog
                if time.monotonic() - catalog_up > 600:
                    raise
            await asyncio.sleep(0.2)
        catalog_up = time.monotonic() - catalog_up
        for query in SEARCHES * 2:
            sent = time.monotonic()
            await probe.search(query)
            alone.append({"seconds": time.monotonic() - sent})
        await probe.close()
        process, me = psutil.Process(server.pid), psutil.Process()
        server_cpu, client_cpu = sum(process.cpu_times()[:2]), sum(me.cpu_times()[:2])
        load_start = time.monotonic()

        async def sample_rss():
            while time.monotonic() - load_start < seconds:
                rss.append((time.monotonic() - load_start, process.memory_info().rss / 2**20))
                await asyncio.sleep(0.5)

        async def session(number: int):
            client, turn = HttpClient(url), 0
            while time.monotonic() - load_start < seconds:
                photo, question = PHOTOS[(number + turn) % len(PHOTOS)], QUESTIONS[turn % len(QUESTIONS)]
                sent = time.monotonic()
                try:
                    answered = bool((await client.chat(question, photo))["answer"].strip())
                except Exception as error:  # every failure is counted and reported, none is retried
                    errors.append(f"session {number}: {type(error).__name__}: {error}")
                    answered = False
                turns.append({"session": number, "sent": sent - load_start,
                              "seconds": time.monotonic() - sent, "answered": answered})
                turn += 1
            await client.close()

        async def searcher(number: int):
            client, call = HttpClient(url), 0
            while time.monotonic() - load_start < seconds:
                sent = time.monotonic()
                try:
                    found = bool(await client.search(SEARCHES[(number + call) % len(SEARCHES)]))
                except Exception as error:
                    errors.append(f"searcher {number}: {type(error).__name__}: {error}")
                    found = False
                searches.append({"searcher": number, "sent": sent - load_start,
                                 "seconds": time.monotonic() - sent, "found": found})
                call += 1
                await asyncio.sleep(SEARCH_PAUSE)
            await client.close()

        await asyncio.gather(sample_rss(), *(session(n) for n in range(sessions)),
                             *(searcher(n) for n in range(searchers)))
        cpu["server_cpu_s"] = round(sum(process.cpu_times()[:2]) - server_cpu, 1)
        cpu["client_cpu_s"] = round(sum(me.cpu_times()[:2]) - client_cpu, 1)
        return page_up, catalog_up

    try:
        page_up, catalog_up = asyncio.run(load())
    finally:
        server.terminate()
        server.wait(30)

    warm_rss = [mb for at, mb in rss if at >= min(10.0, seconds / 4)]
    return {
        "sessions": sessions, "seconds": seconds, "turns": len(turns),
        "answered": sum(t["answered"] for t in turns), "errors": errors,
        "turns_per_second": round(len(turns) / seconds, 2),
        **_latencies(turns, "latency_"),
        "searchers": searchers, "searches": len(searches), "searches_found": sum(c["found"] for c in searches),
        **_latencies(searches, "search_latency_"), **_latencies(alone, "search_alone_"),
        "rss_mb_start": round(rss[0][1], 1), "rss_mb_warm": round(warm_rss[0], 1),
        "rss_mb_peak": round(max(mb for _, mb in rss), 1), "rss_mb_end": round(rss[-1][1], 1),
        "page_up_seconds": round(page_up, 1), "catalog_ready_seconds": round(catalog_up + page_up, 1),
        "since_spawn_seconds": round(time.monotonic() - started, 1), **cpu,
        "cpu_count": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "timeline": {"turns": turns, "searches": searches, "rss": rss},
    }


def plot(result: dict, path: Path) -> None:
    """Latency of every turn over time, and the server's RSS, on one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    turns = result["timeline"]["turns"]
    top.scatter([t["sent"] for t in turns], [t["seconds"] for t in turns], s=6,
                c=["tab:blue" if t["answered"] else "tab:red" for t in turns],
                label=f"/chat p50 {result['latency_p50']:.2f} s, p95 {result['latency_p95']:.2f} s")
    searches = result["timeline"]["searches"]
    top.scatter([c["sent"] for c in searches], [c["seconds"] for c in searches], s=6, c="tab:orange",
                label=f"/search p50 {result['search_latency_p50']:.2f} s, p95 {result['search_latency_p95']:.2f} s")
    top.set_ylabel("latency (s)")
    top.legend(loc="upper right")
    top.set_title(f"{result['sessions']} sessions sending photo + question turns to /chat, {result['searchers']} "
                  f"searching ({result['turns']} turns, {result['searches']} searches, "
                  f"{len(result['errors'])} errors)", fontsize=9)
    bottom.plot(*zip(*result["timeline"]["rss"]), color="tab:green")
    bottom.set_ylabel("server RSS (MiB)")
    bottom.set_xlabel("seconds since the load started")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    from machine import write_result  # bench/ is on the path when run as a script; tests import this module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--searchers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DB_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return 0
    result = run_load(args.sessions, args.seconds, searchers=args.searchers)
    write_result(args.out / "ui_load.json", result)
    plot(result, args.out / "ui_load.png")
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=1))
    answered = result["answered"] == result["turns"] and result["searches_found"] == result["searches"]
    return 0 if not result["errors"] and answered else 1


if __name__ == "__main__":
    sys.exit(main())
