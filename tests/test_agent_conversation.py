"""The shopper's conversation on the real sample catalog: topic switches, variants, extractive answers, intents.

Each behaviour runs with no model and with the scripted model (which answers from the data it is given)."""

import dataclasses

import pytest
from fakes import ScriptedVLM

from mmsupport.agent import Agent, prompts
from mmsupport.catalog import Catalog
from mmsupport.evaluation import QUOTE
from mmsupport.safety import data_items
from mmsupport.store import ConversationStore


@pytest.fixture(scope="module")
def catalog(sample_catalog_settings):
    return Catalog.open(sample_catalog_settings)


@pytest.fixture
def settings(sample_catalog_settings, tmp_path):
    return dataclasses.replace(sample_catalog_settings, database_url=f"sqlite:///{tmp_path / 'conversations.db'}")


def cite_first(messages) -> str:
    """A model that cites the first data item it was given."""
    text = messages[-1]["content"]
    text = text if isinstance(text, str) else " ".join(part.get("text", "") for part in text)
    return "Here you go: [1]." if any(item["n"] == 1 for item in data_items(text)) else "Sorry, nothing."


def models():
    return [None, ScriptedVLM(default=cite_first)]


def chat(agent: Agent, *messages: str):
    results, history = [], []
    for message in messages:
        results.append(agent.run_turn(message, history=history))
        history = results[-1].history
    return results


def model_text(vlm: ScriptedVLM) -> str:
    content = vlm.answer_calls[-1]["messages"][-1]["content"]
    return " ".join(part.get("text", "") for part in content)


@pytest.mark.parametrize("vlm", models(), ids=["no-model", "scripted"])
def test_a_question_naming_another_product_type_starts_a_new_topic(catalog, settings, vlm):
    first, second = chat(Agent(vlm, catalog, settings), "Do you sell jackets?", "Do you sell backpacks?")
    assert first.items[0].attributes["subcategory"] == "jackets"
    assert second.focus["used"] is False and "backpack" in second.focus["reason"]
    assert "Jacket" not in second.query
    assert [item.attributes["subcategory"] for item in second.items[:3]] == ["backpacks"] * 3
    assert "focus not used" in second.steps[0].note and "backpack" in second.steps[0].note


@pytest.mark.parametrize("vlm", models(), ids=["no-model", "scripted"])
def test_a_new_topic_the_shop_does_not_sell_is_no_match_on_its_own(catalog, settings, vlm):
    _, second = chat(Agent(vlm, catalog, settings), "Do you have slim fit jeans?", "And a lawnmower?")
    assert second.no_match and second.items == [] and second.answer == prompts()["no_match"]
    assert second.focus["used"] is False


def test_a_follow_up_that_refers_back_keeps_the_focus_and_says_why(catalog, settings):
    _, second = chat(Agent(None, catalog, settings), "Show me your field jackets", "How do I wash it?")
    assert second.focus["used"] and second.focus["item"] in {"P0021", "P0022", "P0023"}
    assert "Field Jacket" in second.query and "“it” refers back" in second.steps[0].note


def test_rain_jackets_after_field_jackets_rank_rain_jackets_first(catalog, settings):
    _, second = chat(Agent(None, catalog, settings), "Show me your field jackets", "Any rain jackets?")
    assert "Rain Jacket" in second.items[0].title and not second.focus["used"]


@pytest.mark.parametrize("vlm", models(), ids=["no-model", "scripted"])
def test_variant_in_the_family_is_the_answer(catalog, settings, vlm):
    first, second = chat(Agent(vlm, catalog, settings), "Show me the Commuter 22L backpack",
                         "Is it available in navy?")
    assert second.steps[-1].tool == "get_variants" and second.steps[-1].arguments["colour"] == "navy"
    assert second.items[0].id == "P0084" and second.citations[0] == "P0084"
    assert {item.family for item in second.items} == {"Packwell Commuter 22L Backpack"}
    if vlm is None:
        assert "Yes, the Packwell Commuter 22L Backpack comes in navy" in second.answer


@pytest.mark.parametrize("vlm", models(), ids=["no-model", "scripted"])
def test_variant_missing_says_so_lists_the_colours_and_the_closest_of_that_colour(catalog, settings, vlm):
    _, second = chat(Agent(vlm, catalog, settings), "I like the waxed cotton field jacket", "Do you have it in black?")
    first_items = [item for item in second.items if item.family != "Fjellhus Waxed Cotton Field Jacket"]
    assert first_items and second.items[: len(first_items)] == first_items  # the black alternatives come first
    assert {(item.colour, item.attributes["subcategory"]) for item in first_items} == {("black", "jackets")}
    colours = "brown [P0021], beige [P0022], olive [P0023]"
    if vlm is None:
        assert "doesn't come in black" in second.answer and colours in second.answer
        assert f"[{first_items[0].id}]" in second.answer
    else:
        assert colours in model_text(vlm) and "does not come in black" in model_text(vlm)


