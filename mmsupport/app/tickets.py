"""The shopper's side of a hand-off: "Talk to a person", the offer after two thumbs-down, staff replies in the chat.

Each conversation has a session (:mod:`mmsupport.app.visitors`); a hand-off opens a ticket for it in the conversation store
(:class:`~mmsupport.handoff.StoreHandoff`). While the page has a ticket that is not closed, a timer polls it: the
chat says when a person joins ("Sam from support joined the chat"), shows their replies and says when they close it.

Who answers the shopper's messages: while the ticket waits for a person the assistant keeps answering, and each
message is also copied to the ticket, so whoever picks it up sees what came after the hand-off; once a person has
joined, messages go to them only (never two voices at once) until they close the ticket, after which the assistant
answers again. A shopper who comes back and types (or pastes) their reference sees the ticket's state and the staff
replies, and the chat follows that ticket from then on.

The API gets ``/handoff(session_id, message="")`` and ``/ticket(reference)``.
"""

from __future__ import annotations

import logging

import gradio as gr

from mmsupport.agent import load_prompts
from mmsupport.app import views
from mmsupport.app.chat import Chat, last_user_turn, voted_turn
from mmsupport.app.visitors import api_session
from mmsupport.errors import InvalidInput, MMSupportError
from mmsupport.handoff import REFERENCE, item_summary
from mmsupport.messages import images_of, text_of

log = logging.getLogger(__name__)

