"""Background loading: the catalog (built from the sample data on first start) and then the VLM."""

from __future__ import annotations

import html
import logging
import threading

from mmsupport.config import Settings
from mmsupport.errors import CatalogError, MMSupportError
from mmsupport.vlm import VLM

log = logging.getLogger(__name__)


class Resources:
    """Opens the catalog (building the sample one on first start), then loads the VLM, in a background thread.

    The page is served at once; :meth:`shopper_status` tells shoppers in plain words what is happening, and
    :meth:`admin_status` (the admin tab; the log too) says why something is unavailable and how to fix it.
    ``catalog_state`` and ``model_state`` are ``"loading"``, ``"ready"`` or ``"unavailable"`` (then
    ``catalog_error`` / ``model_reason`` say why). Until the model is ready, turns are answered from retrieval alone.
    """

    def __init__(self, settings: Settings, *, vlm: VLM | None = None, catalog=None):
        self.settings = settings
        self.catalog, self.vlm = catalog, vlm
        self.catalog_state = "ready" if catalog is not None else "loading"
        self.model_state = "ready" if vlm is not None else "loading"
        self.catalog_error: MMSupportError | None = None
        self.model_reason = ""
        self._catalog_done = threading.Event()
        self._variant_vlms: dict[tuple, VLM | None] = {}
        self._variant_lock = threading.Lock()
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
                if self.catalog_error is not None:
                    log.error("%s", self.catalog_error)
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
            if self.model_state == "unavailable":
                log.warning("model unavailable, answers come from retrieval alone: %s", self.model_reason)

    def vlm_for(self, turn: Settings) -> VLM | None:
        """The model for a turn's settings: the app's own (loaded in the background) unless an A/B variant names
        another ``model`` or ``adapter``; that one is loaded on the first turn that needs it and kept. A variant model
        that cannot be loaded gives extractive answers (``None``), and the reason goes to the log."""
        key = (turn.model, turn.adapter)
        if key == (self.settings.model, self.settings.adapter):
            return self.vlm
        with self._variant_lock:
            if key not in self._variant_vlms:
                self._variant_vlms[key] = _load_variant_vlm(turn)
            return self._variant_vlms[key]

    def wait_for_catalog(self):
        """The catalog, once open (waits while it is being built); raises the error that stopped it opening."""
        self._catalog_done.wait()
        if self.catalog is None:
            raise self.catalog_error
        return self.catalog

    def shopper_status(self) -> str:
        """The page's status line, in plain words for shoppers (empty once everything is ready)."""
        if self.catalog_state == "loading":
            return "**Opening the catalog…** your question is answered as soon as it is ready."
        if self.catalog_state == "unavailable":
            return "**The catalog is not available right now.** Please try again in a few minutes."
        if self.model_state == "loading":
            return "Getting ready: for a minute, answers are shorter than usual."
        if self.model_state == "unavailable":
            return "Answers are shorter than usual right now."
        return ""

    def admin_status(self) -> str:
        """The catalog's and the model's state with the reason and the fix when one is unavailable (admin tab)."""
        if self.catalog_state == "loading":
            return "**Opening the catalog** (the first start builds it from the sample data, about a minute)…"
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


def _load_variant_vlm(turn: Settings) -> VLM | None:
    from mmsupport.vlm import load_vlm

    try:
        return load_vlm(turn)
    except Exception as error:  # a broken variant must not stop its shoppers getting (extractive) answers
        log.warning("variant model %s (adapter %s) unavailable, its answers come from retrieval alone: %s",
                    turn.model, turn.adapter, error)
        return None
