"""The catalog of products and support articles: one LanceDB table, ingested from CSV by upsert, searched by
:mod:`mmsupport.retrieval`.

Table layout: the core columns of :class:`Item` (``id, kind, title, text, category, colour, price, image, family``),
one string column per extra CSV column (the item's ``attributes``, usable in ``where`` filters), ``vector`` (the
embedding of ``text``), ``sentences`` and ``sentence_vectors`` (the text split into sentences, each embedded once here
so extractive answers need no embedding at query time) and ``row_hash`` (what the row was built from, so re-ingesting
an unchanged row is a no-op). ``family`` groups a product's colour/size variants: the CSV's ``group`` column when it has
one, else the title without its variant suffix (:func:`family_name`).

Writes are crash safe: each ingest commits its rows in one LanceDB transaction, so a killed ingest leaves the previous
version. LanceDB leaves the files of an interrupted write on disk; the next ingest (or :meth:`Catalog.cleanup`) removes
them while holding the table's write lock.

On object storage (``db_dir`` = ``s3://bucket/prefix`` and the like) a file lock cannot hold writers on other machines
apart: there the rule is one writing process per table (the ingest job), any number of readers. Lance commits each
write atomically, so readers always see a whole version; files of interrupted writes are left for
:data:`KEEP_VERSIONS`, after which cleanup removes them, since a write in progress elsewhere cannot be told apart
from a dead one sooner.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import re
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mmsupport.config import SAMPLE_DATA_DIR, Settings
from mmsupport.csvfile import number_reader, read_csv
from mmsupport.errors import CatalogError, InvalidInput

if TYPE_CHECKING:
    import lance

    from mmsupport.retrieval import ExactIndex

CORE_COLUMNS = ("id", "kind", "title", "text", "category", "colour", "price", "image", "family")
INTERNAL_COLUMNS = ("vector", "row_hash", "sentences", "sentence_vectors", "image_vector", "image_digest")
#: The image–text model's columns: the picture's vector and the SHA-1 of the image bytes it was made from.
IMAGE_COLUMNS = ("image_vector", "image_digest")
#: Columns computed at ingest; rows of older tables without them are rebuilt on the next ingest.
DERIVED_COLUMNS = ("family", "sentences", "sentence_vectors")
#: The CSV column (as a table column name) that names a product's variant family.
GROUP_COLUMN = "group"
#: Columns (besides ``category``) naming a product's type, e.g. ``subcategory`` = ``backpacks`` in the sample shop.
TYPE_COLUMNS = ("subcategory", "type", "product_type", "article_type", "articletype")
#: Sentences kept (and embedded) per row.
MAX_SENTENCES = 40
KINDS = ("product", "article")
#: Column names (lower case) recognised without a flag.
TITLE_NAMES = ("title", "name", "product_name", "productdisplayname")
TEXT_NAMES = ("description", "text", "body", "content")
COLOUR_NAMES = ("colour", "color")
#: Full-text index: positions for exact-phrase matches, stemming on, stop words kept (removing them blurs exact
#: phrases; tuned on the dev set, see README).
FTS_OPTIONS = {"with_position": True, "stem": True, "remove_stop_words": False}
#: Tables with at least this many rows get an ANN vector index (exact search is fast enough below).
ANN_MIN_ROWS = 100_000
#: Fragments (one per writing ingest) at which an ingest compacts the table.
COMPACT_FRAGMENTS = 8
#: Old versions kept for time travel; older ones are removed by :meth:`Catalog.cleanup`.
KEEP_VERSIONS = timedelta(days=7)
#: What to check when object storage refuses: the usual environment of LanceDB's object-store client.
STORAGE_HINT = ("Check the bucket name and the storage's environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY, AWS_REGION; AWS_ALLOW_HTTP=true for a local http:// endpoint).")
#: Object-store failures worth naming, as (text in LanceDB's error, what it means).
_STORAGE_PROBLEMS = (("NoSuchBucket", "the bucket does not exist"),
                     ("Connection refused", "nothing answers at the storage endpoint"),
                     ("tcp connect error", "the storage endpoint cannot be reached"),
                     ("InvalidAccessKeyId", "the access key is not known"),
                     ("SignatureDoesNotMatch", "the secret key is wrong"),
                     ("AccessDenied", "access is denied"),
                     ("Forbidden", "access is denied"),
                     ("credential", "no credentials were found"))


def _storage_problem(error: Exception) -> str | None:
    """What an object-store error means, in words, or ``None`` when it is not one we know."""
    text = str(error)
    return next((meaning for marker, meaning in _STORAGE_PROBLEMS if marker in text), None)


#: Holds this process's writers to object-storage tables apart (across processes, see the module notes).
_REMOTE_WRITERS = threading.Lock()
#: Seconds between looks for versions written by another process (say, a CLI ingest while the app runs).
REFRESH_SECONDS = 2.0
#: What a table name may be: it becomes a folder name inside the LanceDB folder, so no path parts.
TABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


@dataclass
class Item:
    """One catalog row as search returns it; ``score`` is higher for better matches (0 outside a search) and
    ``similarity`` is the cosine similarity to the query (``None`` outside a search and in full-text search)."""

    id: str
    kind: str
    title: str
    text: str
    category: str | None = None
    colour: str | None = None
    price: float | None = None
    image: str | None = None
    family: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    score: float = 0.0
    similarity: float | None = None

    def __post_init__(self):
        # NaN and infinity are not JSON (older tables may hold such prices): they become "no value"
        self.price = _finite(self.price)
        self.similarity = _finite(self.similarity)
        self.score = _finite(self.score) or 0.0

    def to_dict(self) -> dict:
        """The item as plain JSON-safe data (no NaN or infinity anywhere)."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict, score: float = 0.0, similarity: float | None = None) -> Item:
        core = {name: row.get(name) for name in CORE_COLUMNS}
        attributes = {key: value for key, value in row.items()
                      if key not in CORE_COLUMNS and key not in INTERNAL_COLUMNS and not key.startswith("_")
                      and value is not None}
        return cls(**core, attributes=attributes, score=float(score), similarity=similarity)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class RejectedRow:
    """A CSV row that was not ingested: its line number in the file and why."""

    row: int
    reason: str