def test_extractive_answer_quotes_the_articles_own_sentences_embedded_at_ingest(catalog, settings):
    encoded = []
    encode = catalog.embedder._encode
    catalog.embedder._encode = lambda texts, runtime: encoded.extend(texts) or encode(texts, runtime)
    try:
        result = Agent(None, catalog, settings).run_turn("Can I put my down puffer in the washing machine?")
    finally:
        catalog.embedder._encode = encode
    article = catalog.get("A031")
    quotes = QUOTE.findall(result.answer)
    assert result.citations[0] == "A031" and quotes
    assert all(sentence in article.text for quote in quotes for sentence in quote.split(". "))
    assert "You can machine wash a Fjellhus Down Puffer Jacket." in quotes[0]
    assert set(encoded) <= {result.query}  # at most the query itself: sentence vectors come from the table


def test_with_a_model_the_answer_is_the_models_not_the_extract(catalog, settings):
    vlm = ScriptedVLM(["Machine wash it gently [A031]."])
    result = Agent(vlm, catalog, settings).run_turn("Can I put my down puffer in the washing machine?")
    assert result.answer == "Machine wash it gently [A031]." and not QUOTE.findall(result.answer)


@pytest.mark.parametrize(("message", "reason"), [("Can I talk to a human, please?", "asked"),
                                               ("yes please pass it to support", "asked"),
                                               ("yes please", "no_match")])
def test_a_request_for_a_person_opens_a_ticket_instead_of_searching(catalog, settings, message, reason):
    vlm = ScriptedVLM()
    first, second = chat(Agent(vlm, catalog, settings), "Do you sell lawn mowers?", message)
    assert first.no_match and second.intent == "handoff"
    assert [step.tool for step in second.steps] == ["handoff"] and second.items == []
    (ticket,) = ConversationStore.from_settings(settings).tickets()
    assert second.handoff == ticket["reference"] and ticket["reference"] in second.answer
    assert settings.contact in second.answer and ticket["status"] == "open" and ticket["reason"] == reason
    assert [m["content"] for m in ticket["transcript"]][::2] == ["Do you sell lawn mowers?", message]
    assert vlm.answer_calls == []


def test_a_ticket_carries_the_photos_hashes_and_the_items_found(catalog, settings):
    import hashlib
    import io

    from PIL import Image

    photo = Image.new("RGB", (64, 48), "navy")
    agent = Agent(None, catalog, settings)
    first = agent.run_turn("navy zip hoodie", images=[photo])
    second = agent.run_turn("Can I speak to a person?", history=first.history)
    ticket = ConversationStore.from_settings(settings).ticket(second.handoff)
    (digest,) = ticket["transcript"][0]["images"]
    sent = first.history[0]["content"][0]["image"]  # the photo as the turn kept it
    buffer = io.BytesIO()
    sent.save(buffer, format="PNG")
    assert digest == hashlib.sha256(buffer.getvalue()).hexdigest()
    assert [item["id"] for item in ticket["items"]] == [item.id for item in first.items]
    assert ConversationStore.from_settings(settings).image(digest) is None  # photos are kept only when asked


def test_without_a_store_the_shopper_is_told_how_to_reach_the_shop(catalog, settings, tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    broken = dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / 'not-a-folder' / 'x.db'}")
    result = Agent(None, catalog, broken).run_turn("I want to talk to a human")
    assert result.handoff is None and result.answer == prompts()["handoff_failed"].format(contact=settings.contact)
    assert result.steps[0].error


def test_the_same_question_again_gets_an_offer_and_yes_opens_a_repeated_ticket(catalog, settings):
    first, again, yes = chat(Agent(None, catalog, settings), "How do I wash a down jacket?",
                             "how do I wash a down jacket", "yes please")
    assert prompts()["offer_repeated"] not in first.answer
    assert again.answer.endswith(prompts()["offer_repeated"])
    assert yes.intent == "handoff"
    assert ConversationStore.from_settings(settings).ticket(yes.handoff)["reason"] == "repeated"


def test_yes_is_a_handoff_only_right_after_the_offer(catalog, settings):
    _, second = chat(Agent(None, catalog, settings), "navy zip hoodie", "yes please")
    assert second.intent == "search" and second.handoff is None


@pytest.mark.parametrize("vlm", models(), ids=["no-model", "scripted"])
def test_thanks_and_small_talk_are_answered_without_a_search(catalog, settings, vlm):
    first, thanks, hello = chat(Agent(vlm, catalog, settings), "navy zip hoodie", "Thanks a lot!", "hi")
    assert (thanks.intent, thanks.answer, thanks.steps) == ("thanks", prompts()["thanks"], [])
    assert (hello.intent, hello.answer, hello.steps) == ("small_talk", prompts()["small_talk"], [])
    if vlm is not None:
        assert len(vlm.answer_calls) == 1  # only the first turn asked the model
    follow_up = Agent(vlm, catalog, settings).run_turn("Is it available in red?", history=hello.history)
    assert follow_up.focus["item"] == first.items[0].id and follow_up.items[0].id == "P0029"
