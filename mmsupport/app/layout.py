"""The page: components and event wiring only; the handlers live in chat, api and admin.

On a phone (390×844) the message box and its send button stay above the fold, the retrieved items sit right under
it as a row of cards you swipe through (the examples come after them), and touch targets are at least 40 px. On a
desktop the items, search settings and examples form the right-hand column.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from mmsupport.app import resolution, visitors, voice
from mmsupport.app.admin import Admin
from mmsupport.app.api import Api
from mmsupport.app.chat import Chat
from mmsupport.app.desk import Desk
from mmsupport.app.mcp import McpTools, keep_only_tools
from mmsupport.app.resolution import Resolution
from mmsupport.app.resources import Resources
from mmsupport.app.tickets import POLL_SECONDS, Tickets
from mmsupport.app.uploads import check_inputs, upload_check
from mmsupport.config import SAMPLE_DATA_DIR, SEARCH_MODES, Settings, load_settings
from mmsupport.experiments import Experiments
from mmsupport.store import open_store
from mmsupport.vlm import VLM

#: Example turns: (question, photo under data/images or None).
EXAMPLES = [
    ("Do you sell these running shoes? Any in blue?", "customer/sneaker_angle.png"),
    ("My watch button is flashing red, what does that mean?", "customer/watch_red_light.png"),
    ("The seam on my jacket tore after two months. Is that covered by the warranty?", "customer/jacket_tear.png"),
    ("What is your return policy?", None),
]

#: Largest k the search settings' slider offers (a variant retrieving more widens it).
MAX_SLIDER_K = 20

CSS = """
#status {padding: 6px 12px; border-left: 4px solid; border-radius: 4px; font-size: 0.9em}
#status.loading {border-color: #d97706; background: #fffbeb}
#status.unavailable {border-color: #dc2626; background: #fef2f2}
#status.ready, #cite-target {display: none}
#message-error {color: #b91c1c; font-size: 0.9em}
#chat img {max-height: 220px; width: auto}
#chat code {white-space: nowrap}
#talk-to-person {align-self: flex-start; min-height: 44px; width: auto; flex: none}
#more-like-this {align-self: flex-start; min-height: 44px; width: auto}
#items .caption-label {position: static; white-space: normal; font-size: 0.8em; max-width: none;
  background: none; color: var(--body-text-color); padding: 4px 2px; text-align: left}
