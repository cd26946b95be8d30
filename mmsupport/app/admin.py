"""The catalog admin tab: log in with ``MMSUPPORT_ADMIN_PASSWORD``, see the catalog's and the model's state (with
the fix when one is unavailable), preview a CSV, ingest it with its images. The tab exists only when a password is
set."""

from __future__ import annotations

import dataclasses
import hmac
import shutil
import zipfile
from pathlib import Path

import gradio as gr

from mmsupport.app import views
from mmsupport.app.resources import Resources
from mmsupport.config import Settings
from mmsupport.errors import InvalidInput

#: Image types kept from an admin zip.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
#: Largest total size of the images inside an admin zip, so a zip bomb cannot fill the disk.
MAX_ZIP_BYTES = 500 * 1024 * 1024


class Admin:
    """The admin handlers: ``login``, ``preview`` and ``ingest``; images uploaded as a zip go to ``images_dir``."""

    def __init__(self, settings: Settings, resources: Resources):
        self.settings = settings
        self.resources = resources
        self.images_dir = (Path(settings.db_dir) / "images").resolve()

    def login(self, password: str):
        """Open the admin controls for this browser session if the password is right."""
        if not hmac.compare_digest((password or "").encode(), self.settings.admin_password.encode()):
            gr.Warning("Wrong admin password.")
            return False, gr.skip(), gr.skip(), "", gr.skip()
        return True, gr.Column(visible=False), gr.Column(visible=True), "", self.resources.admin_status()

    def preview(self, csv_file: str | None, authed: bool):
        """The first 20 rows of the uploaded CSV, as text."""
        import pandas as pd

        if not authed or not csv_file:
            return None
        try:
            return pd.read_csv(csv_file, nrows=20, dtype=str).fillna("")
        except (ValueError, UnicodeDecodeError) as error:
            raise gr.Error(views.escape(f"Could not read {Path(csv_file).name} as CSV: {error}. Save it as UTF-8 "
                                        "CSV with a header row."), print_exception=False) from None

    def ingest(self, csv_file: str | None, images_zip: str | None, authed: bool,
               progress=gr.Progress(track_tqdm=True)):
        """Ingest the CSV (and the zip's images); a summary, the rejected rows and the new category choices."""
        import pandas as pd

        if not authed:
            raise gr.Error("Log in first.", print_exception=False)
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
        authed = gr.State(False)
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
              [authed, login_box, admin_box, password, status], api_visibility="private")
        csv_file.change(self.preview, [csv_file, authed], preview_table, api_visibility="private")
        ingest_button.click(self.ingest, [csv_file, images_zip, authed],
                            [ingest_summary, rejected_table, category], api_visibility="private")


def extract_images(images_zip: str, folder: Path) -> Path:
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