@dataclass
class IngestReport:
    """What one ingest did. ``version`` is the table version after it (unchanged if nothing was written)."""

    table: str
    version: int
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["rejected"] = len(self.rejected)
        data["rejected_rows"] = [asdict(r) for r in self.rejected]
        return data


@dataclass
class _Columns:
    """Which CSV header maps to which catalog field."""

    id: str
    title: str | None
    text: list[str]
    image: str | None
    kind: str | None
    category: str | None
    colour: str | None
    price: str | None
    attributes: dict[str, str]  # CSV header -> table column


def _normalise(header: str) -> str:
    return re.sub(r"[^0-9a-z_]+", "_", header.strip().lower()).strip("_") or "column"


def _column_name(header: str) -> str:
    """A filter-friendly column name for an extra CSV header: ``" Primary Color"`` -> ``primary_color``."""
    name = _normalise(header)
    if name[0].isdigit() or name in CORE_COLUMNS or name in INTERNAL_COLUMNS:
        name = f"attr_{name}"
    return name


def _check_headers(headers: list[str]) -> None:
    """Refuse headers that would land in the same column (their values would overwrite each other)."""
    groups: dict[str, list[str]] = {}
    for header in headers:
        groups.setdefault(_normalise(header), []).append(header)
    clashes = [f"{', '.join(repr(h) for h in names)} all become column {name!r}"
               for name, names in groups.items() if len(names) > 1]
    if clashes:
        raise InvalidInput(f"Some CSV headers name the same column: {'; '.join(clashes)}.",
                           hint="Rename or remove the extra headers so each column has its own name.")


def _pick(headers: list[str], flag_value: str | None, names: tuple[str, ...], flag: str) -> str | None:
    lower = {h.lower(): h for h in headers}
    if flag_value is None:
        return next((lower[n] for n in names if n in lower), None)
    if flag_value in headers:
        return flag_value
    if flag_value.lower() in lower:
        return lower[flag_value.lower()]
    raise InvalidInput(f"{flag} {flag_value!r} is not a column of the CSV; columns found: {', '.join(headers)}.",
                       hint=f"Pass {flag} with one of those names.")


def _map_columns(headers: list[str], *, id_col, title_col, text_cols, image_col) -> _Columns:
    _check_headers(headers)
    found = ", ".join(headers) or "(none)"
    id_name = _pick(headers, id_col, ("id",), "--id-col")
    if id_name is None:
        raise InvalidInput(f"The CSV has no id column; columns found: {found}.",
                           hint="Name the column holding unique ids with --id-col COL.")
    title = _pick(headers, title_col, TITLE_NAMES, "--title-col")
    if text_cols:
        text = [_pick(headers, c.strip(), (), "--text-cols") for c in text_cols]
    else:
        text = [h for h in headers if h.lower() in TEXT_NAMES]
        text = ([title] if title else []) + text
    if not text:
        raise InvalidInput(f"The CSV has no text columns to search; columns found: {found}.",
                           hint="Name them with --text-cols A,B (and --title-col COL for the title).")
    image = _pick(headers, image_col, ("image",), "--image-col")
    kind, category, colour, price = (_pick(headers, None, names, "") for names in
                                     (("kind",), ("category",), COLOUR_NAMES, ("price",)))
    named = {id_name, title, image, kind, category, colour, price}
    free_text = {h for h in text if h.lower() in TEXT_NAMES}
    attributes = {h: _column_name(h) for h in headers if h not in named and h not in free_text}
    return _Columns(id_name, title, text, image, kind, category, colour, price, attributes)


def _check_image(images_dir: Path, name: str) -> tuple[Path, bytes]:
    """The resolved path and bytes of image ``name`` (relative to ``images_dir``); ``ValueError`` saying why it is
    unusable. A path leading outside the folder (``..``, absolute, a symlink out) gets one message whether or not
    its target exists."""
    from mmsupport.images import MAX_BYTES, load_image

    root = images_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"image {name!r} is not inside the images folder (give a path relative to it)")
    if not path.is_file():
        raise ValueError(f"image {name!r} does not exist in the images folder")
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"image {name!r} is larger than {MAX_BYTES // 2**20} MiB")
    data = path.read_bytes()
    try:
        load_image(data)
    except Exception as error:  # noqa: BLE001 - any decoding failure rejects this row, not the ingest
        raise ValueError(f"image {name!r} is not a readable image ({getattr(error, 'message', error)})") from None
    return path, data


