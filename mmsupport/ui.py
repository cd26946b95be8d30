"""The Gradio app: multimodal chat over the catalog, retrieved-item cards, feedback, catalog admin and a named API.

The UI is a thin shell over the same library calls as the CLI: :class:`mmsupport.agent.Agent` answers,
:class:`mmsupport.catalog.Catalog` searches and ingests. Errors raised on purpose (:mod:`mmsupport.errors`) become
``gr.Error`` messages here, at the boundary; the app keeps serving.

>>> demo = build_demo(load_settings(db_dir="/tmp/shop"))   # doctest: +SKIP
>>> demo.launch()                                         # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hmac
import html
import re
import shutil
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from mmsupport.catalog import sql_literal
from mmsupport.config import SAMPLE_DATA_DIR, Settings, load_settings
from mmsupport.errors import CatalogError, InvalidInput, MMSupportError
from mmsupport.feedback import FeedbackLog
from mmsupport.vlm import VLM

try:  # On Hugging Face ZeroGPU hardware the model call must run inside a `spaces.GPU` function.
    import spaces
except ImportError:
    spaces = None

#: Image types the chat accepts (checked by extension here, then by decoding with mmsupport.images.load_image).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
#: Largest total size of the images inside an admin zip, so a zip bomb cannot fill the disk.
MAX_ZIP_BYTES = 500 * 1024 * 1024
CITATION = re.compile(r"\[([A-Za-z0-9][\w.-]*)\]")

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


@contextmanager
def _ui_errors():
    """Turn the errors mmsupport raises on purpose into messages in the browser (or for API clients)."""
    try:
        yield
    except MMSupportError as error:
        raise gr.Error(_escape(str(error)), print_exception=False) from None  # gr.Error renders HTML


class Resources:
    """Opens the catalog (building the sample one on first start), then loads the VLM, in a background thread.

    The page is served at once; :meth:`status_markdown` tells people what is happening. ``catalog_state`` and
    ``model_state`` are ``"loading"``, ``"ready"`` or ``"unavailable"`` (then ``catalog_error`` / ``model_reason``
    say why and how to fix it). Until the model is ready, turns are answered from retrieval alone.
    """

    def __init__(self, settings: Settings, *, vlm: VLM | None = None, catalog=None):
        self.settings = settings
        self.catalog, self.vlm = catalog, vlm
        self.catalog_state = "ready" if catalog is not None else "loading"
        self.model_state = "ready" if vlm is not None else "loading"
        self.catalog_error: MMSupportError | None = None
        self.model_reason = ""
        self._catalog_done = threading.Event()
        if catalog is not None:
            self._catalog_done.set()
        threading.Thread(target=self._load, name="mmsupport-loader", daemon=True).start()

    @property
    def loading(self) -> bool:
        return "loading" in (self.catalog_state, self.model_state)

    def _load(self) -> None:
        if self.catalog is None:
            try:
                catalog = _open_catalog(self.settings)
                catalog.embedder  # load the text embedder now, not on the first question
                self.catalog, self.catalog_state = catalog, "ready"
            except MMSupportError as error:
                self.catalog_error, self.catalog_state = error, "unavailable"
            except Exception as error:  # an unexpected failure must show up as a status, not a dead thread
                self.catalog_error = CatalogError(f"Could not open the catalog: {type(error).__name__}: {error}.",
                                                  hint="Check MMSUPPORT_DB_DIR and the logs.")
                self.catalog_state = "unavailable"
            finally:
                self._catalog_done.set()
        if self.vlm is None:
            try:
                from mmsupport.vlm import load_vlm

                self.vlm = load_vlm(self.settings)
                self.model_state = "ready"
            except MMSupportError as error:
                self.model_reason, self.model_state = str(error), "unavailable"
            except Exception as error:
                self.model_reason, self.model_state = f"{type(error).__name__}: {error}", "unavailable"

    def wait_for_catalog(self):
        """The catalog, once open (waits while it is being built); raises the error that stopped it opening."""
        self._catalog_done.wait()
        if self.catalog is None:
            raise self.catalog_error
        return self.catalog

    def status_markdown(self) -> str:
        """One status line for the page header."""
        if self.catalog_state == "loading":
            return ("**Opening the catalog** (the first start builds it from the sample data, about a minute)… "
                    "questions wait until it is ready.")
        if self.catalog_state == "unavailable":
            return f"**Catalog unavailable:** {html.escape(str(self.catalog_error))}"
        name = html.escape(self.vlm.name if self.vlm is not None else self.settings.model)
        if self.model_state == "ready":
            return f"**Ready:** model {name}, {len(self.catalog)} catalog items."
        if self.model_state == "loading":
            return f"**Loading model** {name}… until it is ready, answers list the best-matching catalog items."
        return (f"**Model unavailable:** {html.escape(self.model_reason)} "
                "Answers list the best-matching catalog items instead.")

    @property
    def state(self) -> str:
        """``loading``, ``ready`` or ``unavailable`` overall, for styling the status line."""
        if self.loading:
            return "loading"
        return "ready" if self.catalog_state == self.model_state == "ready" else "unavailable"


def _open_catalog(settings: Settings):
    """The configured table, or the bundled sample catalog built on first start."""
    from mmsupport.catalog import Catalog, ensure_sample_catalog

    try:
        return Catalog.open(settings)
    except CatalogError:
        return ensure_sample_catalog(settings)


def validate_upload(path: str | Path, settings: Settings):
    """Check an uploaded file is an image within ``settings.max_upload_mb`` and return it decoded (RGB PIL image).

    Raises :class:`InvalidInput` with a message for the person who uploaded it.
    """
    from mmsupport.images import load_image

    path = Path(path)
    name = path.name
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InvalidInput(f"{name} is not an image.",
                           hint=f"Upload a photo ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    size_mb = path.stat().st_size / 1024 / 1024
    if size_mb > settings.max_upload_mb:
        raise InvalidInput(f"{name} is {size_mb:.1f} MB, over the {settings.max_upload_mb:g} MB limit.",
                           hint="Upload a smaller or more compressed photo.")
    try:
        return load_image(path, max_side=settings.image_max_side)
    except InvalidInput as error:
        raise InvalidInput(f"{name}: {error.message}", hint=error.hint) from None


def _text_of(content) -> str:
    """The text parts of a chat message's content (a string or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") if content.get("type") == "text" else ""
    return " ".join(_text_of(part) for part in content)


def _files_of(content) -> list[str]:
    """The file paths in a chat message's content."""
    if isinstance(content, dict):
        if "path" in content:
            return [content["path"]]
        if content.get("type") == "file":
            return [content["file"]["path"]]
        return []
    if isinstance(content, list):
        return [path for part in content for path in _files_of(part)]
    return []


def _last_user_turn(history: list[dict]) -> tuple[int, str, list[str]]:
    """Index where the last user turn starts, its text and its image paths."""
    start = len(history)
    while start > 0 and history[start - 1]["role"] == "user":
        start -= 1
    if start == len(history):
        raise InvalidInput("There is no question to answer yet.", hint="Type a question or attach a photo first.")
    turn = history[start:]
    text = " ".join(_text_of(m["content"]) for m in turn).strip()
    files = [path for m in turn for path in _files_of(m["content"])]
    return start, text, files


def link_citations(answer: str, items: list) -> str:
    """Turn ``[id]`` citations of retrieved items into links to their cards; leave any other brackets alone."""
    position = {item.id: index for index, item in enumerate(items)}

    def link(match: re.Match) -> str:
        item_id = match.group(1)
        if item_id not in position:
            return match.group(0)
        return f"[[{item_id}]](#card-{position[item_id]})"

    return CITATION.sub(link, answer)


def _escape(text: str) -> str:
    """Show text from people and catalogs as text: HTML is escaped, never rendered."""
    return html.escape(text, quote=False)


