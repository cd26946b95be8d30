"""The issue's bars on the bundled conversations (data/conversations.jsonl), without a model and with the scripted
one: hit rate, no-match accuracy, every topic-switch and variant turn, quotes from the right article."""

import hashlib

import pytest
from fakes import ScriptedVLM

from mmsupport.agent import Agent
from mmsupport.catalog import Catalog
from mmsupport.config import SAMPLE_DATA_DIR
from mmsupport.evaluation import evaluate_agent, load_conversations
from mmsupport.images import load_image

#: What a vision model would say about each photo of the conversations (the scripted model says exactly this).
PHOTOS = {
    "customer/watch_red_light.png": "a black smartwatch with a red light flashing on its side button",
    "customer/headset_blue_light.png": "a black wireless headset with a blinking blue light on the ear cup",
    "customer/earbuds_case_amber_light.png": "white wireless earbuds in a charging case showing an amber light",
    "customer/jacket_tear.png": "a navy down puffer jacket with a torn seam",
    "customer/sneaker_angle.png": "a red running shoe with a white sole, seen at an angle",
    "customer/speaker_beach.png": "a small blue bluetooth speaker lying on sand",
    "customer/boot_sole_coming_off.png": "a brown hiking boot whose sole is coming away from the upper",
    "P0096.png": "a brown leather tote bag with two handles",
    "P0107.png": "a grey smartwatch with a sports strap",
}


def describer(settings):
    """The scripted model's ``description``: the words above for each photo, found by its pixels."""
    known = {}
    for name, words in PHOTOS.items():
        image = load_image(SAMPLE_DATA_DIR / "images" / name, max_side=settings.image_max_side)
        known[hashlib.sha1(image.tobytes()).hexdigest()] = words
    return lambda image: known.get(hashlib.sha1(image.tobytes()).hexdigest(), "a photo of a product")


def cite_data(messages) -> str:
    content = messages[-1]["content"]
    text = content if isinstance(content, str) else " ".join(part.get("text", "") for part in content)
    return "The best match is [1]; see also [2]." if "[2] id:" in text else "Here it is: [1]."


@pytest.mark.slow
@pytest.mark.parametrize("model", ["none", "scripted"])
def test_the_conversations_meet_the_bars(sample_catalog_settings, tmp_path, model):
    import dataclasses

    settings = dataclasses.replace(sample_catalog_settings, database_url=f"sqlite:///{tmp_path / 'conversations.db'}")
    vlm = ScriptedVLM(default=cite_data, description=describer(settings)) if model == "scripted" else None
    conversations = load_conversations(SAMPLE_DATA_DIR / "conversations.jsonl")
    report = evaluate_agent(Agent(vlm, Catalog.open(settings), settings), conversations, progress=False)
    misses = [r for r in report["records"] if r["hit"] is False or r.get("right") is False]
    assert report["hit_rate"] >= 0.97, misses
    assert report["no_match_accuracy"] == 1.0 and report["citation_validity"] == 1.0
    for tag, counts in report["tags"].items():
        assert counts["turns"] >= 4 and counts["right"] == counts["turns"], (tag, misses)
    if vlm is None:
        assert report["quoted"] == 49 and report["quoted_from_relevant"] >= 0.9
