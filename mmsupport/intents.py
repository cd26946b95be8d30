"""Messages that are not searches: a request for a person, thanks or goodbye, small talk.

:func:`classify` is checked before anything is searched. A request for a person is either explicit ("can I talk to a
human?", "please pass this to your support team") or a yes to the hand-off the previous answer offered ("yes please").
Thanks, goodbye and small talk count only when the message holds nothing else ("thanks, bye!"), so "thanks, and in
black?" is still a question for the catalog.

>>> classify("Can I talk to a real person?").name
'handoff'
>>> classify("yes please", offered_handoff=True).name
'handoff'
>>> classify("Thanks a lot!").name, classify("Thanks! Do you have it in black?").name
('thanks', 'search')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HANDOFF, THANKS, GOODBYE, SMALL_TALK, SEARCH = "handoff", "thanks", "goodbye", "small_talk", "search"
#: The reason of a hand-off the shopper asked for in so many words (not a yes to an offer).
ASKS_FOR_PERSON = "asks for a person"

#: Asking to be passed on, and who to: together they make a request for a person.
_PASS_ON = re.compile(r"\b(?:talk|speak|chat)\s+(?:to|with)\b|\bpass\b(?:\s+\w+){0,4}\s+(?:on\s+)?to\b|\bforward\b|"
                      r"\b(?:put|get)\s+me\s+through\b|\b(?:transfer|connect)\s+me\b|\bescalate\b|\bcontact\b|"
                      r"\bget\s+in\s+touch\b|\breach\b|\bhand\s+(?:it|this|me)\s+(?:over|on)\b")
_PERSON = re.compile(r"\b(?:human|person|someone|somebody|agent|representative|operator|staff|support|team|"
                     r"customer\s+service|colleague|manager|people)\b")
#: Asking for a person in so many words.
_HUMAN = re.compile(r"\b(?:human|real\s+person|live\s+agent|representative|operator|customer\s+service)\b")
#: A yes to an offer ("yes please", "sure, go ahead").
_YES = re.compile(r"^(?:yes|yeah|yep|yup|sure|ok|okay|please|go\s+ahead|do\s+it|y)\b")
#: Words a yes may carry without asking anything new.
_YES_FILLER = {"yes", "yeah", "yep", "yup", "sure", "ok", "okay", "please", "go", "ahead", "do", "it", "that", "would",
               "be", "great", "good", "thanks", "thank", "you", "pass", "on", "to", "the", "a", "your", "support",
               "team", "them", "someone", "person", "human", "y", "this", "my", "question", "send", "forward", "of",
               "course", "fine", "lovely", "perfect", "me"}
#: Whole-message phrases, by intent (checked in this order: "ok thanks, bye" is a goodbye).
_PHRASES = {
    GOODBYE: r"bye|goodbye|good\s+bye|see\s+you|see\s+ya|that'?s\s+all|that\s+is\s+all|nothing\s+else|have\s+a\s+"
             r"(?:nice|good|great)\s+(?:day|evening|weekend)|take\s+care|cya",
    THANKS: r"thanks|thank\s+you|thank\s+u|thx|ty|cheers|much\s+appreciated|appreciate\s+it|that\s+helps|"
            r"that\s+helped|no\s+thanks|no\s+thank\s+you|no",
    SMALL_TALK: r"hi|hello|hey|hiya|howdy|good\s+(?:morning|afternoon|evening)|how\s+are\s+you(?:\s+doing)?|"
                r"how'?s\s+it\s+going|what'?s\s+up|who\s+are\s+you|what\s+are\s+you|what\s+can\s+you\s+do|"
                r"are\s+you\s+(?:a\s+)?(?:bot|robot|human|real)|nice\s+to\s+meet\s+you",
}
#: Words that may go with those phrases ("ok, great, thanks a lot!").
_FILLER = (r"ok|okay|great|perfect|awesome|brilliant|lovely|nice|cool|super|fine|good|got\s+it|so|very|much|a\s+lot|"
           r"again|for\s+(?:that|this|the\s+help|your\s+help|helping)|for\s+now|you|all|then|and|oh|ah|alright|"
           r"there|today|bot|assistant|friend|mate|everyone")
_WHOLE = re.compile(rf"^(?:(?:{'|'.join([_FILLER, *_PHRASES.values()])})\b[\s,.!?;:)(-]*)+$")
_ANY = {name: re.compile(rf"\b(?:{phrase})\b") for name, phrase in _PHRASES.items()}


@dataclass(frozen=True)
class Intent:
    """What a message asks for (``name``, one of the constants above) and why it was read that way."""

    name: str
    reason: str


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("\u2019", "'")).strip()


def classify(text: str, *, offered_handoff: bool = False) -> Intent:
    """The intent of ``text``. ``offered_handoff``: the previous answer offered to pass the question to a person."""
    normal = _normal(text)
    if _HUMAN.search(normal) or (_PASS_ON.search(normal) and _PERSON.search(normal)):
        return Intent(HANDOFF, ASKS_FOR_PERSON)
    words = re.findall(r"[a-z']+", normal)
    if offered_handoff and _YES.match(normal) and set(words) <= _YES_FILLER:
        return Intent(HANDOFF, "says yes to the hand-off the last answer offered")
    if normal and _WHOLE.match(normal):
        name = next((name for name, phrase in _ANY.items() if phrase.search(normal)), THANKS)  # "ok, great!"
        return Intent(name, f"only {name.replace('_', ' ')}, nothing to search for")
    return Intent(SEARCH, "a question for the catalog")
