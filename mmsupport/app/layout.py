"""The page: components and event wiring only; the handlers live in chat, api and admin."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from mmsupport.app.admin import Admin
from mmsupport.app.api import Api
from mmsupport.app.chat import Chat
from mmsupport.app.resources import Resources
from mmsupport.app.uploads import check_inputs, upload_check
from mmsupport.config import SAMPLE_DATA_DIR, Settings, load_settings
from mmsupport.feedback import FeedbackLog
from mmsupport.vlm import VLM

#: Example turns: (question, photo under data/images or None).
EXAMPLES = [
    ("Do you sell these running shoes? Any in blue?", "customer/sneaker_angle.png"),
    ("My watch button is flashing red, what does that mean?", "customer/watch_red_light.png"),
    ("The seam on my jacket tore after two months. Is that covered by the warranty?", "customer/jacket_tear.png"),
    ("What is your return policy?", None),
]

CSS = """
#status {padding: 6px 12px; border-left: 4px solid; border-radius: 4px; font-size: 0.9em}
#status.loading {border-color: #d97706; background: #fffbeb}
#status.ready {border-color: #16a34a; background: #f0fdf4}
#status.unavailable {border-color: #dc2626; background: #fef2f2}
#chat img {max-height: 220px; width: auto}
#items .caption-label {white-space: normal; font-size: 0.8em}
#items .thumbnail-item.cited {outline: 3px solid var(--color-accent); outline-offset: 2px}
"""

#: Citation links point at "#card-N"; clicking one scrolls to the Nth retrieved item card and highlights it.
HEAD = """<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest('a[href^="#card-"]');
  if (!link) return;
  event.preventDefault();
  const index = Number(link.getAttribute("href").slice(6));
  const cards = document.querySelectorAll("#items .thumbnail-item");
  const card = cards[index];
  if (!card) return;
  card.scrollIntoView({behavior: "smooth", block: "center"});
  card.classList.add("cited");
  setTimeout(() => card.classList.remove("cited"), 2000);
}, true);
</script>"""


class SupportApp(gr.Blocks):
    """The app's Blocks; ``launch()`` defaults to the upload limit and serves only the catalog image folders.

    Uploads are checked by content, and event inputs may name only uploaded files (:mod:`mmsupport.app.uploads`).
    """

    def __init__(self, settings: Settings, image_dirs: list[Path], **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.image_dirs = image_dirs

    def launch(self, **kwargs):
        kwargs.setdefault("max_file_size", f"{int(self.settings.max_upload_mb * 1024 * 1024)}b")
        kwargs.setdefault("allowed_paths", [str(d) for d in self.image_dirs])
        kwargs.setdefault("css", CSS)
        kwargs.setdefault("head", HEAD)
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


def build_demo(settings: Settings | None = None, *, vlm: VLM | None = None, catalog=None) -> SupportApp:
    """Build the app from ``settings`` (default: :func:`load_settings`).

    The catalog (built from the sample data on first start) and the VLM load in the background, so the page is up
    at once; pass ``vlm`` and/or ``catalog`` to use ready ones (tests pass a scripted model).
    """
    settings = settings or load_settings()
    resources = Resources(settings, vlm=vlm, catalog=catalog)
    chat = Chat(settings, resources, FeedbackLog(settings.feedback_path))
    admin = Admin(settings, resources)
    image_dirs = [(SAMPLE_DATA_DIR / "images").resolve(), admin.images_dir]

    with SupportApp(settings, image_dirs, title="mmsupport: shopping & support assistant") as demo:
        turns = gr.State([])
        items = gr.State([])
        with gr.Row():
            gr.Markdown("## mmsupport · ask about a product, or show us a photo")
        status = gr.Markdown(resources.status_markdown(), elem_id="status", elem_classes=[resources.state])
        timer = gr.Timer(1.0)
        with gr.Tabs():
            with gr.Tab("Assistant"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(
                            label="Conversation", height=560, elem_id="chat", buttons=["copy"],
                            placeholder="Ask about a product, an order or a problem — attach a photo if it helps.",
                            feedback_options=("Like", "Dislike"), allow_tags=False)
                        textbox = gr.MultimodalTextbox(
                            placeholder="Type a question, or drop / paste a product photo…", show_label=False,
                            file_types=["image"], file_count="single", sources=["upload"], elem_id="message")
                        gr.Examples(label="Try", examples=_examples(), inputs=textbox)
                    with gr.Column(scale=2):
                        gallery = gr.Gallery(label="Retrieved items (click one to ask about it)", elem_id="items",
                                             columns=2, height=460, allow_preview=False, object_fit="contain",
                                             interactive=False)
                        details = gr.Markdown(elem_id="item-details")
                        with gr.Accordion("Search settings", open=False):
                            mode = gr.Radio(["hybrid", "vector", "fts"], value=settings.search_mode,
                                            label="Search mode", info="fts = keyword (full-text) search")
                            k = gr.Slider(1, 20, value=settings.top_k, step=1, label="Items to retrieve (k)")
                            category = gr.Dropdown(["All"], value=settings.category or "All", label="Category",
                                                   allow_custom_value=True)
                            gr.Textbox(settings.model, label="Model", interactive=False)
            with gr.Tab("Catalog admin"):
                admin.tab(category)
        Api(chat).register()

        def refresh_status():
            """Update the status line and, once the catalog is open, the category choices; stop when all loaded."""
            categories = resources.catalog.categories() if resources.catalog is not None else []
            return (gr.Markdown(resources.status_markdown(), elem_classes=[resources.state]),
                    gr.Dropdown(choices=["All", *categories]), gr.Timer(active=resources.loading))

        timer.tick(refresh_status, outputs=[status, category, timer], api_visibility="private",
                   show_progress="hidden")

        answer_outputs = [chatbot, gallery, items, turns]
        answering = {"api_visibility": "private", "concurrency_id": "turn", "show_progress_on": chatbot}
        answer_inputs = [chatbot, mode, k, category, turns]
        textbox.submit(chat.add_message, [textbox, chatbot], [chatbot, textbox], api_visibility="private",
                       show_progress="hidden").success(chat.respond, answer_inputs, answer_outputs, **answering)
        chatbot.retry(chat.retry, chatbot, chatbot, api_visibility="private").success(
            chat.respond, answer_inputs, answer_outputs, **answering)
        chatbot.undo(chat.undo, [chatbot, turns], [chatbot, turns, textbox], api_visibility="private")
        chatbot.clear(lambda: ([], [], [], [], ""), outputs=[chatbot, gallery, items, turns, details],
                      api_visibility="private")
        chatbot.like(chat.vote, turns, None, api_visibility="private")
        gallery.select(chat.ask_about, [items, chatbot], [chatbot, details], api_visibility="private").success(
            chat.respond, answer_inputs, answer_outputs, **answering)
    demo.resources = resources
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo
