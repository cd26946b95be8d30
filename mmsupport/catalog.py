"""The catalog of products and support articles: one LanceDB table, ingested from CSV by upsert, searched by
:mod:`mmsupport.retrieval`.

Table layout: the core columns of :class:`Item` (``id, kind, title, text, category, colour, price, image``), one string
column per extra CSV column (the item's ``attributes``, usable in ``where`` filters), ``vector`` (the embedding of
``text``) and ``row_hash`` (what the row was built from, so re-ingesting an unchanged row is a no-op).

Writes are crash safe: each ingest commits its rows in one LanceDB transaction, so a killed ingest leaves the previous
version. LanceDB leaves the files of an interrupted write on disk; the next ingest (or :meth:`Catalog.cleanup`) removes
them while holding the table's write lock.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mmsupport.config import SAMPLE_DATA_DIR, Settings
from mmsupport.errors import CatalogError, InvalidInput

if TYPE_CHECKING:
    import lance

    from mmsupport.retrieval import ExactIndex

CORE_COLUMNS = ("id", "kind", "title", "text", "category", "colour", "price", "image")
INTERNAL_COLUMNS = ("vector", "row_hash")
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
#: Old versions kept for time travel; older ones are removed by :meth:`Catalog.cleanup`.
KEEP_VERSIONS = timedelta(days=7)
#: Seconds between looks for versions written by another process (say, a CLI ingest while the app runs).
REFRESH_SECONDS = 2.0


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
    attributes: dict[str, str] = field(default_factory=dict)
    score: float = 0.0
    similarity: float | None = None

    @classmethod
    def from_row(cls, row: dict, score: float = 0.0, similarity: float | None = None) -> Item:
        core = {name: row.get(name) for name in CORE_COLUMNS}
        attributes = {key: value for key, value in row.items()
                      if key not in CORE_COLUMNS and key not in INTERNAL_COLUMNS and not key.startswith("_")
                      and value is not None}
        return cls(**core, attributes=attributes, score=float(score), similarity=similarity)


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


def _column_name(header: str) -> str:
    """A filter-friendly column name for an extra CSV header: ``" Primary Color"`` -> ``primary_color``."""
    name = re.sub(r"[^0-9a-z_]+", "_", header.strip().lower()).strip("_") or "column"
    if name[0].isdigit() or name in CORE_COLUMNS or name in INTERNAL_COLUMNS:
        name = f"attr_{name}"
    return name


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
    attributes = {h: _column_name(h) for h in headers if h not in named and h not in text}
    return _Columns(id_name, title, text, image, kind, category, colour, price, attributes)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` rows. Bytes that are not UTF-8 survive as surrogates, so the row holding
    them can be rejected alone."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"Cannot read {path}: {error.strerror}.", hint="Check the --csv path.") from None
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput(f"{path} is empty.", hint="Pass a CSV file with a header row.") from None
    except csv.Error as error:
        raise InvalidInput(f"{path} is not a readable CSV: {error}.",
                           hint="Save it as comma-separated UTF-8.") from None
    rows, line = [], reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise InvalidInput(f"{path} line {line} is not valid CSV: {error}.",
                               hint="Fix the quoting on that line.") from None
        if any(f.strip() for f in fields):
            rows.append((line, fields))
        line = reader.line_num + 1
    return [h.strip() for h in header], rows


def _check_image(path: Path) -> str | None:
    """Why the image file is unusable, or ``None`` when it is a readable image."""
    from mmsupport.images import load_image

    if not path.is_file():
        return f"image file {path} does not exist"
    try:
        load_image(path)
    except Exception as error:  # noqa: BLE001 - any decoding failure rejects this row, not the ingest
        return f"image file {path} is not a readable image ({error})"
    return None


def _parse_rows(images_dir: Path, columns: _Columns, headers: list[str], rows):
    """Yield ``(line, record, None)`` for good rows and ``(line, None, reason)`` for bad ones."""
    seen: dict[str, int] = {}
    for line, fields in rows:
        if len(fields) != len(headers):
            yield line, None, f"has {len(fields)} fields, the header has {len(headers)}"
            continue
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
                price = float(price.replace(",", ""))
            except ValueError:
                yield line, None, f"price {price!r} is not a number"
                continue
        image, image_digest = get(columns.image), ""
        if image is not None:
            image_path = (images_dir / image).resolve()
            problem = _check_image(image_path)
            if problem:
                yield line, None, problem
                continue
            image, image_digest = str(image_path), hashlib.sha1(image_path.read_bytes()).hexdigest()
        title = get(columns.title) or text.split("\n")[0][:80]
        record = {"id": item_id, "kind": kind, "title": title, "text": text, "category": get(columns.category),
                  "colour": get(columns.colour), "price": price, "image": image}
        record.update({name: get(header) for header, name in columns.attributes.items()})
        digest = json.dumps(record, sort_keys=True) + image_digest
        record["row_hash"] = hashlib.sha1(digest.encode("utf-8")).hexdigest()
        yield line, record, None


class Catalog:
    """A LanceDB catalog table. Open with :meth:`open`; build or update with :meth:`ingest_csv`."""

    def __init__(self, db, settings: Settings, table=None):
        self._db = db
        self.settings = settings
        self.name = settings.table
        self._table = table
        self._embedder = None
        self._view: CatalogView | None = None

    @classmethod
    def open(cls, settings: Settings, *, create: bool = False) -> Catalog:
        """Open ``settings.table`` in ``settings.db_dir``. A missing table raises :class:`CatalogError` unless
        ``create``, which returns an empty catalog whose first :meth:`ingest_csv` creates the table."""
        import lancedb

        Path(settings.db_dir).mkdir(parents=True, exist_ok=True)
        db = lancedb.connect(str(settings.db_dir))
        try:
            table = db.open_table(settings.table)
        except (FileNotFoundError, ValueError):
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

    def search(self, query: str, *, mode: str = "hybrid", k: int = 5, where: str | None = None) -> list[Item]:
        """The ``k`` best items for ``query``, best first. ``mode`` is ``vector``, ``fts`` (BM25) or ``hybrid``;
        ``where`` is an SQL prefilter over the columns, e.g. ``"kind = 'product' AND price < 50"``."""
        from mmsupport.retrieval import search

        return [Item.from_row(row, score, cosine) for row, score, cosine in search(self, query, mode=mode, k=k,
                                                                                      where=where)]

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
            from mmsupport.retrieval import ExactIndex

            table = self.table
            dataset = table.to_lance()
            view = self._view = CatalogView(
                columns=[name for name in table.schema.names if name not in INTERNAL_COLUMNS], dataset=dataset,
                exact=None if ("vector",) in _indexes(table) else ExactIndex(dataset), checked=time.monotonic())
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

    # -- writing -----------------------------------------------------------------------------------------------

    def ingest_csv(self, csv_path: str | Path, *, images_dir: str | Path | None = None, id_col: str | None = None,
                   title_col: str | None = None, text_cols: list[str] | None = None, image_col: str | None = None,
                   progress: bool = True) -> IngestReport:
        """Upsert the rows of a CSV by id and return what happened.

        Column flags default to the usual names (``id``; ``title``/``name``; ``description``/``text``; ``image``);
        ``kind``, ``category``, ``colour``/``color`` and ``price`` are recognised by name, and every other column is
        kept as an attribute. Images are relative to ``images_dir`` (default: the CSV's folder). Bad rows are rejected
        one by one with their line number; a CSV without an id or text column raises :class:`InvalidInput` before
        anything is written. Unchanged rows are skipped, so ingesting the same file twice writes nothing.
        """
        csv_path = Path(csv_path)
        headers, rows = _read_csv(csv_path)
        columns = _map_columns(headers, id_col=id_col, title_col=title_col, text_cols=text_cols, image_col=image_col)
        images_dir = Path(images_dir) if images_dir else csv_path.parent
        records, rejected = [], []
        for line, record, reason in _parse_rows(images_dir, columns, headers, rows):
            if record is None:
                rejected.append(RejectedRow(line, reason))
            else:
                records.append(record)
        with self._write_lock():
            report = self._upsert(records, rejected, progress=progress)
            if self._table is not None:
                self._index()
            self._cleanup()
        report.version = self.version
        return report

    def _upsert(self, records: list[dict], rejected: list[RejectedRow], *, progress: bool) -> IngestReport:
        import pyarrow as pa

        report = IngestReport(self.name, self.version, rejected=rejected)
        old = {}
        if self._table is not None:
            self._table.checkout_latest()
            existing = self._table.search().select(["id", "row_hash"]).limit(None).to_arrow()
            old = dict(zip(existing.column("id").to_pylist(), existing.column("row_hash").to_pylist()))
        changed = [r for r in records if old.get(r["id"]) != r["row_hash"]]
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
        schema = _schema(attribute_names, vectors.shape[1])
        data = pa.table({**{name: [r.get(name) for r in changed] for name in schema.names if name != "vector"},
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])},
                        schema=schema)
        if self._table is None:
            self._table = self._db.create_table(self.name, data, schema=schema)
        else:
            new = [schema.field(n) for n in attribute_names if n not in self._table.schema.names]
            if new:
                self._table.add_columns(new)
            (self._table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
             .execute(data))
        return report

    def _index(self) -> None:
        """Bring the full-text and (on large tables) ANN indexes up to date with the data."""
        from lancedb.index import FTS

        indexes = _indexes(self._table)
        text_index = indexes.get(("text",))
        if text_index is None or not text_index.index_details.get("with_position"):
            self._table.create_index("text", config=FTS(**FTS_OPTIONS), replace=True)
        if ("vector",) not in indexes and self._table.count_rows() >= ANN_MIN_ROWS:
            from mmsupport.retrieval import create_ann_index

            create_ann_index(self._table)

    def cleanup(self) -> None:
        """Maintenance: fold new rows into the indexes, remove what interrupted writes left on disk and drop versions
        older than :data:`KEEP_VERSIONS`. Every ingest does this too."""
        with self._write_lock():
            self._cleanup()

    def _cleanup(self) -> None:
        if self._table is None:
            return
        root = Path(self.settings.db_dir) / f"{self.name}.lance"
        for leftover in root.rglob(".tmp*"):
            leftover.unlink(missing_ok=True)
        self._table.optimize(cleanup_older_than=KEEP_VERSIONS, delete_unverified=True)

    @contextmanager
    def _write_lock(self):
        """One writer per table across processes; also what makes deleting unreferenced files safe."""
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
    #: The vectors in memory for exact search, or ``None`` when the table has an ANN index (large tables).
    exact: ExactIndex | None
    checked: float


def _indexes(table) -> dict:
    """The table's indexes by the columns they cover, e.g. ``("text",)`` for the full-text index."""
    return {tuple(index.columns): index for index in table.list_indices()}


def _schema(attribute_names: list[str], dim: int):
    import pyarrow as pa

    fields = [pa.field(name, pa.float64() if name == "price" else pa.string()) for name in CORE_COLUMNS]
    fields += [pa.field(name, pa.string()) for name in attribute_names]
    fields += [pa.field("vector", pa.list_(pa.float32(), dim)), pa.field("row_hash", pa.string())]
    return pa.schema(fields)


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