#items:not(:has(.thumbnail-item)) {display: none}
#items .grid-wrap {height: auto !important; max-height: 560px; min-height: 0}
#items .gallery-item, #items .thumbnail-item {aspect-ratio: auto; height: auto}
#items .thumbnail-item {display: flex; flex-direction: column; background: var(--background-fill-secondary)}
#items .thumbnail-item img {height: 150px; flex: none}
#items .thumbnail-item.cited {outline: 3px solid var(--color-accent); outline-offset: 2px}
@media (max-width: 640px) {
  #title h2 {font-size: 1.1em; margin: 0}
  #chat {height: min(46vh, 420px) !important; min-height: 260px}
  #items .grid-container {grid-auto-flow: column; grid-template-columns: none !important;
    grid-auto-columns: 44%; overflow-x: auto}
  #items .grid-wrap {max-height: none}
  #items .thumbnail-item img {height: 110px}
  #chat button, #message button, #items button {min-width: 40px; min-height: 40px}
}
"""

#: A citation link names its item ("#item-<id>"): the click asks the server (through the hidden #cite-target box)
#: to show the cards of the turn that found it and its details, then highlights its card.
HEAD = """<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest('a[href^="#item-"]');
  if (!link) return;
  event.preventDefault();
  const id = decodeURIComponent(link.getAttribute("href").slice(6));
  const box = document.querySelector("#cite-target textarea, #cite-target input");
  if (box) {
    box.value = id + "|" + Date.now();
    box.dispatchEvent(new Event("input", {bubbles: true}));
  }
  let tries = 0;
  const highlight = () => {
    const card = [...document.querySelectorAll("#items .thumbnail-item")]
      .find((c) => c.innerText.trim().endsWith(" · " + id));
    if (!card) { if (++tries < 40) setTimeout(highlight, 100); return; }
    card.scrollIntoView({behavior: "smooth", block: "nearest", inline: "center"});
    card.classList.add("cited");
    setTimeout(() => card.classList.remove("cited"), 2500);
  };
  setTimeout(highlight, 150);
}, true);
</script>"""


class SupportApp(gr.Blocks):
    """The app's Blocks; ``launch()`` defaults to the upload limit, serves only the catalog image folders and starts
    Gradio's MCP server when ``settings.mcp`` is on.

    Uploads are checked by content, and event inputs may name only uploaded files (:mod:`mmsupport.app.uploads`).
    Whatever starts the MCP server, it offers only the tools of :mod:`mmsupport.app.mcp`.
    """

    @property
    def mcp_server_obj(self):
        """Gradio's MCP server once launched (Gradio sets it): cut down to the app's tools as it is set."""
        return self.__dict__.get("_mcp_server")

    @mcp_server_obj.setter
    def mcp_server_obj(self, server) -> None:
        if server is not None:
            keep_only_tools(server)
        self.__dict__["_mcp_server"] = server

    def __init__(self, settings: Settings, image_dirs: list[Path], **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.image_dirs = image_dirs

    def launch(self, **kwargs):
        kwargs.setdefault("max_file_size", f"{int(self.settings.max_upload_mb * 1024 * 1024)}b")
        kwargs.setdefault("state_session_capacity", self.settings.max_sessions)
        # Gradio's "is localhost reachable" check gives up after one request slower than 3 s, which the first page
        # can take on 2 cores while the catalog loads in the background: the app then refused to start.
        kwargs.setdefault("_frontend", False)
        kwargs.setdefault("allowed_paths", [str(d) for d in self.image_dirs])
        kwargs.setdefault("css", CSS + resolution.CSS)
        kwargs.setdefault("head", HEAD)
        kwargs.setdefault("mcp_server", self.settings.mcp)
        app_kwargs = kwargs.get("app_kwargs") or {}
        kwargs["app_kwargs"] = {**app_kwargs, "middleware": [*app_kwargs.get("middleware", []),
                                                             upload_check(self.settings)]}
        return super().launch(**kwargs)

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        """Refuse inputs naming files they did not upload before Gradio reads, copies or fetches them."""
        check_inputs(block_fn.inputs, inputs)
        return await super().preprocess_data(block_fn, inputs, state, explicit_call)


def _examples() -> list[dict]:
    photos = {text: SAMPLE_DATA_DIR / "images" / photo if photo else None for text, photo in EXAMPLES}
    return [{"text": text, "files": [str(photo)] if photo else []} for text, photo in photos.items()
            if photo is None or photo.is_file()]


def _assistant(settings: Settings) -> dict:
    """The shopper's components: chat and message box, retrieved items and their details, search settings."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=320):
            chatbot = gr.Chatbot(
                label="Conversation", height=560, elem_id="chat", buttons=["copy"],
                placeholder="Ask about a product, an order or a problem — attach a photo if it helps.",
                feedback_options=("Like", "Dislike"), allow_tags=False)
            outcome = resolution.components()
            error = gr.Markdown(visible=False, elem_id="message-error")
            textbox = gr.MultimodalTextbox(show_label=False, elem_id="message", **voice.textbox_options(settings))
            talk = gr.Button("Talk to a person", variant="secondary", size="md", elem_id="talk-to-person")
        with gr.Column(scale=2, min_width=300):
            gallery = gr.Gallery(label="Items we found (tap one to ask about it)", elem_id="items", columns=2,
                                 height="auto", allow_preview=False, object_fit="contain", interactive=False)
            details = gr.Markdown(elem_id="item-details")
            more = gr.Button("More like this", visible=False, size="md", elem_id="more-like-this")
            with gr.Accordion("Search settings", open=False):
                mode = gr.Radio(list(SEARCH_MODES), value=settings.search_mode, label="Search mode",
                                info="fts = keyword (full-text) search; image = items that look alike")
                k = gr.Slider(1, MAX_SLIDER_K, value=settings.top_k, step=1, label="Items to retrieve (k)")
                category = gr.Dropdown(["All"], value=settings.category or "All", label="Category",
                                       allow_custom_value=True, elem_id="category")
            gr.Examples(label="Try", examples=_examples(), inputs=textbox, examples_per_page=4)
    cite = gr.Textbox(elem_id="cite-target", show_label=False, container=False)
    return dict(chatbot=chatbot, error=error, textbox=textbox, gallery=gallery, details=details, more=more,
                mode=mode, k=k, category=category, cite=cite, talk=talk, **outcome)