#: Seconds between two looks at the page's open ticket.
POLL_SECONDS = 2.0
#: Thumbs-down on this many different answers in a row make the assistant offer a person.
DOWNS_BEFORE_OFFER = 2
def _say(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _status(ticket: dict) -> str:
    """A ticket's state in plain words."""
    if ticket["status"] == "closed":
        return f"it was closed ({ticket['outcome'] or 'done'})"
    if ticket["status"] == "claimed":
        return f"{views.escape(ticket['claimed_by'])} from support is looking after it"
    return "it is waiting for a member of the team"


def _staff(ticket: dict) -> list[dict]:
    return [m for m in ticket["messages"] if m["author"] != "shopper"]


def _staff_reply(message: dict) -> dict:
    """A staff member's message as the shopper's chat shows it."""
    return _say(f"**{views.escape(message['author'])} from support:** {views.escape(message['text'])}")


class Tickets:
    """The hand-off handlers of the shopper's page (and the API), over the chat's conversation store."""

    def __init__(self, chat: Chat):
        self.chat = chat
        self.settings = chat.settings
        self.store = chat.store
        self.handoff_for = chat.handoff_for
        self.prompts = load_prompts(self.settings.prompt_file)

    @staticmethod
    def _following(ticket: dict) -> dict:
        """The page's record of the ticket it follows once all of it is shown: reference, status, who has it, the
        last message shown."""
        return {"reference": ticket["reference"], "status": ticket["status"], "claimed_by": ticket["claimed_by"],
                "seen": max((m["id"] for m in ticket["messages"]), default=0)}

    # -- opening a ticket ------------------------------------------------------------------------------------------

    def talk(self, history: list[dict], turns: list[dict], session: dict | None, following: dict | None):
        """The "Talk to a person" button: open a ticket (reason asked) and say its reference and what happens next."""
        contact = self.settings.contact
        if following and following["status"] != "closed":
            return (history + [_say(f"You're already with our support team (reference {following['reference']}): "
                                    f"{'a person has joined' if following['claimed_by'] else 'someone will join soon'}"
                                    ". Just type here.")], gr.skip(), gr.skip())
        agent_history = turns[-1]["history"] if turns else []
        conversation = [{"role": m["role"], "content": text_of(m), "photos": images_of(m)} for m in agent_history
                        if m.get("role") in ("user", "assistant")]
        conversation.append({"role": "user", "content": "(tapped Talk to a person)"})
        items = [item_summary(item) for turn in turns for item in turn["items"]]
        try:
            reference = self.handoff_for(session).handoff(conversation, reason="asked",
                                                             items=list({i["id"]: i for i in items}.values()))
        except MMSupportError as error:
            log.warning("Could not hand the conversation off: %s", error)
            return history + [_say(self.prompts["handoff_failed"].format(contact=contact))], gr.skip(), gr.skip()
        answer = self.prompts["handoff_done"].format(reference=reference, contact=contact)
        following = {"reference": reference, "status": "open", "claimed_by": None, "seen": 0}
        return history + [_say(answer)], following, gr.Timer(active=True)

    def vote(self, history: list[dict], turns: list[dict], downs: list[int], like: gr.LikeData):
        """Thumbs-down on two different answers in a row: offer a person (a yes opens a ticket, reason thumbs_down)."""
        index, turn = voted_turn(turns, like)
        if turn is None:  # not an answer of the assistant's
            return gr.skip(), gr.skip(), gr.skip()
        if like.liked is not False:
            return gr.skip(), gr.skip(), []
        downs = downs if index in downs else [*downs, index]
        if len(downs) < DOWNS_BEFORE_OFFER or not turns:
            return gr.skip(), gr.skip(), downs
        offer = self.prompts["offer_thumbs_down"]
        last = {**turns[-1], "history": [*turns[-1]["history"], {**_say(offer), "offered_handoff": True,
                                                                 "offer_reason": "thumbs_down"}]}
        return history + [_say(offer)], [*turns[:-1], last], []

    # -- the shopper's messages ------------------------------------------------------------------------------------

    def respond(self, history: list[dict], mode: str, k: float, category: str | None, turns: list[dict],
                uploads: dict, session: dict | None, following: dict | None):
        """Answer the last message: to the person who has the ticket, with a ticket's state when it names a
        reference, else by the assistant (:meth:`Chat.respond`). Yields chat, gallery, items, turns, the ticket
        followed and the poll timer."""
        skip = (gr.skip(),) * 4
        if not history or history[-1]["role"] != "user":
            yield *skip, gr.skip(), gr.skip()
            return
        start, text, _ = last_user_turn(history)
        ticket = self._ticket(following["reference"]) if following and following["status"] != "closed" else None
        if ticket is not None and ticket["status"] != "closed":
            passed = self._pass_on(ticket["reference"], text)  # waiting: copied for the person who picks it up
            if ticket["status"] == "claimed":  # a person has it: they answer, through the ticket
                failed = [_say(self.prompts["handoff_failed"].format(contact=self.settings.contact))]
                yield history + failed if not passed else gr.skip(), *skip[1:], gr.skip(), gr.skip()
                return
        found = REFERENCE.search(text)
        named = self._ticket(found.group(0).upper()) if found else None
        if named is not None:
            replies = [_staff_reply(m) for m in _staff(named)]
            intro = _say(f"Your request {named['reference']}: {_status(named)}."
                         + (" Here is what the team wrote:" if replies else ""))
            yield (history + [intro, *replies], *skip[1:], self._following(named),
                   gr.Timer(active=named["status"] != "closed"))
            return
        shown = None
        for shown in self.chat.respond(history, mode, k, category, turns, uploads, session):
            yield *shown, gr.skip(), gr.skip()
        records = shown[3] if shown is not None and isinstance(shown[3], list) else []
        if records and records[-1].get("handoff") and records[-1]["first"] == start:
            yield *skip, {"reference": records[-1]["handoff"], "status": "open", "claimed_by": None,
                          "seen": 0}, gr.Timer(active=True)

    def _ticket(self, reference: str) -> dict | None:
        try:
            return self.store.ticket(reference) if self.store is not None else None
        except MMSupportError as error:
            log.warning("%s", error)
            return None

    def _pass_on(self, reference: str, text: str) -> bool:
        """Add the shopper's message to the ticket; ``False`` when the store is not reachable."""
        try:
            self.store.add_message(reference, "shopper", text)
            return True
        except MMSupportError as error:
            log.warning("%s", error)
            return False

    # -- staff replies ---------------------------------------------------------------------------------------------

    def poll(self, history: list[dict], following: dict | None):
        """New from the ticket the page follows: who joined, the staff's replies, the close; the timer stops when
        there is nothing more to follow."""
        ticket = self._ticket(following["reference"]) if following else None
        if ticket is None:
            return gr.skip(), gr.skip(), gr.Timer(active=bool(following))
        said = []
        if ticket["claimed_by"] and ticket["claimed_by"] != following["claimed_by"]:
            said.append(_say(f"*{views.escape(ticket['claimed_by'])} from support joined the chat.*"))
        said += [_staff_reply(m) for m in _staff(ticket) if m["id"] > following["seen"]]
        if ticket["status"] == "closed":
            said.append(_say(f"*{views.escape(ticket['claimed_by'] or 'Support')} closed this conversation "
                             f"({ticket['outcome'] or 'done'}). I'm the assistant again: ask me anything.*"))
        if not said and ticket["status"] == following["status"]:
            return gr.skip(), gr.skip(), gr.skip()
        return (history + said if said else gr.skip(), self._following(ticket),
                gr.Timer(active=ticket["status"] != "closed"))

    # -- the API ---------------------------------------------------------------------------------------------------

    def api_handoff(self, session_id: str, message: str = "") -> dict:
        """Hand a session's conversation (its recorded turns, then ``message``) to a person: ``{"reference"}``."""
        with views.ui_errors():
            if not (session_id or "").strip():
                raise InvalidInput("session_id is empty.", hint="Pass the session_id /chat returned.")
            session = api_session(self.chat.experiments, session_id)
            if self.store is None:
                raise MMSupportError("The conversation store is not available.", hint=self.settings.contact)
            recorded = self.store.session_turns(session["id"])
            conversation = [message for turn in recorded for message in (
                {"role": "user", "content": turn["question"], "images": turn["image_hashes"]},
                {"role": "assistant", "content": turn["answer"]})]
            conversation.append({"role": "user", "content": (message or "").strip() or "(asked for a person)"})
            catalog = self.chat.resources.catalog
            ids = recorded[-1]["retrieved_ids"] if recorded else []
            items = [item_summary(item) for item in map(catalog.get, ids) if item is not None] if catalog else []
            reference = self.handoff_for(session).handoff(conversation, reason="asked", items=items)
        return {"reference": reference, "session_id": session["id"]}

    def api_ticket(self, reference: str) -> dict:
        """A ticket's status, whether a person has claimed it, and the staff's replies (for a shopper who comes
        back with the reference)."""
        with views.ui_errors():
            if self.store is None:
                raise MMSupportError("The conversation store is not available.", hint=self.settings.contact)
            ticket = self.store.ticket((reference or "").strip().upper())
            if ticket is None:
                raise InvalidInput(f"There is no ticket {reference!r}.",
                                   hint="Check the reference (H-YYYYMMDD-XXXXXX).")
        return {"reference": ticket["reference"], "status": ticket["status"], "claimed": bool(ticket["claimed_by"]),
                "claimed_by": ticket["claimed_by"], "outcome": ticket["outcome"],
                "replies": [{"author": m["author"], "text": m["text"], "time": m["time"].isoformat()}
                            for m in _staff(ticket)]}

    def register_api(self) -> None:
        """Add ``/handoff`` and ``/ticket`` to the Blocks being built (call inside its ``with`` block)."""
        with gr.Column(visible=False):
            session_id = gr.Textbox(label="session_id")
            message = gr.Textbox("", label="message")
            reference = gr.Textbox(label="reference")
            opened, found = gr.JSON(label="handoff"), gr.JSON(label="ticket")
            handoff_button, ticket_button = gr.Button(), gr.Button()
        handoff_button.click(self.api_handoff, [session_id, message], opened, api_name="handoff")
        ticket_button.click(self.api_ticket, reference, found, api_name="ticket")