def _card(item, placeholder) -> tuple:
    """A gallery card: the item's image (or a placeholder for articles) and a caption with title, kind, price, score."""
    price = f" · {item.price:.2f}" if item.price is not None else ""
    caption = f"{item.title} [{item.id}] · {item.kind}{price} · score {item.score:.2f}"
    return (item.image if item.image and Path(item.image).is_file() else placeholder, caption)


def _placeholder_image():
    """A plain card image for items without a picture (support articles)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (256, 256), (238, 240, 246))
    draw = ImageDraw.Draw(image)
    draw.rectangle((78, 58, 178, 198), fill=(255, 255, 255), outline=(120, 126, 150), width=4)
    for y in range(88, 180, 20):
        draw.line((96, y, 160, y), fill=(150, 156, 180), width=4)
    return image


def _details(item) -> str:
    """Markdown for one item's full card: every field as text (catalog HTML is escaped, never rendered)."""
    facts = [item.kind, item.category, item.colour, f"{item.price:.2f}" if item.price is not None else None,
             f"score {item.score:.2f}"]
    line = " · ".join(_escape(str(fact)) for fact in facts if fact)
    return f"**{_escape(item.title)}** [{_escape(item.id)}]  \n{line}\n\n{_escape(item.text)}"


def _item_dict(item) -> dict:
    """An item as plain JSON for API clients (image as its file name, never a server path)."""
    data = dataclasses.asdict(item)
    data["image"] = Path(item.image).name if item.image else None
    return data


def _step_message(step) -> dict:
    """A collapsible chat message for one agent step: what it did and what it found."""
    arguments = step.arguments or {}
    query = arguments.get("query") or arguments.get("id") or ", ".join(f"{k}={v}" for k, v in arguments.items())
    found = len(step.result_ids)
    title = f"{step.tool.replace('_', ' ').capitalize()}: “{query}” → {found} item{'s' if found != 1 else ''}"
    body = f"failed: {step.error}" if step.error else ", ".join(step.result_ids) or "nothing matched"
    return {"role": "assistant", "content": _escape(body),
            "metadata": {"title": _escape(title), "status": "done", "duration": round(step.seconds, 2)}}