def _start(chat: Chat, visitor: str | None):
    """Page load: the visitor id, a new session in the visitor's variant, and that variant's search settings."""
    visitor, session = chat.visitors.arrive(visitor)
    turn = chat.variant_settings(session)
    return (visitor, session, gr.Radio(value=turn.search_mode),
            gr.Slider(value=turn.top_k, maximum=max(MAX_SLIDER_K, turn.top_k)))


def _wire_outcome(chat: Chat, c: dict, turns: gr.State, session: gr.State, answered: list) -> None:
    """The Solved / Still need help buttons after each answer, and the 1-5 rating after Solved."""
    outcome = Resolution(chat.store)
    private = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    shown = [c["outcome"], c["csat"], c["note"]]
    for event in answered:
        event.then(outcome.offer, turns, shown, **private)
    c["solved"].click(outcome.solved, [session, turns], shown, **private)
    c["unsolved"].click(outcome.unsolved, [session, turns], shown, **private)
    c["csat"].input(outcome.rate, [session, c["csat"]], [c["csat"], c["note"]], **private)
    c["chatbot"].clear(outcome.hide, outputs=shown, **private)


def _wire(chat: Chat, tickets: Tickets, c: dict, s: dict) -> None:
    """Connect the shopper's components to the chat and hand-off handlers (``s``: the page's states)."""
    chatbot, textbox, gallery = c["chatbot"], c["textbox"], c["gallery"]
    turns, items, uploads, session = s["turns"], s["items"], s["uploads"], s["session"]
    following, poll = s["following"], s["poll"]
    answer_outputs = [chatbot, gallery, items, turns, following, poll]
    answering = {"api_visibility": "private", "concurrency_id": "turn", "show_progress_on": chatbot}
    answer_inputs = [chatbot, c["mode"], c["k"], c["category"], turns, uploads, session, following]
    private = {"api_visibility": "private"}
    textbox.change(chat.attach, [textbox, uploads], [textbox, uploads, c["error"]], queue=False,
                   show_progress="hidden", **private)
    answered = [
        textbox.submit(chat.add_message, [textbox, chatbot, uploads], [chatbot, textbox, c["error"], uploads],
                       show_progress="hidden", **private).success(
            chat.waiting, chatbot, None, queue=False, show_progress="hidden", **private).success(
            tickets.respond, answer_inputs, answer_outputs, **answering),
        chatbot.retry(chat.retry, [chatbot, turns], [chatbot, gallery, items], **private).success(
            tickets.respond, answer_inputs, answer_outputs, **answering),
        gallery.select(chat.ask_about, [items, chatbot], [chatbot, c["details"]], **private).success(
            tickets.respond, answer_inputs, answer_outputs, **answering)]
    gallery.select(chat.choose, items, [s["chosen"], c["more"]], show_progress="hidden", **private)
    c["more"].click(chat.more_like_this, [s["chosen"], c["category"]], [gallery, items, c["details"]], **private)
    chatbot.undo(chat.undo, [chatbot, turns], [chatbot, turns, textbox, gallery, items], **private)
    chatbot.clear(chat.clear, outputs=[chatbot, gallery, items, turns, c["details"], c["error"]], **private)
    chatbot.clear(chat.visitors.restart, [session, s["visitor"]], session, **private)
    chatbot.like(chat.vote, [turns, session], None, **private)
    chatbot.like(tickets.vote, [chatbot, turns, s["downs"]], [chatbot, turns, s["downs"]], **private)
    _wire_outcome(chat, c, turns, session, answered)
    c["cite"].change(chat.show_cited, [c["cite"], turns], [gallery, items, c["details"]], show_progress="hidden",
                    **private)
    c["talk"].click(tickets.talk, [chatbot, turns, session, following], [chatbot, following, poll], **private)
    poll.tick(tickets.poll, [chatbot, following], [chatbot, following, poll], show_progress="hidden", **private)


def build_demo(settings: Settings | None = None, *, vlm: VLM | None = None, catalog=None) -> SupportApp:
    """Build the app from ``settings`` (default: :func:`load_settings`).

    The A/B variants file is read and the conversation store opened (retention applied) first; a variants file with
    a mistake stops the start with its line and key. The catalog (built from the sample data on first start) and the
    VLM load in the background, so the page is up at once; pass ``vlm`` and/or ``catalog`` to use ready ones (tests
    pass a scripted model). The catalog admin tab exists only when ``settings.admin_password`` is set, the support
    desk tab when it or ``settings.desk_password`` is.
    """
    settings = settings or load_settings()
    experiments = Experiments.from_settings(settings)  # a broken variants file stops the start, saying where
    store = open_store(settings)
    resources = Resources(settings, vlm=vlm, catalog=catalog)
    chat = Chat(settings, resources, store, experiments)
    admin = Admin(settings, resources, store)
    tickets = Tickets(chat)
    desk = Desk(settings, store, sessions=None if settings.desk_password else admin.sessions)
    image_dirs = [(SAMPLE_DATA_DIR / "images").resolve(), admin.images_dir]

    with SupportApp(settings, image_dirs, title="mmsupport: shopping & support assistant") as demo:
        turns, items, uploads = gr.State([]), gr.State([]), gr.State({})
        states = {"turns": turns, "items": items, "uploads": uploads, "visitor": visitors.visitor_state(),
                  "session": gr.State(None), "following": gr.State(None), "downs": gr.State([]),
                  "chosen": gr.State(None),
                  "poll": gr.Timer(POLL_SECONDS, active=False)}
        gr.Markdown("## Ask about a product, or show us a photo", elem_id="title")
        status = gr.Markdown(elem_id="status", elem_classes=["ready"])
        timer = gr.Timer(1.0)
        if settings.admin_password or settings.desk_password:
            with gr.Tabs():
                with gr.Tab("Assistant"):
                    c = _assistant(settings)
                if settings.admin_password:
                    with gr.Tab("Catalog admin"):
                        admin.tab(c["category"])
                with gr.Tab("Support desk"):
                    desk.tab()
        else:
            c = _assistant(settings)
        api = Api(chat)
        api.register()
        if settings.mcp:
            McpTools(api).register()
        tickets.register_api()

        def refresh_status():
            """The status line and, once the catalog is open, the category choices; the timer stops when loaded."""
            categories = resources.catalog.categories() if resources.catalog is not None else []
            return (gr.Markdown(resources.shopper_status(), elem_classes=[resources.state]),
                    gr.Dropdown(choices=["All", *categories]), gr.Timer(active=resources.loading))

        def refresh_categories():
            """The category choices as the catalog has them now (an ingest in any session adds some)."""
            return gr.Dropdown(choices=["All", *resources.catalog.categories()]) if resources.catalog else gr.skip()

        status_outputs = [status, c["category"], timer]
        demo.load(refresh_status, outputs=status_outputs, api_visibility="private", show_progress="hidden")
        timer.tick(refresh_status, outputs=status_outputs, api_visibility="private", show_progress="hidden")
        c["category"].focus(refresh_categories, outputs=c["category"], api_visibility="private",
                            show_progress="hidden")
        demo.load(lambda known: _start(chat, known), states["visitor"],
                  [states["visitor"], states["session"], c["mode"], c["k"]], api_visibility="private",
                  show_progress="hidden")
        _wire(chat, tickets, c, states)
    demo.resources, demo.store, demo.experiments = resources, store, experiments
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo
