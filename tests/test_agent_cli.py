"""The chat and eval agent commands on the real sample catalog; the tiny real VLM end to end (slow)."""

import json

import pytest

from mmsupport.__main__ import main
from mmsupport.config import SAMPLE_DATA_DIR

NO_MODEL = "/nonexistent/model-folder"  # fails to load at once: the commands answer retrieval-only


def chat_json(capsys, *argv) -> dict:
    assert main(["chat", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_chat_without_a_model_prints_a_grounded_json_answer(sample_catalog_settings, capsys):
    db = str(sample_catalog_settings.db_dir)
    assert main(["chat", "Looking for a navy zip hoodie", "--db", db, "--model", NO_MODEL, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "answering without the model" in captured.err
    assert result["model"] is None and result["no_match"] is False
    assert result["items"][0]["id"] == "P0028" and isinstance(result["items"][0]["score"], float)
    assert result["citations"] == [item["id"] for item in result["items"]]
    assert result["steps"][0]["tool"] == "search_catalog" and result["steps"][0]["result_ids"][0] == "P0028"


def test_chat_says_when_nothing_matches(sample_catalog_settings, capsys):
    result = chat_json(capsys, "Do you sell lawn mowers?", "--db", str(sample_catalog_settings.db_dir),
                       "--model", NO_MODEL)
    assert result["no_match"] is True and result["items"] == [] and "support team" in result["answer"]


def test_chat_rejects_a_bad_image_in_one_line(sample_catalog_settings, tmp_path, capsys):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not an image")
    code = main(["chat", "what is this?", "--image", str(bad), "--db", str(sample_catalog_settings.db_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_eval_agent_reports_hit_rate_citation_validity_and_no_match(sample_catalog_settings, tmp_path, capsys):
    conversations = tmp_path / "conversations.jsonl"
    conversations.write_text("\n".join(json.dumps(c) for c in [
        {"id": "a", "turns": [
            {"message": "Looking for a navy zip hoodie", "image": None, "relevant": ["P0028"],
             "expect_no_match": False},
            {"message": "Can I put it in the washing machine?", "image": None, "relevant": ["P0028"],
             "expect_no_match": False}]},
        {"id": "b", "turns": [{"message": "Do you sell dog food?", "image": None, "relevant": [],
                               "expect_no_match": True}]},
        {"id": "c", "turns": [{"message": "Do you have this leather work tote in black?",
                               "image": "data/images/P0096.png",
                               "relevant": ["P0097"], "expect_no_match": False}]},
        {"id": "d", "turns": [
            {"message": "Do you sell jackets?", "relevant": ["P0012"]},
            {"message": "Do you sell backpacks?", "relevant": ["P0082", "P0090"], "tag": "topic_switch"},
            {"message": "How do I wash a linen dress?", "relevant": ["A037"], "tag": "article"},
            {"message": "How do I wash a linen dress?", "relevant": ["A031"], "tag": "article"}]},
    ]))
    assert main(["eval", "agent", "--conversations", str(conversations), "--db", str(sample_catalog_settings.db_dir),
                 "--model", NO_MODEL, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["conversations"], report["turns"]) == (4, 8)
    # 7 turns should match; the last one's label (A031) is wrong
    assert report["hit_rate"] == 6 / 7 and report["no_match_accuracy"] == 1.0
    assert report["records"][1]["query"].startswith("Can I put it in the washing machine? Urban Loom Zip-Up Hoodie")
    assert report["tags"]["topic_switch"] == {"turns": 1, "right": 1}
    assert [r["quoted_from_relevant"] for r in report["records"][-2:]] == [True, False]  # the A031 label is wrong
    assert report["quoted_from_relevant"] == 0.5 and report["quoted"] == 2


def test_eval_agent_records_a_citation_the_model_invented_as_removed(sample_catalog_settings):
    from fakes import ScriptedVLM

    from mmsupport.agent import Agent
    from mmsupport.catalog import Catalog
    from mmsupport.evaluation import evaluate_agent

    vlm = ScriptedVLM(["The navy one is [P0028]; the [P9999] is even better."])
    agent = Agent(vlm, Catalog.open(sample_catalog_settings), sample_catalog_settings)
    turn = {"message": "Looking for a navy zip hoodie", "image": None, "relevant": ["P0028"], "expect_no_match": False}
    report = evaluate_agent(agent, [{"id": "a", "turns": [turn]}], progress=False)
    (record,) = report["records"]
    assert record["citations"] == ["P0028"] and "P9999" not in record["retrieved"]
    assert record["flagged"] == ["removed citation [P9999]: not retrieved in this turn"]


def test_eval_agent_rejects_a_broken_conversations_file(tmp_path, capsys):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x", "turns": [{"image": null}]}\n')
    assert main(["eval", "agent", "--conversations", str(broken), "--json"]) == 2
    assert f"{broken}:1 is not a conversation" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_real_vlm_runs_whole_turns_on_the_sample_catalog(tiny_vlm_dir, sample_catalog_settings):
    from mmsupport.agent import Agent
    from mmsupport.catalog import Catalog
    from mmsupport.safety import clean
    from mmsupport.vlm import TransformersVLM

    vlm = TransformersVLM(str(tiny_vlm_dir), max_new_tokens=24)
    agent = Agent(vlm, Catalog.open(sample_catalog_settings), sample_catalog_settings)
    photo = SAMPLE_DATA_DIR / "images" / "customer" / "sneaker_angle.png"
    first = agent.run_turn("Do you sell these running shoes?", [photo])
    second = agent.run_turn("Do you have them in blue?", history=first.history)
    for result in (first, second):
        assert result.answer.strip()
        assert result.steps and result.steps[0].tool in ("search_catalog", "get_variants")
        assert "<tool_call>" not in result.answer
    assert first.timings["describe"] > 0 and first.timings["generate"] > 0 and not first.no_match
    assert clean(vlm.describe(photo)) in second.query  # the first turn's photo still counts
    assert second.steps[0].tool == "get_variants" and second.steps[0].arguments["colour"] == "blue"


@pytest.mark.slow
def test_chat_command_with_the_tiny_real_vlm(tiny_vlm_dir, sample_catalog_settings, capsys):
    result = chat_json(capsys, "Do you sell these?", "--image", str(SAMPLE_DATA_DIR / "images" / "P0096.png"),
                       "--model", str(tiny_vlm_dir), "--db", str(sample_catalog_settings.db_dir))
    assert result["model"] == str(tiny_vlm_dir)
    assert result["answer"].strip() and result["timings"]["describe"] > 0