def _parse_rows(images_dir: Path, columns: _Columns, headers: list[str], rows):
    """Yield ``(line, record, None)`` for good rows and ``(line, None, reason)`` for bad ones."""
    seen: dict[str, int] = {}
    read_price = number_reader(fields[headers.index(columns.price)] for _, fields in rows) if columns.price else None
    for line, fields in rows:
        values = dict(zip(headers, fields))
        bad = next((h for h, v in values.items() if any("\udc80" <= ch <= "\udcff" for ch in v)), None)
        if bad is not None:
            yield line, None, f"non-UTF-8 bytes in column {bad!r}"
            continue
        get = lambda h: (values[h].strip() or None) if h else None  # noqa: E731
        item_id = get(columns.id)
        if item_id is None:
            yield line, None, "empty id"
            continue
        if item_id in seen:
            yield line, None, f"duplicate id {item_id!r} (first on line {seen[item_id]})"
            continue
        seen[item_id] = line
        kind = (get(columns.kind) or "product").lower()
        if kind not in KINDS:
            yield line, None, f"kind {kind!r} is not one of {', '.join(KINDS)}"
            continue
        text = "\n".join(v for v in (get(h) for h in columns.text) if v)
        if not text:
            yield line, None, f"no text in {', '.join(columns.text)}"
            continue
        price = get(columns.price)
        if price is not None:
            try:
                price = read_price(price)
            except ValueError as error:
                yield line, None, f"price {price!r} {error}"
                continue
        image, image_digest = get(columns.image), ""
        if image is not None:
            try:
                image_path, image_bytes = _check_image(images_dir, image)
            except ValueError as error:
                yield line, None, str(error)
                continue
            image, image_digest = str(image_path), hashlib.sha1(image_bytes).hexdigest()
        title = get(columns.title) or text.split("\n")[0][:80]
        record = {"id": item_id, "kind": kind, "title": title, "text": text, "category": get(columns.category),
                  "colour": get(columns.colour), "price": price, "image": image}
        record.update({name: get(header) for header, name in columns.attributes.items()})
        digest = json.dumps(record, sort_keys=True) + image_digest
        record["row_hash"] = hashlib.sha1(digest.encode("utf-8")).hexdigest()
        record["image_digest"] = image_digest or None
        yield line, record, None


