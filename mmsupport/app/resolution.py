"""Did the chat help? "Solved" / "Still need help" after an answer, then a one-tap 1-5 rating.

Both go to the conversation store as feedback (kinds ``resolved`` 1/0 and ``csat`` 1-5, see
:data:`mmsupport.store.FEEDBACK_KINDS`), with the session and the turn they are about. A session counts as resolved by
the assistant when it was marked solved, or ended without a hand-off and without "still need help" (README, "Support
desk").
"""

from __future__ import annotations

import gradio as gr

from mmsupport.store import ConversationStore

#: The rating's choices, worst first (the label says which end is which).
RATINGS = ["1", "2", "3", "4", "5"]

CSS = """
#outcome {gap: 8px; flex-wrap: nowrap}
#outcome button {min-height: 40px; min-width: 0; flex: 1 1 0}
#csat .wrap {flex-wrap: nowrap; gap: 6px}
#csat label {min-height: 40px; min-width: 40px; justify-content: center; flex: 1 1 0}
#outcome-note {font-size: 0.9em}
"""


def components() -> dict:
    """The buttons, the rating and a note; hidden until an answer is shown (call inside the page's layout)."""
    with gr.Row(visible=False, elem_id="outcome") as row:
        solved = gr.Button("Solved", size="sm", variant="secondary", elem_id="solved")
        unsolved = gr.Button("Still need help", size="sm", variant="secondary", elem_id="unsolved")
    note = gr.Markdown(visible=False, elem_id="outcome-note")
    csat = gr.Radio(RATINGS, value=None, label="How was this chat? 1 = poor, 5 = great", visible=False,
                    elem_id="csat")
    return {"outcome": row, "solved": solved, "unsolved": unsolved, "csat": csat, "note": note}


class Resolution:
    """The handlers of the outcome buttons and the rating, recording into ``store``."""

    def __init__(self, store: ConversationStore):
        self.store = store

    def _record(self, session: dict | None, kind: str, value: int, turns: list[dict] = ()) -> None:
        if session is None:
            return
        turn_id = turns[-1].get("turn_id") if turns else None
        self.store.record_feedback(session["id"], kind, value, turn_id=turn_id, variant=session["variant"],
                                   channel=session["channel"])

    @staticmethod
    def offer(turns: list[dict]):
        """After an answer: show the buttons (the rating and note go until the next "Solved")."""
        return gr.Row(visible=bool(turns)), gr.Radio(visible=False, value=None), gr.Markdown(visible=False)

    @staticmethod
    def hide():
        """Clear: nothing to mark yet."""
        return gr.Row(visible=False), gr.Radio(visible=False, value=None), gr.Markdown(visible=False)

    def solved(self, session: dict | None, turns: list[dict]):
        """"Solved": recorded, and the 1-5 rating is offered."""
        self._record(session, "resolved", 1, turns)
        return (gr.Row(visible=False), gr.Radio(visible=True, value=None),
                gr.Markdown("Glad that helped!", visible=True))

    def unsolved(self, session: dict | None, turns: list[dict]):
        """"Still need help": recorded, and the shopper is told what they can do next."""
        self._record(session, "resolved", 0, turns)
        return (gr.Row(visible=False), gr.Radio(visible=False, value=None),
                gr.Markdown("Sorry about that. Tell me more about the problem, or ask to talk to a person.",
                            visible=True))

    def rate(self, session: dict | None, rating: str | None):
        """A tap on 1-5: recorded once, then the rating goes away."""
        if rating not in RATINGS:
            return gr.skip(), gr.skip()
        self._record(session, "csat", int(rating))
        return gr.Radio(visible=False, value=None), gr.Markdown("Thanks for rating the chat!", visible=True)
