"""Choosing a runtime per host: the probe picks the clearly faster candidate and each CPU probes once."""

import json
import time

import pytest

from mmsupport.config import load_settings
from mmsupport.embeddings import Embedder
from mmsupport.host import cpu_signature, fastest


def never():
    raise AssertionError("a remembered choice must not be timed again")


def test_the_clearly_faster_candidate_wins_and_the_verdict_is_remembered_per_choice(tmp_path):
    assert fastest("demo", {"slow": lambda: time.sleep(0.2), "quick": lambda: None}, tmp_path) == "quick"
    assert fastest("demo", {"slow": never, "quick": never}, tmp_path) == "quick"
    assert fastest("other", {"quick": lambda: None, "slow": lambda: time.sleep(0.2)}, tmp_path) == "quick"
    record = json.loads((tmp_path / "runtime-choices.json").read_text())
    assert set(record) == {f"demo|{cpu_signature()}", f"other|{cpu_signature()}"}
    assert record[f"demo|{cpu_signature()}"]["seconds"]["slow"] >= 0.2


def test_a_burst_of_load_during_one_timed_run_does_not_decide(tmp_path):
    calls = []

    def preferred():  # as fast as can be, but its first timed run meets a busy machine
        calls.append(None)
        if len(calls) == 2:
            time.sleep(0.3)

    assert fastest("burst", {"preferred": preferred, "other": lambda: time.sleep(0.05)}, tmp_path) == "preferred"


def test_a_verdict_naming_a_runtime_no_longer_offered_is_probed_again(tmp_path):
    (tmp_path / "runtime-choices.json").write_text(json.dumps({f"demo|{cpu_signature()}": {"chosen": "gone"}}))
    assert fastest("demo", {"here": lambda: None}, tmp_path) == "here"


def test_a_verdict_that_did_not_time_a_runtime_now_offered_is_probed_again(tmp_path):
    verdict = {"chosen": "old", "seconds": {"old": 0.1}}
    (tmp_path / "runtime-choices.json").write_text(json.dumps({f"demo|{cpu_signature()}": verdict}))
    assert fastest("demo", {"old": lambda: time.sleep(0.2), "new": lambda: None}, tmp_path) == "new"


def test_an_unreadable_record_is_probed_again_and_replaced(tmp_path):
    (tmp_path / "runtime-choices.json").write_text("{not json")
    assert fastest("demo", {"only": lambda: None}, tmp_path) == "only"
    assert json.loads((tmp_path / "runtime-choices.json").read_text())[f"demo|{cpu_signature()}"]["chosen"] == "only"


@pytest.fixture(scope="module")
def auto(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return Embedder(load_settings().embedding_model, runtime="auto", cache_dir=cache), cache


def test_auto_embedding_probes_batches_and_queries_once_per_cpu(auto):
    embedder, cache = auto
    record = json.loads((cache / "runtime-choices.json").read_text())
    chosen = {key.split(" ")[2]: verdict["chosen"] for key, verdict in record.items()}
    assert chosen == {"batches": embedder.batch_runtime, "queries": embedder.runtime}
    timed = {key.split(" ")[2]: set(verdict["seconds"]) for key, verdict in record.items()}
    assert timed == {"batches": {"onnx", "torch"}, "queries": {"onnx", "onnx-int8", "torch"}}


def test_auto_embedding_follows_the_recorded_verdicts(auto):
    embedder, cache = auto
    record = cache / "runtime-choices.json"
    verdicts = json.loads(record.read_text())
    record.write_text(json.dumps({key: {"chosen": "torch"} for key in verdicts}))
    on_torch = Embedder(embedder.name, runtime="auto", cache_dir=cache)
    assert (on_torch.batch_runtime, on_torch.runtime) == ("torch", "torch")
    texts = ["red running shoe", "Headset blinking blue means pairing mode"]
    reference = Embedder(embedder.name, runtime="onnx", cache_dir=cache)
    assert (on_torch.embed(texts) * reference.embed(texts)).sum(axis=1).min() > 0.9999
    record.write_text(json.dumps({key: {"chosen": "onnx"} for key in verdicts}))
    on_onnx = Embedder(embedder.name, runtime="auto", cache_dir=cache)
    assert (on_onnx.batch_runtime, on_onnx.runtime) == ("onnx", "onnx")
    record.write_text(json.dumps({key: {"chosen": "onnx" if "batches" in key else "onnx-int8"} for key in verdicts}))
    on_int8 = Embedder(embedder.name, runtime="auto", cache_dir=cache)
    assert (on_int8.batch_runtime, on_int8.runtime) == ("onnx", "onnx-int8")
    query = "waterproof hiking backpack"
    assert 0.998 < float(on_int8.embed_query(query) @ reference.embed_query(query)) < 0.99999