class Catalog:
    """A LanceDB catalog table. Open with :meth:`open`; build or update with :meth:`ingest_csv`."""

    def __init__(self, db, settings: Settings, table=None):
        self._db = db
        self.settings = settings
        self.name = settings.table
        self._table = table
        self._embedder = None
        self._image_embedder = None
        #: Why image search is off, in words for the admin and the log (``None`` while it is on).
        self.image_status: str | None = None if settings.image_vectors else "off (MMSUPPORT_IMAGE_EMBEDDING_MODEL)"
        self._view: CatalogView | None = None

    @classmethod
    def open(cls, settings: Settings, *, create: bool = False) -> Catalog:
        """Open ``settings.table`` in ``settings.db_dir``. A missing table raises :class:`CatalogError` unless
        ``create``, which returns an empty catalog whose first :meth:`ingest_csv` creates the table."""
        import lancedb

        check_table_name(settings.table)
        if not settings.catalog_is_remote:
            Path(settings.db_dir).mkdir(parents=True, exist_ok=True)
        try:
            db = lancedb.connect(str(settings.db_dir))
            table = db.open_table(settings.table)
        except (FileNotFoundError, ValueError, OSError) as error:
            if settings.catalog_is_remote and _storage_problem(error):
                raise CatalogError(f"Cannot open the catalog at {settings.db_dir}: {_storage_problem(error)}.",
                                   hint=STORAGE_HINT) from None
            if not create:
                raise CatalogError(
                    f"No catalog table {settings.table!r} in {settings.db_dir}.",
                    hint="Build it with `python -m mmsupport ingest --csv FILE` (same --db and --table), "
                    "or start the app once to build the sample catalog.",
                ) from None
            table = None
        return cls(db, settings, table)

    # -- reading -----------------------------------------------------------------------------------------------

    @property
    def table(self):
        """The underlying ``lancedb`` table (raises :class:`CatalogError` while the catalog is empty)."""
        if self._table is None:
            raise CatalogError(f"The catalog table {self.name!r} is empty.",
                               hint="Ingest a CSV first: `python -m mmsupport ingest --csv FILE`.")
        return self._table

    @property
    def version(self) -> int:
        """The LanceDB version of the table (0 before the first ingest)."""
        return 0 if self._table is None else self._table.version

    def __len__(self) -> int:
        return 0 if self._table is None else self._table.count_rows()

    @property
    def embedder(self):
        """The embedding model named by ``settings.embedding_model``, loaded on first use."""
        if self._embedder is None:
            from mmsupport.embeddings import load_embedder

            self._embedder = load_embedder(self.settings.embedding_model, runtime=self.settings.embedding_runtime,
                                           cache_dir=self.settings.cache_dir)
        return self._embedder

    @property
    def image_embedder(self):
        """The image–text model of ``settings.image_embedding_model``, loaded on first use; ``None`` when it is off
        or cannot be loaded (then :attr:`image_status` says why)."""
        if self._image_embedder is None and self.settings.image_vectors and self.image_status is None:
            from mmsupport.errors import ModelUnavailable
            from mmsupport.image_embeddings import load_image_embedder

            try:
                self._image_embedder = load_image_embedder(
                    self.settings.image_embedding_model, device=self.settings.device,
                    runtime=self.settings.embedding_runtime, cache_dir=self.settings.cache_dir)
            except ModelUnavailable as error:
                self.image_status = f"unavailable: {error}"
        return self._image_embedder

    def search(self, query: str, *, mode: str = "hybrid", k: int = 5, where: str | None = None,
               image=None) -> list[Item]:
        """The ``k`` best items for ``query``, best first. ``mode`` is ``vector``, ``fts`` (BM25), ``hybrid`` or
        ``image`` (the pictures' vectors, queried with ``image`` or, for CLIP-style models, with the words);
        ``where`` is an SQL prefilter over the columns, e.g. ``"kind = 'product' AND price < 50"``. ``image`` (a
        photo, or its vector from :meth:`embed_photo`) adds the pictures that look like it to any mode
        (:func:`mmsupport.retrieval.search_with_image`)."""
        from mmsupport.retrieval import search, search_with_image

        if mode in ("vector", "hybrid"):
            self.check_model("vector")
        if image is not None or mode == "image":
            found = search_with_image(self, query, image, mode=mode, k=k, where=where)
        else:
            found = search(self, query, mode=mode, k=k, where=where)
        return [Item.from_row(row, score, cosine) for row, score, cosine in found]

    def embed_photo(self, image):
        """A photo's image vector for :meth:`search` (the same pixels are embedded once); raises
        :class:`~mmsupport.errors.ModelUnavailable` when image search is off or its model cannot be loaded."""
        self.check_model("image_vector")
        return self.image_embedder.embed_query(image)

    def check_model(self, column: str) -> None:
        """Refuse (:class:`CatalogError`) a search of ``column`` with another model than the one that built it; for
        ``image_vector``, also say why image search cannot run (:class:`~mmsupport.errors.ModelUnavailable`)."""
        from mmsupport import vector_models
        from mmsupport.errors import ModelUnavailable

        view = self.view()
        if column == "image_vector":
            if self.image_embedder is None:
                raise ModelUnavailable(f"Image search is {self.image_status}.",
                                       hint="Set MMSUPPORT_IMAGE_EMBEDDING_MODEL to a CLIP or SigLIP model.")
            if "image_vector" not in view.dataset.schema.names:
                raise CatalogError(f"Table {self.name!r} has no image vectors yet.",
                                   hint="Ingest the catalog again with image search on: only pictures are embedded.")
        model = self.image_embedder if column == "image_vector" else self.embedder
        key = ("model checked", column, model.fingerprint)
        if key not in view.cache:
            vector_models.check(self.name, column, vector_models.recorded(view.dataset.schema), model)
            view.cache[key] = True

    def get(self, item_id: str) -> Item | None:
        """The item with this id, or ``None``."""
        if self._table is None:
            return None
        rows = self._table.search().where(f"id = {sql_literal(item_id)}").select(self.columns()).limit(1).to_list()
        return Item.from_row(rows[0]) if rows else None

    def columns(self) -> list[str]:
        """The columns that make an :class:`Item` (all but the vector and the row hash)."""
        return self.view().columns

    def view(self) -> CatalogView:
        """The latest version of the table as a search reads it (one search uses one view throughout). Read again
        after each write: at once after this catalog's own, within :data:`REFRESH_SECONDS` after another
        process's."""
        view = self._view
        if view is not None and time.monotonic() - view.checked >= REFRESH_SECONDS:
            self.table.checkout_latest()
            if self.table.version == view.dataset.version:
                view.checked = time.monotonic()
            else:
                view = None
        if view is None:
            from mmsupport.retrieval import ExactIndex, load_vectors, read_ahead_full_text

            table = self.table
            dataset = table.to_lance()
            indexes = _indexes(table)
            indexed = ("vector",) in indexes
            columns = [name for name in table.schema.names if name not in INTERNAL_COLUMNS]
            view = self._view = CatalogView(
                columns=columns, dataset=dataset, exact=None if indexed else ExactIndex(dataset, columns=columns),
                checked=time.monotonic(), vectors=load_vectors(dataset, columns) if indexed else None)
            if self.settings.catalog_is_remote and ("text",) in indexes:
                read_ahead_full_text(dataset, indexes[("text",)].name)
        return view

    def attribute_columns(self) -> list[str]:
        """The extra columns kept from ingested CSVs, usable in ``where`` filters."""
        if self._table is None:
            return []
        return [n for n in self._table.schema.names if n not in CORE_COLUMNS and n not in INTERNAL_COLUMNS]

    def categories(self) -> list[str]:
        """Distinct non-empty categories, sorted."""
        if self._table is None:
            return []
        values = self._table.search().select(["category"]).limit(None).to_arrow().column("category").unique()
        return sorted(v for v in values.to_pylist() if v)

    def distinct(self, column: str, *, kind: str | None = None) -> list[str]:
        """Distinct non-empty values of ``column`` (in rows of ``kind`` when given), sorted; ``[]`` when the table has
        no such column. Read once per table version."""
        if self._table is None:
            return []
        view = self.view()
        key = ("distinct", column, kind)
        if key not in view.cache:
            values = []
            if column in view.columns:
                where = f"kind = {sql_literal(kind)}" if kind else None
                table = view.dataset.to_table(columns=[column], filter=where)
                values = sorted(v for v in table.column(column).unique().to_pylist() if v)
            view.cache[key] = values
        return view.cache[key]

    def family(self, item: Item) -> list[Item]:
        """The products of ``item``'s variant family (``item`` among them), in catalog order."""
        view = self.view()
        if item.kind != "product" or "family" not in view.columns:
            return [item]
        name = item.family or family_name(item.title)
        rows = view.dataset.to_table(columns=view.columns,
                                     filter=f"family = {sql_literal(name)} AND kind = 'product'").to_pylist()
        return [Item.from_row(row) for row in rows] or [item]

    def sentences(self, item_id: str):
        """``(sentences, vectors)`` of one row as embedded at ingest: a list of strings and an ``(n, dim)`` array
        (empty for tables written before sentences were kept)."""
        import numpy as np

        view = self.view()
        key = ("sentences", item_id)
        if key not in view.cache:
            sentences, vectors = [], np.empty((0, 0), dtype=np.float32)
            if "sentence_vectors" in view.dataset.schema.names:
                table = view.dataset.to_table(columns=["sentences", "sentence_vectors"],
                                              filter=f"id = {sql_literal(item_id)}")
                if table.num_rows and table.column("sentences")[0].is_valid:
                    sentences = table.column("sentences")[0].as_py()
                    flat = table.column("sentence_vectors").combine_chunks().flatten().to_numpy()
                    vectors = flat.reshape(len(sentences), -1) if sentences else vectors
            view.cache[key] = (sentences, vectors)
        return view.cache[key]

    # -- writing -----------------------------------------------------------------------------------------------

    def ingest_csv(self, csv_path: str | Path, *, images_dir: str | Path | None = None, id_col: str | None = None,
                   title_col: str | None = None, text_cols: list[str] | None = None, image_col: str | None = None,
                   progress: bool = True) -> IngestReport:
        """Upsert the rows of a CSV by id and return what happened.

        Column flags default to the usual names (``id``; ``title``/``name``; ``description``/``text``; ``image``);
        ``kind``, ``category``, ``colour``/``color`` and ``price`` are recognised by name, and every other column is
        kept as an attribute, text columns too (``--text-cols name,gender,colour``) unless named like a description.
        Images are relative to ``images_dir`` (default: the CSV's folder). Bad rows are rejected one by one with their
        line number; a CSV without an id or text column raises :class:`InvalidInput` before anything is written.
        Unchanged rows are skipped, so ingesting the same file twice writes nothing.
        """
        csv_path = Path(csv_path)
        table = read_csv(csv_path)
        columns = _map_columns(table.header, id_col=id_col, title_col=title_col, text_cols=text_cols,
                               image_col=image_col)
        images_dir = Path(images_dir) if images_dir else csv_path.parent
        records, rejected = [], [RejectedRow(line, reason) for line, reason in table.bad]
        for line, record, reason in _parse_rows(images_dir, columns, table.header, table.rows):
            if record is None:
                rejected.append(RejectedRow(line, reason))
            else:
                records.append(record)
        rejected.sort(key=lambda r: r.row)
        with self._write_lock():
            report = self._upsert(records, rejected, progress=progress)
            if self._table is not None:
                self._index()  # commits nothing when every row is indexed (a killed ingest may have left some)
            if report.added or report.updated:
                self._compact()
            self._cleanup()
        report.version = self.version
        return report

    def _upsert(self, records: list[dict], rejected: list[RejectedRow], *, progress: bool) -> IngestReport:
        import pyarrow as pa

        from mmsupport import vector_models

        report = IngestReport(self.name, self.version, rejected=rejected)
        models = vector_models.recorded(self._table.schema) if self._table is not None else {}
        vector_models.check(self.name, "vector", models, self.embedder)
        pictures = self.image_embedder
        if pictures is not None:
            vector_models.check(self.name, "image_vector", models, pictures)
        old, stale = self._stored_hashes(with_pictures=pictures is not None)
        changed = [r for r in records if old.get(r["id"]) != r["row_hash"] or r["id"] in stale]
        report.updated = sum(r["id"] in old for r in changed)
        report.added = len(changed) - report.updated
        report.unchanged = len(records) - len(changed)
        if not changed:
            return report
        vectors = self.embedder.embed([r["text"] for r in changed], progress=progress)
        if self._table is not None and self._table.schema.field("vector").type.list_size != vectors.shape[1]:
            raise CatalogError(
                f"Table {self.name!r} holds {self._table.schema.field('vector').type.list_size}-d vectors but "
                f"{self.embedder.name!r} makes {vectors.shape[1]}-d ones.",
                hint="Use the embedding model the table was built with, or ingest into a new --table.")
        attribute_names = sorted({k for r in changed for k in r} - set(CORE_COLUMNS) - set(INTERNAL_COLUMNS)
                                 | set(self.attribute_columns()))
        image_vectors = self._image_vectors(changed, pictures, progress=progress)
        schema = _schema(attribute_names, vectors.shape[1], image_vectors.type.list_size if image_vectors else None)
        derived = self._derived(changed, vectors)
        if image_vectors is not None:
            derived["image_vector"] = image_vectors
        data = pa.table({**{name: [r.get(name) for r in changed] for name in schema.names if name not in derived
                            and name != "vector"}, **derived,
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])},
                        schema=schema)
        now = {**models, "vector": vector_models.describe(self.embedder)}
        if pictures is not None:
            now["image_vector"] = vector_models.describe(pictures)
        if self._table is None:
            schema = schema.with_metadata(vector_models.encoded(now))
            self._table = self._db.create_table(self.name, data.replace_schema_metadata(schema.metadata),
                                                schema=schema, on_bad_vectors="null")
            return report
        new = [schema.field(n) for n in [*attribute_names, *DERIVED_COLUMNS, *IMAGE_COLUMNS]
               if n in schema.names and n not in self._table.schema.names]
        if new:
            self._table.add_columns(new)
        # on_bad_vectors="null": a row without a picture has no image vector (LanceDB would call it "bad")
        (self._table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .execute(data, on_bad_vectors="null"))
        if now != models:  # a column built for the first time (or a table older than the record)
            self._table.to_lance().update_schema_metadata(vector_models.encoded(now))
            self._table.checkout_latest()
        return report

    def _image_vectors(self, records: list[dict], pictures, *, progress: bool):
        """The ``image_vector`` column for ``records`` (``None`` when the table has none and ``pictures``, the
        image–text model, is off): a row whose image bytes are unchanged keeps its stored vector, the others are
        embedded by ``pictures`` (left empty without it, or without an image)."""
        import numpy as np
        import pyarrow as pa

        stored_dim = (self._table.schema.field("image_vector").type.list_size
                      if self._table is not None and "image_vector" in self._table.schema.names else None)
        dim = pictures.dim if pictures is not None else stored_dim
        if dim is None:
            return None
        if stored_dim not in (None, dim):
            raise CatalogError(f"Table {self.name!r} holds {stored_dim}-d image vectors but {pictures.name!r} makes "
                               f"{dim}-d ones.", hint="Use the image model the table was built with, or a new --table.")
        kept = self._stored_image_vectors() if stored_dim else {}
        rows: list = [kept.get((r["id"], r.get("image_digest"))) if r.get("image") else None for r in records]
        todo = [i for i, r in enumerate(records) if r.get("image") and rows[i] is None]
        if todo and pictures is not None:
            for i, vector in zip(todo, pictures.embed_images([records[i]["image"] for i in todo], progress=progress)):
                rows[i] = vector
        flat = np.concatenate([np.asarray(v, np.float32) for v in rows if v is not None] or [np.empty(0, np.float32)])
        valid = np.array([v is not None for v in rows])
        values = np.zeros((len(rows), dim), np.float32)
        values[valid] = flat.reshape(-1, dim)
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dim, mask=pa.array(~valid))

    def _stored_image_vectors(self) -> dict:
        """``(id, image digest) -> vector`` of the stored rows that have an image vector."""
        rows = self._table.to_lance().to_table(columns=["id", "image_digest", "image_vector"],
                                               filter="image_vector IS NOT NULL")
        vectors = rows.column("image_vector").combine_chunks()
        matrix = vectors.flatten().to_numpy().reshape(len(rows), vectors.type.list_size)
        return {key: matrix[i] for i, key in enumerate(zip(rows.column("id").to_pylist(),
                                                           rows.column("image_digest").to_pylist()))}

    def _stored_hashes(self, *, with_pictures: bool = False) -> tuple[dict[str, str], set[str]]:
        """The row hash of every stored id, and the ids whose derived columns are missing (a table written before
        they existed, or, ``with_pictures``, a row with an image but no image vector), which are rebuilt however
        unchanged their data."""
        if self._table is None:
            return {}, set()
        self._table.checkout_latest()
        existing = self._table.search().select(["id", "row_hash"]).limit(None).to_arrow()
        old = dict(zip(existing.column("id").to_pylist(), existing.column("row_hash").to_pylist()))
        names = set(self._table.schema.names)
        if not set(DERIVED_COLUMNS) <= names or (with_pictures and not set(IMAGE_COLUMNS) <= names):
            return old, set(old)
        missing = "sentences IS NULL" + (" OR (image IS NOT NULL AND image_vector IS NULL)" if with_pictures else "")
        rows = self._table.search().where(missing).select(["id"]).limit(None).to_arrow()
        return old, set(rows.column("id").to_pylist())

    def _derived(self, records: list[dict], text_vectors) -> dict:
        """The ingest-time columns of ``records`` (whose texts have ``text_vectors``): ``family`` and the embedded
        ``sentences``, as arrow arrays. Each distinct sentence is embedded once, and one that is a whole text (a
        single-sentence description) reuses that text's vector."""
        import numpy as np
        import pyarrow as pa

        families = [family_name(r["title"], r.get(GROUP_COLUMN)) if r["kind"] == "product" else None
                    for r in records]
        sentences = [split_sentences(r["text"], skip=r["title"]) for r in records]
        flat = [sentence for row in sentences for sentence in row]
        known = dict(zip((r["text"] for r in records), text_vectors))
        new = list(dict.fromkeys(sentence for sentence in flat if sentence not in known))
        if new:
            known.update(zip(new, self.embedder.embed(new)))
        dim = text_vectors.shape[1]
        vectors = np.array([known[sentence] for sentence in flat], dtype=np.float32).reshape(-1, dim)
        offsets = (np.cumsum([0, *map(len, sentences)]) * dim).astype(np.int32)
        return {"family": pa.array(families, pa.string()), "sentences": pa.array(sentences, pa.list_(pa.string())),
                "sentence_vectors": pa.ListArray.from_arrays(pa.array(offsets), pa.array(vectors.reshape(-1)))}

    def _index(self) -> None:
        """Bring the full-text and (on large tables) ANN and attribute indexes up to date with the data: one version
        when rows were unindexed, none otherwise."""
        from lancedb.index import FTS

        indexes = _indexes(self._table)
        text_index = indexes.get(("text",))
        if text_index is None or not text_index.index_details.get("with_position"):
            self._table.create_index("text", config=FTS(**FTS_OPTIONS), replace=True)
        elif self._table.index_stats(text_index.name).num_unindexed_rows:
            self._table.to_lance().optimize.optimize_indices()
            self._table.checkout_latest()
        if self._table.count_rows() >= ANN_MIN_ROWS:
            from mmsupport.retrieval import create_ann_index

            if ("vector",) not in indexes:
                create_ann_index(self._table)
            self._index_attributes(indexes)

    def _index_attributes(self, indexes: dict) -> None:
        """Give each attribute column (:mod:`mmsupport.attributes`) without one a bitmap index, which the
        prefiltered nearest-neighbour query of a search naming attributes reads instead of scanning the column (on
        1M rows that halved such a query)."""
        import pyarrow as pa

        from mmsupport.attributes import AttributeIndex

        schema = self._table.schema
        text = [name for name in schema.names if name not in INTERNAL_COLUMNS and (name,) not in indexes
                and pa.types.is_string(schema.field(name).type)]
        for name in AttributeIndex(self._table.to_lance(), text).values:
            self._table.create_scalar_index(name, index_type="BITMAP")

    def _compact(self) -> None:
        """Merge the table's fragments (each writing ingest adds one) once there are :data:`COMPACT_FRAGMENTS`: two
        versions, the rewrite and the index remap."""
        if len(self._table.to_lance().get_fragments()) >= COMPACT_FRAGMENTS:
            self._table.optimize(cleanup_older_than=KEEP_VERSIONS, delete_unverified=self._sole_writer)

    def cleanup(self) -> None:
        """Maintenance: fold unindexed rows into the indexes, remove what interrupted writes left on disk and drop
        versions older than :data:`KEEP_VERSIONS`. Every ingest does this too."""
        with self._write_lock():
            if self._table is not None:
                self._index()
            self._cleanup()

    def _cleanup(self) -> None:
        """Remove leftovers and old versions; this commits no version."""
        if self._table is None:
            return
        if self._sole_writer:
            for leftover in (Path(self.settings.db_dir) / f"{self.name}.lance").rglob(".tmp*"):
                leftover.unlink(missing_ok=True)
        self._table.to_lance().cleanup_old_versions(older_than=KEEP_VERSIONS, delete_unverified=self._sole_writer)

    @property
    def _sole_writer(self) -> bool:
        """True when the write lock excludes every other writer (a local table), so files no version references
        are leftovers of dead writes and can go at once."""
        return not self.settings.catalog_is_remote

    @contextmanager
    def _write_lock(self):
        """One writer per local table across processes; also what makes deleting unreferenced files safe. On object
        storage only this process's writers are held apart (one writing process per table, see the module notes)."""
        if not self._sole_writer:
            with _REMOTE_WRITERS:
                try:
                    yield
                finally:
                    self._view = None
            return
        lock_path = Path(self.settings.db_dir) / f".{self.name}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                self._view = None
                fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class CatalogView:
    """One version of the table as searches read it, and when it was last found to be the latest."""

    #: What makes an :class:`Item`: every column but the vector and the row hash.
    columns: list[str]
    #: The table as a ``lance`` dataset. Searches read through it: each call through the ``lancedb`` table adds a
    #: millisecond or more of round trips to its background event loop.
    dataset: lance.LanceDataset
    #: The vectors (and the item columns) in memory for exact search, or ``None`` when the table has an ANN index
    #: (large tables).
    exact: ExactIndex | None
    checked: float
    #: On a table with an ANN index: its vectors as float16, loading in the background (2-3 s at 100k rows),
    #: searched exactly in memory once loaded, or past :data:`~mmsupport.retrieval.SEARCH_IN_MEMORY_MB` an 8-bit
    #: copy that ranks the ANN index's candidates (:func:`mmsupport.retrieval.load_vectors`); ``None`` on other
    #: tables and past :data:`~mmsupport.retrieval.RANK_IN_MEMORY_MB`.
    vectors: Future | None = None
    #: What helpers read once per version (distinct values, sentences of a row).
    cache: dict = field(default_factory=dict)

    def in_memory(self, where: str | None = None) -> ExactIndex | None:
        """The vectors in memory: :attr:`exact`, or :attr:`vectors` once loaded; ``None`` while they load, past the
        memory limit, when loading failed and for a search with a SQL filter ``where``, which only LanceDB
        evaluates (searches then go through LanceDB)."""
        if where:
            return None
        if self.exact is not None:
            return self.exact
        if self.vectors is None or not self.vectors.done() or self.vectors.exception() is not None:
            return None
        return self.vectors.result()


