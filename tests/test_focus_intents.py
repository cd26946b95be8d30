"""Reading a message: follow-up or new topic (mmsupport.focus) and intents that are not searches (mmsupport.intents)."""

import pytest

from mmsupport.catalog import Item
from mmsupport.focus import Focus, Vocabulary, asked_variant, decide
from mmsupport.intents import classify

VOCABULARY = Vocabulary(types={"jacket", "backpack", "sandal", "dress", "headphone", "apparel", "bag"},
                        colours={"black", "olive", "pink", "navy"})
JACKET = Item("P1", "product", "Field Jacket (Olive)", "Waxed cotton.", category="apparel", colour="olive",
              family="Field Jacket", attributes={"subcategory": "jackets"})


@pytest.mark.parametrize("message, used, why", [
    ("Do you have it in black?", True, "“it” refers back"),
    ("in black?", True, "only adds black"),
    ("How do I wash it?", True, "refers back"),
    ("Does the jacket have a hood?", True, "“the jacket” refers back"),
    ("Do you sell backpacks?", False, "names its own product type (backpack)"),
    ("What about sandals?", False, "names its own product type (sandal)"),
    ("Any rain jackets?", False, "without referring back"),
    ("And a lawnmower?", False, "does not refer back"),
    ("Is there a backpack that goes with it?", False, "names its own product type (backpack)"),
])
def test_a_message_keeps_the_focus_only_when_it_refers_back_and_names_no_other_type(message, used, why):
    focus = decide(message, Focus(item=JACKET), VOCABULARY)
    assert focus.used is used and why in focus.reason
    assert focus.terms() == ([JACKET.title] if used else [])


def test_nothing_to_refer_back_to_means_no_focus():
    assert decide("Do you have it in black?", Focus(), VOCABULARY).used is False


def test_the_earlier_photo_counts_as_focus_and_its_types_are_the_focus_types():
    focus = decide("Which backpack is this?", Focus(photo="a navy backpack with a roll top"), VOCABULARY)
    assert focus.used and focus.terms() == ["a navy backpack with a roll top"]


@pytest.mark.parametrize("message, asked", [
    ("Do you have it in black?", (True, "black")), ("In pink?", (True, "pink")), ("pink?", (True, "pink")),
    ("Is there a navy one?", (True, "navy")), ("What colours does it come in?", (True, None)),
    ("And the red light on mine, what does it mean?", (False, None)), ("How do I wash it?", (False, None)),
])
def test_variant_questions_and_the_colour_asked(message, asked):
    assert asked_variant(message, VOCABULARY) == asked


@pytest.mark.parametrize("message, offered, intent", [
    ("Can I talk to a human?", False, "handoff"),
    ("Please pass this on to your support team", False, "handoff"),
    ("yes please", True, "handoff"),
    ("Yes please, pass it to the support team", True, "handoff"),
    ("yes please", False, "search"),
    ("yes, in black?", True, "search"),
    ("Does the watch support calls?", False, "search"),
    ("Thank you so much!", False, "thanks"),
    ("no thanks", True, "thanks"),
    ("ok thanks, bye!", False, "goodbye"),
    ("Hi there!", False, "small_talk"),
    ("What can you do?", False, "small_talk"),
    ("Hello! Do you sell backpacks?", False, "search"),
    ("Thanks! Do you have it in black?", False, "search"),
])
def test_intents(message, offered, intent):
    assert classify(message, offered_handoff=offered).name == intent
