"""The support desk tab: staff see the open hand-off tickets oldest first, read one (transcript, photos when kept,
the items the assistant found), claim it, reply to the shopper and close it with an outcome.

Only built when ``settings.desk_password`` or ``settings.admin_password`` is set. The log-in follows the admin tab's
rules (:mod:`mmsupport.app.sessions`: throttled, expiring tokens held in ``gr.BrowserState`` and checked on every
call); with no desk password of its own the desk shares the admin log-in's password and throttle. Staff give their
name when they log in: it is what the shopper sees ("Sam from support joined the chat").
"""

from __future__ import annotations

import io
import threading
from datetime import timezone

import gradio as gr

from mmsupport.app import views
from mmsupport.app.sessions import AdminSessions
from mmsupport.config import Settings
from mmsupport.errors import InvalidInput, MMSupportError

#: How a ticket can end.
OUTCOMES = ("resolved", "not resolved", "duplicate", "no reply from shopper")
#: Seconds between two refreshes of the queue and the ticket on screen.
REFRESH_SECONDS = 5.0
#: Longest staff name kept.
MAX_NAME = 60
LOGIN_FAILED = ("Wrong staff password, or too many failed attempts. Check the password; after several failures, "
                "wait a few minutes before trying again.")
NOT_LOGGED_IN = "You are not logged in to the support desk, or your session has expired. Log in again."
QUEUE_COLUMNS = ["Reference", "Waiting", "Reason", "Status", "With", "Question"]