def _indexes(table) -> dict:
    """The table's indexes by the columns they cover, e.g. ``("text",)`` for the full-text index."""
    return {tuple(index.columns): index for index in table.list_indices()}


def _schema(attribute_names: list[str], dim: int, image_dim: int | None = None):
    import pyarrow as pa

    fields = [pa.field(name, pa.float64() if name == "price" else pa.string()) for name in CORE_COLUMNS]
    fields += [pa.field(name, pa.string()) for name in attribute_names]
    # Sentence vectors are kept flat (n * dim floats): LanceDB takes a list of fixed-size lists for a second vector
    # column, and then table.search(vector) would have to be told which one to search.
    fields += [pa.field("vector", pa.list_(pa.float32(), dim)), pa.field("row_hash", pa.string()),
               pa.field("sentences", pa.list_(pa.string())), pa.field("sentence_vectors", pa.list_(pa.float32()))]
    if image_dim:
        fields += [pa.field("image_vector", pa.list_(pa.float32(), image_dim)), pa.field("image_digest", pa.string())]
    return pa.schema(fields)


def check_table_name(name: str) -> None:
    """Raise :class:`InvalidInput` unless ``name`` is a plain table name (letters, digits, ``_``, ``-``, ``.``)."""
    if not TABLE_NAME.fullmatch(name):
        raise InvalidInput(f"The table name {name!r} is not allowed: a table is a folder inside the LanceDB folder.",
                           hint="Use letters, digits, '_', '-' and '.', starting with a letter, digit or '_' "
                           "(no '/' or '..'), e.g. --table shop.")


