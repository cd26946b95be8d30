"""Which model built each vector column of a catalog table, so vectors of two models never meet in one search.

The record lives in the table's schema metadata under :data:`KEY`, as JSON: ``{column: {"model", "fingerprint",
"dim"}}`` for ``vector`` (the text embedder) and ``image_vector`` (the image–text model). Models are compared by
fingerprint (:func:`mmsupport.embeddings.fingerprint`), so the same weights loaded from the Hub or from a folder
agree. Tables written before the record existed have none and are not checked.
"""

from __future__ import annotations

import json

from mmsupport.errors import CatalogError

KEY = "mmsupport.vector_models"
#: The setting that chooses the model of each vector column, named in refusals.
SETTINGS = {"vector": "MMSUPPORT_EMBEDDING_MODEL", "image_vector": "MMSUPPORT_IMAGE_EMBEDDING_MODEL"}


def describe(model) -> dict:
    """What a table records about the model that built a column."""
    return {"model": model.name, "fingerprint": model.fingerprint, "dim": model.dim}


def recorded(schema) -> dict[str, dict]:
    """The record of a table (its arrow schema), ``{}`` when it has none."""
    raw = (schema.metadata or {}).get(KEY.encode())
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def encoded(models: dict[str, dict]) -> dict[str, str]:
    """``models`` as schema metadata."""
    return {KEY: json.dumps(models, sort_keys=True)}


def check(table: str, column: str, models: dict[str, dict], model) -> None:
    """Raise :class:`CatalogError` when ``column`` of ``table`` was built by another model than ``model``."""
    built = models.get(column)
    if built is None or built.get("fingerprint") == model.fingerprint:
        return
    raise CatalogError(
        f"The {column!r} column of table {table!r} was built with {built.get('model')!r}, and this search would use "
        f"{model.name!r}: their vectors cannot be compared.",
        hint=f"Set {SETTINGS[column]}={built.get('model')} (the model the table was built with), or ingest into a "
        "new --table with the new model.")
