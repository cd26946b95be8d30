"""Image–text embeddings: a CLIP or SigLIP model puts catalog pictures, shoppers' photos and (for these two-tower
models) words into one vector space, so a photo finds the products that look like it.

Any Hub id or folder that transformers loads with ``AutoModel`` + ``AutoProcessor`` and that has
``get_image_features`` / ``get_text_features`` works (``openai/clip-vit-base-patch32`` by default,
``google/siglip-base-patch16-224``), and a sentence-transformers CLIP (``sentence-transformers/clip-ViT-B-32``: its
transformers model is read from the folder its ``modules.json`` names). The model loads on first use, once per process; a model that cannot be loaded
(offline and not in the local cache, a wrong folder) raises :class:`~mmsupport.errors.ModelUnavailable` at once on
every later call too, so ingest and search carry on without image vectors instead of retrying for minutes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mmsupport import onnx_models
from mmsupport.errors import ModelUnavailable

logger = logging.getLogger(__name__)

#: Pictures embedded per forward pass at ingest; one under int8 dynamic quantization, whose activation scales are
#: taken per call, so that a picture's vector does not depend on the pictures batched with it (a shopper's copy of
#: a catalog picture must give the catalog's vector), at no cost on a CPU (bench/image_embeddings.py).
BATCH = 16
#: Query photos whose vectors are kept (a turn's searches embed its photo once).
QUERY_CACHE = 64
#: Pictures are decoded at most this large before the processor resizes them (CLIP/SigLIP look at 224-384 px).
DECODE_SIDE = 448

_FIX = ("Set MMSUPPORT_IMAGE_EMBEDDING_MODEL to a CLIP or SigLIP folder or a Hub id in the local cache "
        "(the default openai/clip-vit-base-patch32 needs the Hub once), or to off.")


class ImageEmbedder:
    """A loaded CLIP/SigLIP model producing unit-length float32 vectors (cosine = dot product).

    ``name`` is what it was loaded from, ``fingerprint`` names its weights (what a table records), ``dim`` the
    vector size. ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:n]``. ``quantization``: ``auto``
    (int8 dynamic on a CPU with fbgemm kernels: half the time of fp32 in bench/image_embeddings.py, cosine 0.9995
    to it; none on CUDA), ``none`` or ``int8-dynamic``. ``runtime``: on a CPU, ``onnx`` runs the image tower on ONNX
    Runtime (exported once into ``cache_dir``; on an AVX2 host its int8 kernels take two thirds of the time of
    PyTorch's, the same bench), with PyTorch as the fallback when the export fails; ``torch`` keeps it on PyTorch;
    ``auto`` (the default) lets a short probe pick the faster on this CPU (:func:`mmsupport.host.fastest`).
    ``runtime`` then says which one runs."""

    def __init__(self, name: str, *, device: str = "auto", quantization: str = "auto", runtime: str = "auto",
                 cache_dir: Path | str = ".mmsupport/cache"):
        import torch
        from transformers import AutoModel, AutoProcessor

        from mmsupport.embeddings import fingerprint
        from mmsupport.vlm import hub_reachable

        cache_only = not Path(name).expanduser().is_dir() and not hub_reachable()
        subfolder = _sentence_transformers_clip(name, cache_only)
        try:
            # Pillow resizes as CLIP was trained and on the calling thread: the torchvision backend's parallel
            # resize leaves PyTorch's threads spinning, which slows the ONNX Runtime forward after it by a sixth.
            self.processor = AutoProcessor.from_pretrained(name, subfolder=subfolder, local_files_only=cache_only,
                                                           backend="pil")
            self.model = AutoModel.from_pretrained(name, subfolder=subfolder, local_files_only=cache_only)
        except Exception as error:  # noqa: BLE001 - offline, missing folder, not a model: all mean "cannot load"
            where = " (the Hub cannot be reached and it is not in the local cache)" if cache_only else ""
            raise ModelUnavailable(f"Cannot load the image embedding model {name!r}{where}: "
                                   f"{str(error).splitlines()[0]}", hint=_FIX) from None
        self._normalisation = _normalisation(self.processor)
        if not hasattr(self.model, "get_image_features"):
            raise ModelUnavailable(f"{name!r} is a {type(self.model).__name__}, not an image–text model.", hint=_FIX)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.model.to(self.device).eval()
        self.name = name
        self.fingerprint = fingerprint(self.model)  # of the weights as trained, whatever runs them here
        from mmsupport import int8

        if quantization == "auto":
            quantization = "int8-dynamic" if self.device == "cpu" and int8.available() else "none"
        self.images_onnx = None
        pixels = self._pixels([_probe()])
        if runtime in ("auto", "onnx") and self.device == "cpu":
            self.images_onnx = _onnx_image_tower(self.model, pixels, Path(cache_dir),
                                                 int8=quantization == "int8-dynamic")
        if quantization == "int8-dynamic":
            int8.quantize_int8_dynamic(self.model)
        if runtime == "auto" and self.images_onnx:
            from mmsupport.host import fastest

            session = self.images_onnx
            if fastest(f"image embeddings {self.fingerprint} {quantization}", {
                    "onnx": lambda: session.run(None, {"pixel_values": pixels.numpy()}),
                    "torch": lambda: self._forward("get_image_features", {"pixel_values": pixels})},
                    cache_dir) == "torch":
                self.images_onnx = None
        self.runtime = "onnx" if self.images_onnx else "torch"
        self.quantization = quantization
        self.batch = 1 if quantization == "int8-dynamic" else BATCH
        self.can_embed_text = hasattr(self.model, "get_text_features")
        self.dim = int(self.embed_images([_probe()]).shape[1])
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed_images(self, images: list, *, progress: bool = False) -> np.ndarray:
        """Pictures (paths, bytes or PIL images) as an ``(n, dim)`` array, in batches of ``batch``."""
        from tqdm.auto import tqdm

        from mmsupport.images import load_image

        out = []
        with tqdm(total=len(images), desc="image vectors", unit="image", disable=not progress) as bar:
            for start in range(0, len(images), self.batch):
                batch = [load_image(image, max_side=DECODE_SIDE) for image in images[start:start + self.batch]]
                pixels = self._pixels(batch)
                if self.images_onnx:
                    out.append(_unit(self.images_onnx.run(None, {"pixel_values": pixels.numpy()})[0]))
                else:
                    out.append(self._forward("get_image_features", {"pixel_values": pixels}))
                bar.update(len(batch))
        return np.concatenate(out) if out else np.empty((0, getattr(self, "dim", 0)), dtype=np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Words in the same space as the pictures (CLIP-style models), ``(n, dim)``."""
        if not self.can_embed_text:
            raise ModelUnavailable(f"The image embedding model {self.name!r} has no text encoder.",
                                   hint="Search it with a photo, or use a CLIP or SigLIP model.")
        inputs = self.processor(text=texts, return_tensors="pt", padding="max_length", truncation=True,
                                max_length=self._text_length())
        return self._forward("get_text_features", inputs)

    def embed_query(self, image) -> np.ndarray:
        """One photo's vector; the same pixels are embedded once (kept for the last :data:`QUERY_CACHE` photos)."""
        from mmsupport.images import image_digest, load_image

        image = load_image(image, max_side=DECODE_SIDE)
        key = image_digest(image)
        with self._lock:
            if key in self._queries:
                self._queries.move_to_end(key)
                return self._queries[key]
        vector = self.embed_images([image])[0]
        with self._lock:
            self._queries[key] = vector
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        return vector

    def _pixels(self, images: list):
        """The processor's pixel values. It resizes and crops; its rescale and normalisation (two passes of
        transformers' NumPy code, a third of a photo's preprocessing) are one multiply-add here."""
        import torch

        if self._normalisation is None:
            return self.processor(images=images, return_tensors="pt")["pixel_values"]
        scale, offset = self._normalisation
        raw = self.processor(images=images, return_tensors="np", do_rescale=False, do_normalize=False)
        return torch.from_numpy((raw["pixel_values"] * scale - offset).astype(np.float32, copy=False))

    def _text_length(self) -> int:
        config = getattr(self.model.config, "text_config", self.model.config)
        return int(getattr(config, "max_position_embeddings", 77))

    def _forward(self, method: str, inputs) -> np.ndarray:
        import torch

        inputs = {key: value.to(self.device) for key, value in inputs.items()
                  if key in ("pixel_values", "input_ids", "attention_mask")}
        if method == "get_text_features" and "siglip" in type(self.model).__name__.lower():
            inputs.pop("attention_mask", None)  # SigLIP was trained on max-length padding without a mask
        with torch.inference_mode():
            features = _features(getattr(self.model, method)(**inputs))
        return _unit(features.float().cpu().numpy())


def _normalisation(processor) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel ``(scale, offset)`` such that ``pixels * scale - offset`` is the processor's rescale and
    normalisation of its resized pixels; ``None`` for a processor without the usual settings (it then does both)."""
    settings = getattr(processor, "image_processor", None)
    try:
        factor = float(settings.rescale_factor) if settings.do_rescale else 1.0
        mean, std = ((np.asarray(settings.image_mean, np.float32), np.asarray(settings.image_std, np.float32))
                     if settings.do_normalize else (np.zeros(3, np.float32), np.ones(3, np.float32)))
    except (AttributeError, TypeError, ValueError):
        return None
    return (factor / std).reshape(-1, 1, 1), (mean / std).reshape(-1, 1, 1)


def _features(output):
    """The embedding in a ``get_*_features`` output: the tensor itself, or its ``pooler_output``."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _unit(features: np.ndarray) -> np.ndarray:
    return (features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _onnx_image_tower(model, example, cache_dir: Path, *, int8: bool):
    """An ONNX Runtime session computing ``model.get_image_features`` from pixel values (int8 weights when
    ``int8``), exported once into ``cache_dir``; ``None`` when the export fails (then PyTorch runs it)."""
    import torch

    class ImageFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return _features(self.model.get_image_features(pixel_values=pixel_values))

    try:
        graph = cache_dir / "onnx" / f"{onnx_models.weights_hash(model)}.image.onnx"
        if not graph.is_file():
            onnx_models.export(ImageFeatures(), (example,), graph, input_names=["pixel_values"],
                               output_names=["image_embeds"],
                               dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                               transformer=model, fuse_as="clip")
        if int8:
            quantized = graph.with_suffix(".int8.onnx")
            if not quantized.is_file():
                onnx_models.quantize_int8(graph, quantized)
            graph = quantized
        return onnx_models.session(graph, spin=True)
    except Exception as error:  # noqa: BLE001 - any export or runtime failure means "use PyTorch"
        logger.warning("Image embeddings run on PyTorch (slower photos): the ONNX export failed: %s", error)
        return None


def _sentence_transformers_clip(name: str, cache_only: bool) -> str:
    """Where a sentence-transformers CLIP (e.g. ``sentence-transformers/clip-ViT-B-32``) keeps its transformers model:
    the folder of its ``CLIPModel`` module in ``modules.json``; "" for a transformers model."""
    folder = Path(name).expanduser()
    try:
        if folder.is_dir():
            modules = folder / "modules.json"
        else:
            from huggingface_hub import hf_hub_download

            modules = Path(hf_hub_download(name, "modules.json", local_files_only=cache_only))
        listed = json.loads(modules.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - no readable modules.json: not a sentence-transformers model
        return ""
    return next((module["path"] for module in listed if str(module.get("type", "")).endswith("CLIPModel")), "")


def _probe():
    from PIL import Image

    return Image.new("RGB", (32, 32), (128, 128, 128))


_lock = threading.Lock()
_loaded: dict[tuple[str, str], ImageEmbedder | ModelUnavailable] = {}


def load_image_embedder(name: str, *, device: str = "auto", runtime: str = "auto",
                        cache_dir: Path | str = ".mmsupport/cache") -> ImageEmbedder:
    """The image embedder for ``name``, loaded once per process (thread-safe). A failed load is remembered: later
    calls raise the same :class:`ModelUnavailable` at once (a restart tries again)."""
    key = (name, device, runtime, str(cache_dir))
    with _lock:
        if key not in _loaded:
            try:
                _loaded[key] = ImageEmbedder(name, device=device, runtime=runtime, cache_dir=cache_dir)
            except ModelUnavailable as error:
                logger.warning("Image search is off: %s", error)
                _loaded[key] = error
        found = _loaded[key]
    if isinstance(found, ModelUnavailable):
        raise found
    return found