#: A trailing variant suffix of a title: ``(Black)``, ``[XL]``, `` - Navy / M``.
_VARIANT_SUFFIX = re.compile(r"\s*(?:\([^()]*\)|\[[^\[\]]*\]|\s[-\u2013|/]\s+[^-\u2013|/]{1,30})\s*$")
#: Where sentences end: after ., ! or ? before a capital, digit or quote, and at line breaks.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"\u201c(])|\n+")


def family_name(title: str, group: str | None = None) -> str:
    """The variant family of a product: ``group`` when given, else the title without its variant suffix.

    >>> family_name("Fjellhus Waxed Cotton Field Jacket (Olive)")
    'Fjellhus Waxed Cotton Field Jacket'
    """
    if group and group.strip():
        return group.strip()
    name, shorter = title.strip(), _VARIANT_SUFFIX.sub("", title).strip()
    while shorter and shorter != name:  # "Tee - Blue / M": the size, then the colour
        name, shorter = shorter, _VARIANT_SUFFIX.sub("", shorter).strip()
    return name


def split_sentences(text: str, *, skip: str | None = None) -> list[str]:
    """The sentences of ``text`` (at most :data:`MAX_SENTENCES`), leaving out a line equal to ``skip`` (the title).

    >>> split_sentences("Care\\nWash it cold. Dry it flat!", skip="Care")
    ['Wash it cold.', 'Dry it flat!']
    """
    parts = (part.strip() for part in _SENTENCE_END.split(text or ""))
    return [part for part in parts if part and part != skip][:MAX_SENTENCES]


def sql_literal(value: str | float) -> str:
    """``value`` as an SQL literal for a ``where`` filter: numbers as floats, anything else as a quoted string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    return "'" + str(value).replace("'", "''") + "'"


def category_filter(category: str | None) -> str | None:
    """The ``where`` filter that keeps one category (``None`` or ``""``: no filter)."""
    return f"category = {sql_literal(category)}" if category else None


def ensure_sample_catalog(settings: Settings) -> Catalog:
    """The bundled sample catalog (``data/products.csv`` + ``data/articles.csv``) in ``settings``' table, built on
    first use. Idempotent: later calls only write rows whose data changed."""
    catalog = Catalog.open(settings, create=True)
    for name in ("products.csv", "articles.csv"):
        path = SAMPLE_DATA_DIR / name
        if not path.is_file():
            raise CatalogError(f"The sample catalog file {path} is missing.",
                               hint="Run `python data/generate_sample.py` to create it.")
        catalog.ingest_csv(path, images_dir=SAMPLE_DATA_DIR / "images", progress=False)
    return catalog
