"""Background loading: the catalog (built from the sample data on first start), then the VLM; the speech model
on the first voice message."""

from __future__ import annotations

import html
import logging
import threading

from mmsupport.config import Settings
from mmsupport.errors import CatalogError, MMSupportError, ModelUnavailable
from mmsupport.vlm import VLM

log = logging.getLogger(__name__)


class Resources:
    """Opens the catalog (building the sample one on first start), then loads the VLM, in a background thread.

    The page is served at once; :meth:`shopper_status` tells shoppers in plain words what is happening, and
    :meth:`admin_status` (the admin tab; the log too) says why something is unavailable and how to fix it.
    ``catalog_state`` and ``model_state`` are ``"loading"``, ``"ready"`` or ``"unavailable"`` (then
    ``catalog_error`` / ``model_reason`` say why). Until the model is ready, turns are answered from retrieval alone.
    ``asr_state`` is ``"off"`` (voice disabled), ``"idle"`` (until the first recording), ``"loading"``, ``"ready"``
    or ``"unavailable"`` (``asr_reason`` says why; voice messages are refused, typing works).
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
        self.asr_state, self.asr_reason, self._asr = ("idle" if settings.asr else "off"), "", None
        self._asr_lock = threading.Lock()
        if catalog is not None:
            self._catalog_done.set()
        threading.Thread(target=self._load, name="mmsupport-loader", daemon=True).start()

    @property
    def loading(self) -> bool:
        return "loading" in (self.catalog_state, self.model_state, self.asr_state)

    def _load(self) -> None:
        if self.catalog is None:
            try:
                catalog = _open_catalog(self.settings)
                catalog.embedder  # load the text embedder now, not on the first question
                catalog.image_embedder  # and the image model (None, with the reason in image_status, if unavailable)
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

    def asr(self):
        """The speech model, loaded on the first call and shared (callers meanwhile wait); raises
        :class:`ModelUnavailable` with the reason when it could not be loaded."""
        with self._asr_lock:
            if self._asr is None and self.asr_state not in ("off", "unavailable"):
                from mmsupport.speech import load_asr

                self.asr_state = "loading"
                try:
                    self._asr, self.asr_state = load_asr(self.settings), "ready"
                except MMSupportError as error:
                    self.asr_reason, self.asr_state = str(error), "unavailable"
                    log.warning("voice messages unavailable: %s", error)
            if self._asr is None:
                raise ModelUnavailable(self.asr_reason or "Voice messages are turned off.")
            return self._asr

    def start_asr(self) -> None:
        """Load the speech model in the background if nothing has started loading it yet."""
        if self.asr_state == "idle":
            self.asr_state = "loading"
            threading.Thread(target=self._try_asr, name="mmsupport-asr-loader", daemon=True).start()

    def _try_asr(self) -> None:
        try:
            self.asr()
        except MMSupportError:
            pass  # recorded in asr_state and asr_reason

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
        if self.asr_state == "loading":
            return "Getting voice messages ready…"
        if self.asr_state == "unavailable":
            return "Voice messages are not available right now: please type your question."
        return ""

    def admin_status(self) -> str:
        """The catalog's and the model's state with the reason and the fix when one is unavailable (admin tab)."""
        if self.catalog_state == "loading":
            return "**Opening the catalog** (the first start builds it from the sample data, about a minute)…"
        if self.catalog_state == "unavailable":
            return f"**Catalog unavailable:** {html.escape(str(self.catalog_error))}"
        name = html.escape(self.vlm.name if self.vlm is not None else self.settings.model)
        if self.model_state == "ready":
            runtime = html.escape(self.vlm.runtime_note or self.vlm.runtime)
            line = f"**Ready:** model {name} on {runtime}, {len(self.catalog)} catalog items."
        elif self.model_state == "loading":
            line = f"**Loading model** {name}… until it is ready, answers list the best-matching catalog items."
        else:
            line = (f"**Model unavailable:** {html.escape(self.model_reason)} "
                    "Answers list the best-matching catalog items instead.")
        images = self.catalog.image_status or f"on ({self.settings.image_embedding_model})"
        return f"{line}  \n**Image search:** {html.escape(images)}  \n{self._asr_status()}"

    def _asr_status(self) -> str:
        """The speech model's state for the admin tab."""
        name = html.escape(self._asr.name if self._asr is not None else self.settings.asr_model)
        return {"off": "**Voice:** off (MMSUPPORT_ASR).",
                "idle": f"**Voice:** speech model {name} loads on the first voice message.",
                "loading": f"**Voice:** loading speech model {name}…",
                "ready": f"**Voice:** speech model {name} ready.",
                "unavailable": f"**Voice unavailable:** {html.escape(self.asr_reason)}"}[self.asr_state]

    @property
    def state(self) -> str:
        """``loading``, ``ready`` or ``unavailable`` overall, for styling the status line."""
        if self.loading:
            return "loading"
        ready = self.catalog_state == self.model_state == "ready" and self.asr_state != "unavailable"
        return "ready" if ready else "unavailable"


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