def _age(created) -> str:
    from mmsupport.store import now

    created = created if created.tzinfo else created.replace(tzinfo=timezone.utc)  # SQLite gives naive UTC
    minutes = int((now() - created).total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"


def _first_question(ticket: dict) -> str:
    asked = next((m["content"] for m in ticket["transcript"] if m["role"] == "user" and m["content"]), "")
    return views.shorten(asked, 60)


class Desk:
    """The desk's handlers over ``store``; ``sessions`` are the log-ins to share (the admin's when the desk has no
    password of its own)."""

    def __init__(self, settings: Settings, store, sessions: AdminSessions | None = None):
        self.settings = settings
        self.store = store
        self.sessions = sessions or AdminSessions(settings.desk_password or settings.admin_password or "",
                                                  ttl=settings.admin_session_minutes * 60,
                                                  login_failed=LOGIN_FAILED, not_logged_in=NOT_LOGGED_IN)
        self._names: dict[str, str] = {}  # token -> the name its staff member logged in with
        self._lock = threading.Lock()

    def _store(self):
        if self.store is None:
            raise MMSupportError("The conversation store is not available, so there are no tickets to show.",
                                 hint="Check MMSUPPORT_DATABASE_URL and the database server, then restart the app.")
        return self.store

    def _staff(self, token: str | None) -> str:
        """The name of the staff member logged in with ``token``; raises when the token is not live."""
        self.sessions.check(token)
        with self._lock:
            name = self._names.get(token)
        if name is None:  # logged in through the admin tab: no name given yet
            raise InvalidInput(NOT_LOGGED_IN)
        return name

    # -- log-in and the queue --------------------------------------------------------------------------------------

    def login(self, name: str, password: str, request: gr.Request):
        """Log a staff member in under ``name``: the queue, and a token for this browser."""
        client = request.client.host if request is not None and request.client is not None else "unknown"
        name = " ".join((name or "").split())[:MAX_NAME]
        if not name:
            gr.Warning("Type your name first: shoppers see it when you join their chat.")
            return (None, *(gr.skip(),) * 7)
        try:
            token = self.sessions.log_in(password, client)
        except InvalidInput as error:
            gr.Warning(error.message)
            return (None, gr.skip(), gr.skip(), "", *(gr.skip(),) * 4)
        with self._lock:
            self._names[token] = name
        table, choices = self.queue(token)
        return (token, gr.Column(visible=False), gr.Column(visible=True), "", f"Logged in as **{views.escape(name)}**",
                table, choices, gr.Timer(active=True))

    def queue(self, token: str | None, selected: str | None = None):
        """The open and claimed tickets, oldest first, and the ticket picker's choices."""
        import pandas as pd

        with views.ui_errors():
            self._staff(token)
            waiting = self._store().tickets(("open", "claimed"))
        rows = [[t["reference"], _age(t["created"]), t["reason"].replace("_", " "), t["status"],
                 t["claimed_by"] or "", _first_question(t)] for t in waiting]
        choices = [t["reference"] for t in waiting]
        if selected and selected not in choices:
            choices.append(selected)  # a ticket just closed stays on screen
        return pd.DataFrame(rows, columns=QUEUE_COLUMNS), gr.Dropdown(choices=choices)

    def refresh(self, token: str | None, selected: str | None):
        """The timer's refresh of the queue and the ticket on screen; it stops once the log-in has expired."""
        try:
            self._staff(token)
        except InvalidInput:
            return *(gr.skip(),) * 4, gr.Timer(active=False)
        return *self.queue(token, selected), *self.show(selected, token), gr.skip()

    @staticmethod
    def pick(selected: gr.SelectData):
        """A click on a row of the queue picks its ticket."""
        row = selected.row_value or []
        return row[0] if row else gr.skip()

    # -- one ticket ------------------------------------------------------------------------------------------------

    def show(self, reference: str | None, token: str | None):
        """The ticket: state, transcript, items, messages since the hand-off, and its photos when they were kept."""
        with views.ui_errors():
            self._staff(token)
            if not reference:
                return "Pick a ticket from the queue.", gr.Gallery(value=None, visible=False)
            ticket = self._store().ticket(reference)
            if ticket is None:
                raise InvalidInput(f"There is no ticket {reference}.", hint="Pick one from the queue.")
            photos = [data for m in ticket["transcript"] for digest in m.get("images", ())
                      if (data := self.store.image(digest)) is not None]
        return self._render(ticket), gr.Gallery(value=[_image(data) for data in photos] or None,
                                                 visible=bool(photos))

    @staticmethod
    def _render(ticket: dict) -> str:
        state = ticket["status"] + (f", with {ticket['claimed_by']}" if ticket["claimed_by"] else "")
        if ticket["outcome"]:
            state += f", {ticket['outcome']}"
        lines = [f"### {ticket['reference']}",
                 f"**{views.escape(state)}** · reason: {ticket['reason']} · opened {_age(ticket['created'])} ago",
                 "", "#### Conversation"]
        for message in ticket["transcript"]:
            who = "Shopper" if message["role"] == "user" else "Assistant"
            photos = " ".join(f"📷 photo `{digest[:12]}`" for digest in message.get("images", ()))
            lines.append(f"- **{who}:** {photos} {views.escape(message['content'])}".rstrip())
        if ticket["items"]:
            lines += ["", "#### Items the assistant found"]
            lines += [f"- `{views.escape(i['id'])}` {views.escape(i['title'])}"
                      + (f" · {i['price']:.2f}" if i.get("price") is not None else "") for i in ticket["items"]]
        if ticket["messages"]:
            lines += ["", "#### Since the hand-off"]
            lines += [f"- **{views.escape('Shopper' if m['author'] == 'shopper' else m['author'])}:** "
                      f"{views.escape(m['text'])}" for m in ticket["messages"]]
        return "\n".join(lines)

    def _own(self, reference: str | None, token: str | None) -> tuple[str, dict]:
        """The staff member's name and the ticket, which must be open or theirs."""
        name = self._staff(token)
        if not reference:
            raise InvalidInput("No ticket is selected.", hint="Pick one from the queue.")
        ticket = self._store().ticket(reference)
        if ticket is None or ticket["status"] == "closed":
            raise InvalidInput(f"Ticket {reference} is closed or gone.", hint="Pick another from the queue.")
        if ticket["claimed_by"] not in (None, name):
            raise InvalidInput(f"{ticket['claimed_by']} already has ticket {reference}.", hint="Pick another one.")
        return name, ticket

    def claim(self, reference: str | None, token: str | None):
        """Take the ticket: the shopper's page says the staff member joined."""
        from mmsupport.store import now

        with views.ui_errors():
            name, ticket = self._own(reference, token)
            if ticket["claimed_by"] is None:
                self.store.update_ticket(reference, status="claimed", claimed_by=name, claimed_at=now())
        return self.show(reference, token)

    def reply(self, reference: str | None, text: str, token: str | None):
        """Send ``text`` to the shopper (claiming the ticket first if nobody has it)."""
        text = (text or "").strip()
        with views.ui_errors():
            if not text:
                raise InvalidInput("The reply is empty.", hint="Type what the shopper should read.")
            self.claim(reference, token)
            self.store.add_message(reference, self._staff(token), text)
        return "", *self.show(reference, token)

    def close(self, reference: str | None, outcome: str | None, token: str | None):
        """Close the ticket with ``outcome`` (one of :data:`OUTCOMES`)."""
        from mmsupport.store import now

        with views.ui_errors():
            if outcome not in OUTCOMES:
                raise InvalidInput("Choose how the ticket ended first.", hint=f"One of: {', '.join(OUTCOMES)}.")
            name, ticket = self._own(reference, token)
            self.store.update_ticket(reference, status="closed", closed_at=now(), outcome=outcome,
                                     claimed_by=ticket["claimed_by"] or name)
        return self.show(reference, token)

    # -- the tab ---------------------------------------------------------------------------------------------------

    def tab(self) -> None:
        """The desk's components and events (call inside a ``gr.Tab``)."""
        token = gr.BrowserState(None)
        with gr.Column() as login_box:
            name = gr.Textbox(label="Your name (shoppers see it)", elem_id="desk-name")
            password = gr.Textbox(label="Staff password", type="password", elem_id="desk-password")
            login_button = gr.Button("Log in to the desk", variant="primary")
        with gr.Column(visible=False) as desk_box:
            who = gr.Markdown(elem_id="desk-who")
            queue = gr.Dataframe(headers=QUEUE_COLUMNS, label="Waiting tickets, oldest first (tap one)",
                                 interactive=False, elem_id="desk-queue", wrap=True)
            picked = gr.Dropdown([], label="Ticket", elem_id="desk-ticket", allow_custom_value=True)
            with gr.Row(equal_height=False, elem_id="desk-actions"):
                claim_button = gr.Button("Claim", variant="primary", elem_id="desk-claim", min_width=120)
                outcome = gr.Dropdown(list(OUTCOMES), value=None, label="Outcome", elem_id="desk-outcome",
                                      min_width=160)
                close_button = gr.Button("Close ticket", elem_id="desk-close", min_width=120)
            view = gr.Markdown("Pick a ticket from the queue.", elem_id="desk-view")
            photos = gr.Gallery(label="Photos", visible=False, columns=3, height="auto", elem_id="desk-photos")
            answer = gr.Textbox(label="Reply to the shopper", lines=2, elem_id="desk-reply")
            send_button = gr.Button("Send reply", variant="primary", elem_id="desk-send")
        timer = gr.Timer(REFRESH_SECONDS, active=False)
        private = {"api_visibility": "private"}
        gr.on([login_button.click, password.submit], self.login, [name, password],
              [token, login_box, desk_box, password, who, queue, picked, timer], **private)
        queue.select(self.pick, None, picked, **private)
        picked.change(self.show, [picked, token], [view, photos], **private)
        claim_button.click(self.claim, [picked, token], [view, photos], **private).then(
            self.queue, [token, picked], [queue, picked], **private)
        gr.on([send_button.click, answer.submit], self.reply, [picked, answer, token], [answer, view, photos],
              **private).then(self.queue, [token, picked], [queue, picked], **private)
        close_button.click(self.close, [picked, outcome, token], [view, photos], **private).then(
            self.queue, [token, picked], [queue, picked], **private)
        timer.tick(self.refresh, [token, picked], [queue, picked, view, photos, timer], show_progress="hidden",
                   **private)


def _image(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))