class SupportApp(gr.Blocks):
    """The app's Blocks; ``launch()`` defaults to the upload limit and serves only the catalog image folders."""

    def __init__(self, settings: Settings, image_dirs: list[Path], **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.image_dirs = image_dirs

    def launch(self, **kwargs):
        kwargs.setdefault("max_file_size", f"{int(self.settings.max_upload_mb * 1024 * 1024)}b")
        kwargs.setdefault("allowed_paths", [str(d) for d in self.image_dirs])
        kwargs.setdefault("css", CSS)
        kwargs.setdefault("head", HEAD)
        return super().launch(**kwargs)


def build_demo(settings: Settings | None = None, *, vlm: VLM | None = None, catalog=None) -> SupportApp:
    """Build the app from ``settings`` (default: :func:`load_settings`).

    The catalog (built from the sample data on first start) and the VLM load in the background, so the page is up
    at once; pass ``vlm`` and/or ``catalog`` to use ready ones (tests pass a scripted model).
    """
    settings = settings or load_settings()
    resources = Resources(settings, vlm=vlm, catalog=catalog)
    feedback = FeedbackLog(settings.feedback_path)
    placeholder = _placeholder_image()
    catalog_images = (Path(settings.db_dir) / "images").resolve()  # where admin uploads put their images
    image_dirs = [(SAMPLE_DATA_DIR / "images").resolve(), catalog_images]

    def turn_settings(mode: str, k: float, category: str | None) -> Settings:
        if mode not in ("vector", "fts", "hybrid"):
            raise InvalidInput(f"Unknown search mode {mode!r}.", hint="Use vector, fts or hybrid.")
        return dataclasses.replace(settings, search_mode=mode, top_k=max(1, min(int(k), 50)),
                                   category=None if category in (None, "", "All") else category)

    def run_turn(text: str, image_paths: list[str], history: list[dict], turn: Settings) -> Iterator:
        """The agent's events for one turn; the one place the model runs (wrapped for ZeroGPU)."""
        images = [validate_upload(path, turn) for path in image_paths]
        from mmsupport.agent import Agent

        agent = Agent(resources.vlm, resources.wait_for_catalog(), turn)
        yield from agent.stream_turn(text, images, history=history)

    if spaces is not None:
        run_turn = spaces.GPU(run_turn)

    # ---- chat handlers (plain functions: callable without a browser) ----

    def add_message(message: dict | None, history: list[dict]):
        """Put the person's text and photo into the conversation; reject bad input without losing it."""
        message = message or {}
        text, files = (message.get("text") or "").strip(), message.get("files") or []
        with _ui_errors():
            if not text and not files:
                raise InvalidInput("The message is empty.", hint="Type a question or attach a photo.")
            if len(text) > settings.max_message_chars:
                raise InvalidInput(f"The message is {len(text)} characters long, over the "
                                   f"{settings.max_message_chars} limit.", hint="Shorten it and send again.")
            for path in files:
                validate_upload(path, settings)
        history = history + [{"role": "user", "content": {"path": path}} for path in files]
        if text:
            history.append({"role": "user", "content": _escape(text)})
        return history, gr.MultimodalTextbox(value=None)

    def respond(history: list[dict], mode: str, k: float, category: str | None, turns: list[dict]):
        """Stream the answer to the last user turn: step messages, then the answer, then the item cards.

        ``turns`` holds one record per answered turn: where it sits in the chat, what feedback stores about it, and
        the agent's conversation after it (photos included), which the next turn continues from.
        """
        from mmsupport.agent import Step, TurnResult

        with _ui_errors():
            turn = turn_settings(mode, k, category)
            start, text, files = _last_user_turn(history)
            question = html.unescape(text)  # the chat shows it escaped
            turns = [t for t in turns if t["first"] < start]  # a retried turn is answered afresh
            steps, answer, result = [], "", None
            for event in run_turn(question, files, turns[-1]["history"] if turns else [], turn):
                if isinstance(event, TurnResult):
                    result = event
                    continue
                if isinstance(event, Step):
                    steps.append(_step_message(event))
                else:
                    answer += event
                partial = [{"role": "assistant", "content": _escape(answer)}] if answer else []
                yield history + steps + partial, gr.skip(), gr.skip(), gr.skip()
        shown = history + steps + [{"role": "assistant", "content": link_citations(_escape(result.answer),
                                                                                   result.items)}]
        log = {"question": question, "answer": result.answer, "citations": result.citations,
               "item_ids": [item.id for item in result.items], "no_match": result.no_match, "images": len(files),
               "search": {"mode": turn.search_mode, "k": turn.top_k, "category": turn.category},
               "model": resources.vlm.name if resources.vlm is not None else None}
        record = {"first": start, "last": len(shown) - 1, "log": log, "history": result.history}
        yield shown, [_card(item, placeholder) for item in result.items], result.items, turns + [record]

    def retry(history: list[dict], retry_data: gr.RetryData):
        """Drop the answer being retried (and its steps) so ``respond`` answers the same question again."""
        return history[: retry_data.index + 1]

    def undo(history: list[dict], turns: list[dict], undo_data: gr.UndoData):
        """Remove the last turn and put its text and photo back into the textbox."""
        start, text, files = _last_user_turn(history[: undo_data.index + 1])
        return (history[:start], [t for t in turns if t["first"] < start],
                gr.MultimodalTextbox(value={"text": html.unescape(text), "files": files}))

    def ask_about(items: list, history: list[dict], selected: gr.SelectData):
        """Clicking a card shows the item's details and asks about it."""
        item = items[selected.index]
        question = {"role": "user", "content": _escape(f"Tell me more about {item.title} [{item.id}].")}
        return history + [question], _details(item)

    def vote(turns: list[dict], like: gr.LikeData):
        """Store a thumbs up/down with the turn it is about."""
        index = like.index[0] if isinstance(like.index, (list, tuple)) else like.index
        turn = next((t for t in reversed(turns) if t["first"] <= index <= t["last"]), None)
        if turn is None:
            return
        with _ui_errors():
            feedback.record(liked=bool(like.liked), turn=turn["log"])
        gr.Info("Thanks for the feedback!" if like.liked else "Thanks, we will use this to improve.")

    # ---- API handlers ----

    def api_chat(message: str, image: str | None, mode: str, k: float, category: str | None) -> dict:
        """One question (and optional photo) in, the grounded answer with citations and items out."""
        from mmsupport.agent import TurnResult

        with _ui_errors():
            turn = turn_settings(mode or settings.search_mode, k or settings.top_k, category)
            events = run_turn(message or "", [image] if image else [], [], turn)
            result = next(event for event in events if isinstance(event, TurnResult))
        return {"answer": result.answer, "citations": result.citations, "no_match": result.no_match,
                "items": [_item_dict(item) for item in result.items]}

    def api_search(query: str, mode: str = "hybrid", k: int = 5, category: str = "") -> list[dict]:
        """Search the catalog: items best first, each with id, kind, title, text, price, score."""
        with _ui_errors():
            turn = turn_settings(mode, k, category)
            if not (query or "").strip():
                raise InvalidInput("The query is empty.", hint="Send some words to search for.")
            where = f"category = {sql_literal(turn.category)}" if turn.category else None
            items = resources.wait_for_catalog().search(query, mode=turn.search_mode, k=turn.top_k, where=where)
            return [_item_dict(item) for item in items]

    # ---- admin handlers ----

    def login(password: str):
        """Open the admin controls for this browser session if the password is right."""
        if not hmac.compare_digest((password or "").encode(), settings.admin_password.encode()):
            gr.Warning("Wrong admin password.")
            return False, gr.skip(), gr.skip(), ""
        return True, gr.Column(visible=False), gr.Column(visible=True), ""

    def preview(csv_file: str | None, authed: bool):
        import pandas as pd

        if not authed or not csv_file:
            return None
        try:
            return pd.read_csv(csv_file, nrows=20, dtype=str).fillna("")
        except (ValueError, UnicodeDecodeError) as error:
            raise gr.Error(_escape(f"Could not read {Path(csv_file).name} as CSV: {error}. Save it as UTF-8 CSV "
                                   "with a header row."), print_exception=False) from None

    def ingest(csv_file: str | None, images_zip: str | None, authed: bool, progress=gr.Progress(track_tqdm=True)):
        import pandas as pd

        if not authed:
            raise gr.Error("Log in first.", print_exception=False)
        if not csv_file:
            raise gr.Error("Upload a CSV of products or articles first.", print_exception=False)
        with _ui_errors():
            catalog = resources.wait_for_catalog()
            images_dir = _extract_images(images_zip, catalog_images) if images_zip else catalog_images
            progress(0, desc="Ingesting")
            report = catalog.ingest_csv(csv_file, images_dir=images_dir)
        rejected = pd.DataFrame([dataclasses.asdict(row) for row in report.rejected], columns=["row", "reason"])
        summary = (f"Table version **{report.version}**: {report.added} added, {report.updated} updated, "
                   f"{report.unchanged} unchanged, **{len(report.rejected)} rejected**; {len(catalog)} items in all.")
        return summary, rejected, gr.Dropdown(choices=["All", *catalog.categories()])

    # ---- layout ----
    photos = {text: SAMPLE_DATA_DIR / "images" / photo if photo else None for text, photo in EXAMPLES}
    examples = [{"text": text, "files": [str(photo)] if photo else []} for text, photo in photos.items()
                if photo is None or photo.is_file()]

    with SupportApp(settings, image_dirs, title="mmsupport: shopping & support assistant") as demo:
        turns = gr.State([])
        items = gr.State([])
        authed = gr.State(False)
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
                        gr.Examples(
                            label="Try",
                            examples=examples, inputs=textbox)
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
                if not settings.admin_password:
                    gr.Markdown("Catalog admin is **disabled**. Set `MMSUPPORT_ADMIN_PASSWORD` and restart the app "
                                "to upload and ingest catalog CSVs here.")
                else:
                    with gr.Column() as login_box:
                        password = gr.Textbox(label="Admin password", type="password")
                        login_button = gr.Button("Log in", variant="primary")
                    with gr.Column(visible=False) as admin_box:
                        gr.Markdown("Upload a CSV with columns `kind, id, title, category, colour, price, "
                                    "description, image` and optionally a zip of the images it names.")
                        with gr.Row():
                            csv_file = gr.File(label="Catalog CSV", file_types=[".csv"], type="filepath",
                                               elem_id="admin-csv")
                            images_zip = gr.File(label="Images (zip, optional)", file_types=[".zip"],
                                                 type="filepath", elem_id="admin-zip")
                        preview_table = gr.Dataframe(label="Preview (first 20 rows)", interactive=False,
                                                     elem_id="admin-preview")
                        ingest_button = gr.Button("Ingest", variant="primary")
                        ingest_summary = gr.Markdown(elem_id="admin-summary")
                        rejected_table = gr.Dataframe(label="Rejected rows", interactive=False,
                                                      elem_id="admin-rejected")
                    gr.on([login_button.click, password.submit], login, password,
                          [authed, login_box, admin_box, password], api_visibility="private")
                    csv_file.change(preview, [csv_file, authed], preview_table, api_visibility="private")
                    ingest_button.click(ingest, [csv_file, images_zip, authed],
                                        [ingest_summary, rejected_table, category], api_visibility="private")
        with gr.Column(visible=False):
            api_message = gr.Textbox()
            api_image = gr.File(type="filepath")
            api_mode = gr.Textbox(settings.search_mode)
            api_k = gr.Number(settings.top_k, precision=0)
            api_category = gr.Textbox()
            api_result = gr.JSON()
            api_button = gr.Button()

        # ---- events ----
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
        textbox.submit(add_message, [textbox, chatbot], [chatbot, textbox], api_visibility="private",
                       show_progress="hidden").success(
            respond, answer_inputs, answer_outputs, **answering)
        chatbot.retry(retry, chatbot, chatbot, api_visibility="private").success(
            respond, answer_inputs, answer_outputs, **answering)
        chatbot.undo(undo, [chatbot, turns], [chatbot, turns, textbox], api_visibility="private")
        chatbot.clear(lambda: ([], [], [], [], ""), outputs=[chatbot, gallery, items, turns, details],
                      api_visibility="private")
        chatbot.like(vote, turns, None, api_visibility="private")
        gallery.select(ask_about, [items, chatbot], [chatbot, details], api_visibility="private").success(
            respond, answer_inputs, answer_outputs, **answering)
        api_button.click(api_chat, [api_message, api_image, api_mode, api_k, api_category], api_result,
                         api_name="chat", concurrency_id="turn")
        gr.api(api_search, api_name="search")
    demo.resources = resources
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def _extract_images(images_zip: str, folder: Path) -> Path:
    """Extract only the image files of ``images_zip`` into ``folder``, flat and bounded in size (no zip-slip)."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    try:
        with zipfile.ZipFile(images_zip) as archive:
            for info in archive.infolist():
                name = Path(info.filename.replace("\\", "/")).name
                if info.is_dir() or Path(name).suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                    continue
                total += info.file_size
                if total > MAX_ZIP_BYTES:
                    raise InvalidInput(f"The images in {Path(images_zip).name} add up to over "
                                       f"{MAX_ZIP_BYTES // 2**20} MB.", hint="Upload them in smaller zips.")
                with archive.open(info) as source, (folder / name).open("wb") as target:
                    shutil.copyfileobj(source, target)
    except zipfile.BadZipFile:
        raise InvalidInput(f"{Path(images_zip).name} is not a valid zip file.",
                           hint="Zip the image files and upload the .zip again.") from None
    return folder
