"""What one agent turn costs around the model, on a real 12k-row catalog, and where the no-match threshold sits.

Overhead: two-turn conversations built from the Myntra known-item queries of ``queries/dev.jsonl`` (every third
first turn carries a real customer photo from the CC0 clothing dataset; the second turn is a follow-up, "Do you have
it in another colour?") run through :class:`mmsupport.agent.Agent` on the Myntra catalog (12,491 rows; ingested on
first run). Per turn, overhead = total time minus model time (describe + generate): checks, image loading, query
building, query embedding (also reported on its own), hybrid search, the no-match check, prompt building, citation
checks. Measured twice: with a scripted model (model time ~0, so the turn is pure overhead) and with the tiny random
VLM of ``tests/tiny_models.py`` through the real transformers path (its model time is tiny and says nothing about a
real model; the SmolVLM-256M architecture figures from ``bench/results/vlm.json`` are copied beside it if present).

Calibration: the best cosine similarity between a query and its catalog (what ``settings.no_match_threshold`` is compared
with) for the dev queries (all should match) and off-topic shop questions (none should), plus the same for every turn
of ``data/conversations.jsonl`` on the sample catalog (retrieval-only agent). Writes bench/results/agent.json and
agent.png. The CPU is shared: timings are noisy.

Photo turn (``--photo-turn ROUNDS``, needs only the repo and llama-cpp-python): :func:`photo_turns`, the end-to-end
time of a photo + question turn on the real architecture, transformers int8-dynamic against llama.cpp (in the text
weights its build runs fastest); writes bench/results/agent_photo_turn.json.

    python bench/agent.py [--evaldata ../shared/evaldata] [--db /tmp/mmsupport-agent-bench] [--turns 60]
    python bench/agent.py --photo-turn 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the scripted and tiny test models

from fakes import ScriptedVLM  # noqa: E402

from mmsupport.agent import Agent  # noqa: E402
from mmsupport.catalog import Catalog, ensure_sample_catalog  # noqa: E402
from mmsupport.evaluation import evaluate_agent, load_conversations  # noqa: E402
from mmsupport.images import image_digest  # noqa: E402
from mmsupport.safety import clean  # noqa: E402
from mmsupport.config import NO_MATCH_THRESHOLD, SAMPLE_DATA_DIR, load_settings  # noqa: E402
from machine import write_result  # noqa: E402

RESULTS = REPO / "bench" / "results"
#: Agent overhead per turn (p50, scripted model) the issue asks for, with the follow-up, intent and variant checks.
BAR_MS = 30
#: Questions a clothing shop cannot answer with a product.
OFF_TOPIC = [
    "Do you sell lawn mowers?", "Do you sell dog food?", "car tyres for a hatchback", "Do you sell washing machines?",
    "prescription glasses", "a gaming laptop with 32 GB RAM", "fresh salmon fillets", "How do I file my taxes?",
    "cordless drill with two batteries", "a king size mattress", "baby formula", "garden hose 30 m",
    "an electric scooter for commuting", "Do you repair iPhones?", "printer ink cartridges", "a kitchen blender",
    "vitamin D supplements", "aquarium filter for 100 litres", "What time does the train to Leeds leave?",
    "paint for a bathroom ceiling",
]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def myntra_catalog(db: str, evaldata: Path) -> Catalog:
    catalog = Catalog.open(load_settings(db_dir=db, table="myntra"), create=True)
    if len(catalog) == 0:
        catalog.ingest_csv(evaldata / "myntra-fashion-products-catalog/myntra_products_catalog.csv",
                           id_col="Product_ID", title_col="Product_Name", text_cols=["Description"])
    return catalog


def dev_queries(evaldata: Path) -> list[str]:
    return [json.loads(line)["query"] for line in (evaldata / "queries/dev.jsonl").read_text().splitlines()
            if json.loads(line)["catalog"] == "myntra"]


def conversations(evaldata: Path, turns: int) -> list[list[tuple[str, list]]]:
    queries = dev_queries(evaldata)
    photos = sorted((evaldata / "clothing-dataset-user-photos/images").glob("*.jpg"))
    return [[(query, [photos[i % len(photos)]] if i % 3 == 0 and photos else []),
             ("Do you have it in another colour?", [])] for i, query in enumerate(queries[: turns // 2])]


class EmbeddingClock:
    """Adds up the time the catalog's text embedder spends encoding queries (part of the overhead)."""

    def __init__(self, embedder):
        self.seconds = 0.0
        encode = embedder._encode

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return encode(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        embedder._encode = timed


def time_turns(agent: Agent, convs, clock: EmbeddingClock) -> list[dict]:
    rows = []
    for conv in convs:
        history = []
        for message, images in conv:
            clock.seconds = 0.0
            result = agent.run_turn(message, images, history)
            history = result.history
            t = result.timings
            rows.append({"overhead_ms": 1000 * t["overhead"], "model_ms": 1000 * (t["describe"] + t["generate"]),
                         "search_ms": 1000 * t["search"], "query_embedding_ms": 1000 * clock.seconds,
                         "overhead_without_embedding_ms": 1000 * (t["overhead"] - clock.seconds),
                         "images": len(images)})
    return rows


def summary(rows: list[dict]) -> dict:
    out = {"turns": len(rows)}
    for key in ("overhead_ms", "overhead_without_embedding_ms", "query_embedding_ms", "search_ms", "model_ms"):
        values = [row[key] for row in rows]
        out[key] = {"p50": round(statistics.median(values), 2), "p90": round(percentile(values, 0.9), 2),
                    "max": round(max(values), 2)}
    return out


#: A photo turn's bar: llama.cpp's end-to-end time at most this fraction of today's CPU default (int8-dynamic).
PHOTO_TURN_BAR = 0.5
PHOTO_TURN_TOKENS = 100


class AlwaysDescribed:
    """``vlm``, whose photo descriptions are never empty. Random weights sometimes write only tokens that decode to
    nothing, and the answering call would then send the photo again, as it does for a photo a real model could not
    describe; so an empty description becomes "a product photo" and the start of the photo's digest (two photos never
    make the same prompt). The model's time (all its tokens) is kept."""

    def __init__(self, vlm):
        self.vlm = vlm

    def __getattr__(self, name):
        return getattr(self.vlm, name)

    def describe(self, image, **kwargs) -> str:
        return clean(self.vlm.describe(image, **kwargs)) or f"a product photo {image_digest(image)[:12]}"


def photo_turns(rounds: int) -> dict:
    """A photo + question turn end to end on SmolVLM-256M's architecture (random weights, ``build_random_smolvlm``):
    describe the photo, search the sample catalog, answer in :data:`PHOTO_TURN_TOKENS` tokens, with transformers
    int8-dynamic (today's CPU default) and llama.cpp as the app loads it (``MMSUPPORT_RUNTIME=llamacpp``: bf16 or q8_0
    by build, flash attention and the vision encoder's precision as timed on this CPU), timed interleaved, a new
    photo each round so no description is cached. Also the answer's time to first token (its prompt's prefill:
    system prompt, retrieved items, description and question)."""
    from vlm import build_random_smolvlm

    from mmsupport.llamacpp import build_tuning, load_llamacpp
    from mmsupport.vlm import TransformersVLM

    photos = sorted((SAMPLE_DATA_DIR / "images" / "customer").glob("*.png"))[:rounds]
    llamacpp = f"llamacpp {build_tuning()[0]}"
    with tempfile.TemporaryDirectory() as folder:
        model = build_random_smolvlm(Path(folder) / "smolvlm-256m-random")
        # random weights describe a photo in random words, which match nothing: with no threshold the model still
        # answers from the retrieved items, as it does for a real photo
        settings = load_settings(db_dir=Path(folder) / "db", cache_dir=Path(folder) / "cache", model=str(model),
                                 max_new_tokens=PHOTO_TURN_TOKENS, no_match_threshold=-1.0)
        catalog = ensure_sample_catalog(settings)
        torch_vlm = TransformersVLM(str(model), quantization="int8-dynamic", max_new_tokens=PHOTO_TURN_TOKENS)
        torch_vlm.model.generation_config.min_new_tokens = PHOTO_TURN_TOKENS  # random weights stop at random
        llama_vlm = load_llamacpp(settings)
        chosen = {"flash_attn": bool(llama_vlm.llama.context_params.flash_attn_type),
                  "vision": llama_vlm.vision.precision}
        agents = {"transformers int8-dynamic": Agent(AlwaysDescribed(torch_vlm), catalog, settings),
                  llamacpp: Agent(AlwaysDescribed(llama_vlm), catalog, settings)}
        for agent in agents.values():  # warm up: kernels, the catalog's embedder, llama.cpp's mapped weights, and
            for question in ("Do you sell running shoes?", "Where is my parcel?"):  # what every answer begins with
                agent.run_turn(question)
        rows: dict[str, list[dict]] = {name: [] for name in agents}
        for photo in photos:
            for name, agent in agents.items():
                timings = agent.run_turn("Do you sell these, and in which sizes?", [photo]).timings
                if not timings["generate"]:
                    raise RuntimeError(f"{name}: the turn was answered without the model")
                rows[name].append({**{k: round(v, 3) for k, v in timings.items()},
                                   "answer_ttft_s": agent.vlm.last_stats["ttft_s"],
                                   "answer_tokens": agent.vlm.last_stats["decode_tokens"],
                                   "answer_decode_tok_s": agent.vlm.last_stats["decode_tok_s"]})
    medians = {name: statistics.median(row["total"] for row in runs) for name, runs in rows.items()}
    answer_ttft = {name: statistics.median(row["answer_ttft_s"] for row in runs) for name, runs in rows.items()}
    ratio = medians[llamacpp] / medians["transformers int8-dynamic"]
    return {"model_architecture": "HuggingFaceTB/SmolVLM-256M-Instruct (random weights)", "rounds": len(photos),
            "answer_tokens": PHOTO_TURN_TOKENS, "median_total_s": {k: round(v, 3) for k, v in medians.items()},
            "median_answer_ttft_s": {k: round(v, 3) for k, v in answer_ttft.items()},
            "llamacpp_over_int8": round(ratio, 3), "bar": PHOTO_TURN_BAR, "meets_bar": ratio <= PHOTO_TURN_BAR,
            "llamacpp_chosen_here": chosen,
            "turns": rows, "load_average_1m_at_end": round(os.getloadavg()[0], 1),
            "note": "one vision pass per photo turn (the answer reads the description); shared 2-core CPU, the two "
                    "runtimes timed interleaved turn by turn"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaldata", type=Path, default=REPO.parent / "shared" / "evaldata")
    parser.add_argument("--db", default="/tmp/mmsupport-agent-bench")
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--photo-turn", type=int, metavar="ROUNDS", help="only time a photo + question turn on the "
                        "real architecture, transformers against llama.cpp (writes agent_photo_turn.json)")
    args = parser.parse_args()
    if args.photo_turn:
        result = photo_turns(args.photo_turn)
        write_result(RESULTS / "agent_photo_turn.json", result)
        print(json.dumps(result, indent=2))
        return

    catalog = myntra_catalog(args.db, args.evaldata)
    settings = catalog.settings
    convs = conversations(args.evaldata, args.turns)
    scripted = ScriptedVLM(default="The closest match is [1].", description="a person wearing a blue cotton shirt")
    agent = Agent(scripted, catalog, settings)
    clock = EmbeddingClock(catalog.embedder)
    time_turns(agent, convs[:2], clock)  # warm up: embedder, tables, caches
    scripted_rows = time_turns(agent, convs, clock)

    from tiny_models import build_tiny_vlm

    from mmsupport.vlm import TransformersVLM

    with tempfile.TemporaryDirectory() as folder:
        tiny = TransformersVLM(str(build_tiny_vlm(Path(folder), "idefics3")), max_new_tokens=32)
        tiny_rows = time_turns(Agent(tiny, catalog, settings), convs[: max(2, len(convs) // 3)], clock)

    def best_cosine(query: str) -> float:
        return catalog.search(query, mode="vector", k=1)[0].score

    on_topic = [best_cosine(query) for query in dev_queries(args.evaldata)]
    off_topic = {query: best_cosine(query) for query in OFF_TOPIC}
    with tempfile.TemporaryDirectory() as folder:
        sample_settings = load_settings(db_dir=folder)
        report = evaluate_agent(Agent(None, ensure_sample_catalog(sample_settings), sample_settings),
                                load_conversations(SAMPLE_DATA_DIR / "conversations.jsonl"), progress=False)
        sample = Catalog.open(sample_settings)
        sample_cosines = [(sample.search(r["query"], mode="vector", k=1)[0].score, r["expect_no_match"])
                          for r in report["records"] if r["query"]]

    result = {
        "catalog_rows": len(catalog), "search_mode": settings.search_mode, "top_k": settings.top_k,
        "scripted_model": summary(scripted_rows),
        "tiny_random_vlm": summary(tiny_rows),
        "bar_overhead_p50_ms": BAR_MS,
        "meets_bar": statistics.median(r["overhead_ms"] for r in scripted_rows) <= BAR_MS,
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "no_match_threshold": NO_MATCH_THRESHOLD,
        "calibration": {
            "dev_queries_myntra": {"n": len(on_topic), "min": round(min(on_topic), 3),
                                   "p05": round(percentile(on_topic, 0.05), 3),
                                   "below_threshold": sum(c < NO_MATCH_THRESHOLD for c in on_topic)},
            "off_topic_myntra": {"n": len(off_topic), "max": round(max(off_topic.values()), 3),
                                 "above_threshold": {q: round(c, 3) for q, c in off_topic.items()
                                                     if c >= NO_MATCH_THRESHOLD}},
            "sample_conversations": {
                "matching_min": round(min(c for c, no in sample_cosines if not no), 3),
                "no_match_max": round(max(c for c, no in sample_cosines if no), 3),
                "no_match_accuracy": report["no_match_accuracy"], "hit_rate": report["hit_rate"]},
        },
        "timed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "shared 2-core CPU, noisy; overhead excludes describe + generate",
    }
    vlm_json = RESULTS / "vlm.json"
    if vlm_json.is_file():
        vlm = json.loads(vlm_json.read_text())
        default = next((s for s in vlm["settings"] if s["setting"] == vlm.get("default_cpu_setting")), None)
        result["smolvlm_256m_reference"] = {"from": "bench/results/vlm.json", **(default or {})}
    write_result(RESULTS / "agent.json", result)
    plot(scripted_rows, tiny_rows, on_topic, list(off_topic.values()), sample_cosines)
    print(json.dumps(result, indent=2))


def plot(scripted_rows, tiny_rows, on_topic, off_topic, sample_cosines) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.boxplot([[r["overhead_ms"] for r in scripted_rows], [r["overhead_without_embedding_ms"] for r in scripted_rows],
                  [r["overhead_ms"] for r in tiny_rows], [r["model_ms"] for r in tiny_rows]], showfliers=False)
    left.set_xticks([1, 2, 3, 4], ["overhead\n(scripted)", "overhead minus\nquery embedding", "overhead\n(tiny VLM)",
                                   "model time\n(tiny VLM)"])
    left.axhline(BAR_MS, color="red", linestyle="--", label=f"{BAR_MS} ms bar")
    left.set_ylabel("ms per turn")
    left.set_title("Agent turn on a 12k-row catalog")
    left.legend()
    bins = [i / 40 for i in range(41)]
    right.hist(on_topic, bins=bins, alpha=0.6, label="dev queries (Myntra)")
    right.hist(off_topic, bins=bins, alpha=0.6, label="off-topic (Myntra)")
    right.hist([c for c, no in sample_cosines if not no], bins=bins, alpha=0.6, label="sample turns, matching")
    right.hist([c for c, no in sample_cosines if no], bins=bins, alpha=0.6, label="sample turns, no match")
    right.axvline(NO_MATCH_THRESHOLD, color="red", linestyle="--", label="threshold")
    right.set_xlabel("best cosine similarity of the query to the catalog")
    right.set_title("No-match calibration")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "agent.png", dpi=120)


if __name__ == "__main__":
    main()
