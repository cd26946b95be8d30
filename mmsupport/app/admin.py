"""The catalog admin tab: log in with ``MMSUPPORT_ADMIN_PASSWORD``, see the catalog's and the model's state (with
the fix when one is unavailable), preview a CSV, ingest it with its images.

Only built when the password is set. The log-in hands the browser a token (:mod:`mmsupport.app.sessions`) that it
sends with every admin call; each handler checks it before doing anything.
"""

from __future__ import annotations

import dataclasses
import shutil
import zipfile
from pathlib import Path

import gradio as gr

from mmsupport.app import views
from mmsupport.app.resources import Resources
from mmsupport.app.sessions import AdminSessions
from mmsupport.config import Settings
from mmsupport.csvfile import read_csv
from mmsupport.errors import InvalidInput
from mmsupport.images import SUFFIXES

#: Largest total size of the images inside an admin zip, so a zip bomb cannot fill the disk.
MAX_ZIP_BYTES = 500 * 1024 * 1024


class Admin:
    """The admin handlers: ``login``, ``preview`` and ``ingest``; images uploaded as a zip go to ``images_dir``."""

    def __init__(self, settings: Settings, resources: Resources, store=None):
        self.settings = settings
        self.resources = resources
        self.store = store
        self.images_dir = settings.images_dir.resolve()
        self.sessions = AdminSessions(settings.admin_password or "", ttl=settings.admin_session_minutes * 60)

    def login(self, password: str, request: gr.Request):
        """Open the admin controls and hand this browser a session token if the password is right."""
        client = request.client.host if request is not None and request.client is not None else "unknown"
        try:
            token = self.sessions.log_in(password, client)
        except InvalidInput as error:
            gr.Warning(error.message)
            return None, gr.skip(), gr.skip(), "", gr.skip()
        return token, gr.Column(visible=False), gr.Column(visible=True), "", self.status()

    def status(self) -> str:
        """The catalog's and the model's state, and how many conversation-store writes failed (when any did)."""
        failures = self.store.failures if self.store is not None else 0
        lost = (f"  \n**Conversation store:** {failures} writes failed since the start (see the log); answers are "
                "not affected." if failures else "")
        return self.resources.admin_status() + lost

    def preview(self, csv_file: str | None, token: str | None):
        """The first 20 rows of the uploaded CSV, read as ingest reads it."""
        import pandas as pd

        with views.ui_errors():
            self.sessions.check(token)
            if not csv_file:
                return None
            table = read_csv(csv_file)
        return pd.DataFrame([fields for _, fields in table.rows[:20]], columns=table.header)

    def ingest(self, csv_file: str | None, images_zip: str | None, token: str | None,
               progress=gr.Progress(track_tqdm=True)):
        """Ingest the CSV (and the zip's images); a summary, the rejected rows and the new category choices."""
        import pandas as pd

        with views.ui_errors():
            self.sessions.check(token)
        if not csv_file:
            raise gr.Error("Upload a CSV of products or articles first.", print_exception=False)
        with views.ui_errors():
            catalog = self.resources.wait_for_catalog()
            images_dir = extract_images(images_zip, self.images_dir) if images_zip else self.images_dir
            progress(0, desc="Ingesting")
            report = catalog.ingest_csv(csv_file, images_dir=images_dir)
        rejected = pd.DataFrame([dataclasses.asdict(row) for row in report.rejected], columns=["row", "reason"])
        summary = (f"Table version **{report.version}**: {report.added} added, {report.updated} updated, "
                   f"{report.unchanged} unchanged, **{len(report.rejected)} rejected**; {len(catalog)} items in all.")
        return summary, rejected, gr.Dropdown(choices=["All", *catalog.categories()])

    def tab(self, category: gr.Dropdown) -> None:
        """The admin tab's components and events (call inside a ``gr.Tab``, only when an admin password is set);
        ingests refresh ``category``."""
        token = gr.BrowserState(None)  # held by this browser, checked by the server on every admin call
        with gr.Column() as login_box:
            password = gr.Textbox(label="Admin password", type="password")
            login_button = gr.Button("Log in", variant="primary")
        with gr.Column(visible=False) as admin_box:
            status = gr.Markdown(elem_id="admin-status")
            gr.Markdown("Upload a CSV with columns `kind, id, title, category, colour, price, "
                        "description, image` and optionally a zip of the images it names.")
            with gr.Row():
                csv_file = gr.File(label="Catalog CSV", file_types=[".csv"], type="filepath", elem_id="admin-csv")
                images_zip = gr.File(label="Images (zip, optional)", file_types=[".zip"], type="filepath",
                                     elem_id="admin-zip")
            preview_table = gr.Dataframe(label="Preview (first 20 rows)", interactive=False,
                                         elem_id="admin-preview")
            ingest_button = gr.Button("Ingest", variant="primary")
            ingest_summary = gr.Markdown(elem_id="admin-summary")
            rejected_table = gr.Dataframe(label="Rejected rows", interactive=False, elem_id="admin-rejected")
        gr.on([login_button.click, password.submit], self.login, password,
              [token, login_box, admin_box, password, status], api_visibility="private")
        csv_file.change(self.preview, [csv_file, token], preview_table, api_visibility="private")
        ingest_button.click(self.ingest, [csv_file, images_zip, token],
                            [ingest_summary, rejected_table, category], api_visibility="private")


def extract_images(images_zip: str, folder: Path) -> Path:
    """Extract only the image files of ``images_zip`` into ``folder``, flat and bounded in size (no zip-slip)."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    try:
        with zipfile.ZipFile(images_zip) as archive:
            for info in archive.infolist():
                name = Path(info.filename.replace("\\", "/")).name
                if info.is_dir() or Path(name).suffix.lower() not in SUFFIXES or name.startswith("."):
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
