"""The conversation store: sessions, turns, feedback and hand-off tickets on a real database.

Any SQLAlchemy 2 URL works (``settings.database_url``): by default an SQLite file beside the catalog (embedded,
nothing to start); ``postgresql+psycopg://user:pass@host/db`` lets several app replicas share one store.

The schema is versioned: :data:`SCHEMA_VERSION` is written to ``mmsupport_schema`` when the tables are created, and a
database made by another version is refused at start with a message saying what to do.

Logging a turn must never slow down or break the turn, so :meth:`ConversationStore.submit` runs writes on one
background thread, each in its own transaction (a turn is saved whole or not at all); a failed write is logged and
counted in :attr:`ConversationStore.failures`. Tickets are written at once, because the shopper is shown their
reference.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import queue
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from mmsupport.config import Settings
from mmsupport.errors import MMSupportError

log = logging.getLogger(__name__)

#: Version of the tables below; bump it (and say how to move the data) when they change.
SCHEMA_VERSION = 1

metadata = sa.MetaData()

schema_table = sa.Table("mmsupport_schema", metadata, sa.Column("version", sa.Integer, nullable=False))

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("variant", sa.String(64), nullable=False, default="control"),
    sa.Column("channel", sa.String(8), nullable=False, default="web"),  # web or api
    sa.Column("started", sa.DateTime(timezone=True), nullable=False, index=True),
)

turns = sa.Table(
    "turns", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # made by log_turn, so feedback can name it at once
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("image_hashes", sa.JSON, nullable=False, default=list),  # SHA-256 of each photo's bytes
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("citations", sa.JSON, nullable=False, default=list),
    sa.Column("retrieved_ids", sa.JSON, nullable=False, default=list),
    sa.Column("top_score", sa.Float),  # relevance of the best retrieved item, 0-1 (none when nothing was searched)
    sa.Column("no_match", sa.Boolean, nullable=False, default=False),
    sa.Column("intent", sa.String(32)),
    sa.Column("focus_used", sa.Boolean, nullable=False, default=False),
    sa.Column("search", sa.JSON),  # {"mode", "k", "category"}
    sa.Column("model", sa.String(200)),
    sa.Column("first_token_s", sa.Float),
    sa.Column("answer_s", sa.Float),
    sa.Column("error", sa.Text),
)

images = sa.Table(
    "images", metadata,  # only written when settings.store_images is on
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

feedback = sa.Table(
    "feedback", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("turn_id", sa.String(32)),  # none for a rating of the whole chat; may arrive before its turn is saved
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # one of FEEDBACK_KINDS
    sa.Column("value", sa.Integer, nullable=False),
)

#: Feedback kinds and the values each takes: thumbs 1 (up) / 0 (down), resolved 1 (solved) / 0 (still need help),
#: csat 1-5.
FEEDBACK_KINDS = {"thumbs": (0, 1), "resolved": (0, 1), "csat": (1, 2, 3, 4, 5)}

tickets = sa.Table(
    "tickets", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("reference", sa.String(32), nullable=False, unique=True),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("reason", sa.String(32), nullable=False),  # asked, no_match, thumbs_down, repeated
    sa.Column("status", sa.String(16), nullable=False, default="open"),  # open, claimed, closed
    sa.Column("transcript", sa.JSON, nullable=False),  # [{"role", "content"}], photos as {"image": sha256}
    sa.Column("items", sa.JSON, nullable=False, default=list),  # retrieved items: [{"id", "title", ...}]
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.String(32)),
)

ticket_messages = sa.Table(
    "ticket_messages", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("author", sa.String(100), nullable=False),  # "shopper" or the staff member's name
    sa.Column("text", sa.Text, nullable=False),
)


#: Dialects whose INSERT ... ON CONFLICT DO NOTHING creates a session row atomically -> module with their ``insert``.
_UPSERT_INSERTS = {"postgresql": "sqlalchemy.dialects.postgresql", "sqlite": "sqlalchemy.dialects.sqlite"}


def now() -> datetime:
    """The current time in UTC, as every row stores it."""
    return datetime.now(timezone.utc)


def image_hash(data: bytes) -> str:
    """The SHA-256 a turn records for a photo instead of the photo."""
    return hashlib.sha256(data).hexdigest()


def database_url(settings: Settings) -> str:
    """``settings.database_url``, or an SQLite file ``conversations.db`` in ``settings.data_dir``."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{(settings.data_dir / 'conversations.db').resolve()}"


def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        timeout = float(sa.make_url(url).query.get("timeout", 30))  # seconds to wait for another writer's lock
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection, _record):
            connection.isolation_level = None  # SQLAlchemy's begin event below starts the transactions
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers (the desk, the report) do not wait for writers
            # With WAL, a crash of the app (even kill -9) loses nothing committed; only a power cut may lose the last
            # few turns, and the file stays whole. Each write then costs no disk flush.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(connection):
            # Take the write lock up front: a transaction that reads and then writes (ensure the session, then
            # insert) would otherwise fail at once with "database is locked" when another thread or process
            # wrote in between, whatever the timeout.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5}
                            if url.startswith("postgresql") else {})


def _safe_url(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


class _Unreachable(MMSupportError):
    """The database did not answer (as opposed to answering with another schema version)."""


class ConversationStore:
    """The conversation log at ``url`` (any SQLAlchemy URL); creates the tables on first use.

    Raises :class:`MMSupportError` when the database cannot be reached or was made by another schema version.
    """

    def __init__(self, url: str, *, store_images: bool = False, check: bool = True):
        self.url = url
        self.store_images = store_images
        self.failures = 0
        self.engine = _engine(url)
        self._queue: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._checked = False  # with check=False the writer checks the schema before its first write
        if check:
            self._check_schema()

    @classmethod
    def from_settings(cls, settings: Settings, *, check: bool = True) -> ConversationStore:
        """The store named by ``settings.database_url`` (default: SQLite beside the catalog)."""
        url = database_url(settings)
        if url.startswith("sqlite:///"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(url, store_images=settings.store_images, check=check)

    def _check_schema(self) -> None:
        try:
            with self.engine.begin() as connection:
                if not sa.inspect(connection).has_table(schema_table.name):
                    metadata.create_all(connection)
                    connection.execute(schema_table.insert().values(version=SCHEMA_VERSION))
                    self._checked = True
                    return
                version = connection.execute(sa.select(schema_table.c.version)).scalar()
        except SQLAlchemyError as error:
            raise _Unreachable(f"Could not open the conversation store at {_safe_url(self.url)}: "
                                 f"{error.__class__.__name__}.",
                                 hint="Check MMSUPPORT_DATABASE_URL and that the database server is running.") from None
        if version != SCHEMA_VERSION:
            raise MMSupportError(
                f"The conversation store at {_safe_url(self.url)} has schema version {version}, this mmsupport "
                f"uses version {SCHEMA_VERSION}.",
                hint="Point MMSUPPORT_DATABASE_URL at a new database, or install the mmsupport version that made it.")
        self._checked = True

    # -- background writes ----------------------------------------------------------------------------------------

    def submit(self, write: Callable[[sa.Connection], None]) -> None:
        """Run ``write(connection)`` in its own transaction on the writer thread; never raises."""
        with self._writer_lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="conversation-store", daemon=True)
                self._writer.start()
        self._queue.put(write)

    def _write_loop(self) -> None:
        while True:
            write = self._queue.get()
            try:
                if not self._checked:
                    self._check_schema()
                with self.engine.begin() as connection:
                    write(connection)
            except Exception:  # a lost log line must never take the writer thread down with it
                self.failures += 1
                log.exception("could not write to the conversation store at %s", _safe_url(self.url))
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every submitted write has been tried."""
        self._queue.join()

    # -- sessions, turns, feedback --------------------------------------------------------------------------------

    @staticmethod
    def _ensure_session(connection: sa.Connection, session_id: str, variant: str, channel: str) -> None:
        values = {"id": session_id, "variant": variant, "channel": channel, "started": now()}
        dialect = connection.dialect.name
        if dialect in _UPSERT_INSERTS:  # atomic: a ticket opened while the turn's write runs must not collide
            insert = importlib.import_module(_UPSERT_INSERTS[dialect]).insert
            connection.execute(insert(sessions).values(**values).on_conflict_do_nothing(index_elements=["id"]))
        elif connection.execute(sa.select(sessions.c.id).where(sessions.c.id == session_id)).first() is None:
            connection.execute(sessions.insert().values(**values))

    @staticmethod
    def _save_images(connection: sa.Connection, session_id: str, photos) -> None:
        for data in photos:
            digest = image_hash(data)
            if connection.execute(sa.select(images.c.hash).where(images.c.hash == digest)).first() is None:
                connection.execute(images.insert().values(hash=digest, session_id=session_id, data=data))

    def log_turn(self, session_id: str, turn: dict, *, variant: str = "control", channel: str = "web",
                 photos: list[bytes] = ()) -> str:
        """Record one answered turn (in the background) and return its id.

        ``turn`` has the :data:`turns` columns (question, answer, citations, retrieved_ids, top_score, no_match,
        intent, focus_used, search, model, first_token_s, answer_s, error); ``photos`` are the raw bytes of the
        turn's images: their hashes are recorded, the bytes only when ``store_images`` is on.
        """
        turn_id = secrets.token_hex(16)
        hashes = [image_hash(data) for data in photos]
        columns = {c.name for c in turns.columns} - {"id", "session_id", "time", "variant", "image_hashes"}
        row = {key: value for key, value in turn.items() if key in columns}
        keep = list(photos) if self.store_images else []

        def write(connection: sa.Connection) -> None:
            self._ensure_session(connection, session_id, variant, channel)
            self._save_images(connection, session_id, keep)
            connection.execute(turns.insert().values(id=turn_id, session_id=session_id, time=now(), variant=variant,
                                                     image_hashes=hashes, **row))

        self.submit(write)
        return turn_id

    def record_feedback(self, session_id: str, kind: str, value: int, *, turn_id: str | None = None,
                        variant: str = "control", channel: str = "web") -> None:
        """Record a thumbs vote, a solved / still-need-help mark or a 1-5 rating (in the background)."""
        if kind not in FEEDBACK_KINDS or value not in FEEDBACK_KINDS[kind]:
            raise ValueError(f"feedback {kind}={value!r} is not one of {FEEDBACK_KINDS}")

        def write(connection: sa.Connection) -> None:
            self._ensure_session(connection, session_id, variant, channel)
            connection.execute(feedback.insert().values(session_id=session_id, turn_id=turn_id, time=now(),
                                                        kind=kind, value=value))

        self.submit(write)

    # -- hand-off tickets ------------------------------------------------------------------------------------------

    def _now_or_error(self, what: str, work: Callable[[sa.Connection], object]):
        """Run ``work`` in a transaction now; a database failure becomes a fix-it :class:`MMSupportError`."""
        try:
            with self.engine.begin() as connection:
                return work(connection)
        except SQLAlchemyError as error:
            self.failures += 1
            log.warning("conversation store: could not %s: %s", what, error)
            raise MMSupportError(f"Could not {what}: the conversation store is not reachable.",
                                 hint="Check MMSUPPORT_DATABASE_URL and the database server.") from None

    def open_ticket(self, session_id: str, *, reason: str, transcript: list[dict], items: list[dict] = (),
                    variant: str = "control", channel: str = "web", photos: list[bytes] = ()) -> str:
        """Open a hand-off ticket now and return its reference (``H-YYYYMMDD-XXXXXX``); ``photos`` (the bytes the
        transcript's image hashes are of) are kept only when ``store_images`` is on."""
        reference = f"H-{now():%Y%m%d}-{secrets.token_hex(3).upper()}"

        def work(connection: sa.Connection) -> str:
            self._ensure_session(connection, session_id, variant, channel)
            if self.store_images:
                self._save_images(connection, session_id, photos)
            connection.execute(tickets.insert().values(reference=reference, session_id=session_id, created=now(),
                                                       reason=reason, status="open", transcript=transcript,
                                                       items=list(items)))
            return reference

        return self._now_or_error("open a hand-off ticket", work)

    def tickets(self, status: str | tuple[str, ...] | None = None) -> list[dict]:
        """Tickets oldest first, all or those with ``status`` (open, claimed, closed; or a tuple of them)."""
        query = sa.select(tickets).order_by(tickets.c.created, tickets.c.id)
        if status is not None:
            query = query.where(tickets.c.status.in_([status] if isinstance(status, str) else status))
        return self._now_or_error("read the tickets",
                                  lambda c: [dict(row._mapping) for row in c.execute(query)])

    def ticket(self, reference: str) -> dict | None:
        """The ticket with ``reference`` and its messages (``"messages"``, oldest first), or ``None``."""
        def work(connection: sa.Connection):
            row = connection.execute(sa.select(tickets).where(tickets.c.reference == reference)).first()
            if row is None:
                return None
            found = dict(row._mapping)
            found["messages"] = [dict(m._mapping) for m in connection.execute(
                sa.select(ticket_messages).where(ticket_messages.c.ticket_id == found["id"])
                .order_by(ticket_messages.c.id))]
            return found

        return self._now_or_error("read the ticket", work)

    def update_ticket(self, reference: str, **values) -> None:
        """Set columns of a ticket (status, claimed_by, claimed_at, closed_at, outcome)."""
        self._now_or_error("update the ticket", lambda c: c.execute(
            tickets.update().where(tickets.c.reference == reference).values(**values)))

    def add_message(self, reference: str, author: str, text: str) -> None:
        """Add a message from staff (their name) or the shopper (``"shopper"``) to a ticket."""
        def work(connection: sa.Connection) -> None:
            ticket_id = connection.execute(sa.select(tickets.c.id).where(tickets.c.reference == reference)).scalar()
            if ticket_id is None:
                raise MMSupportError(f"There is no ticket {reference}.", hint="Check the reference.")
            connection.execute(ticket_messages.insert().values(ticket_id=ticket_id, time=now(), author=author,
                                                               text=text))

        self._now_or_error("save the message", work)

    def session_turns(self, session_id: str) -> list[dict]:
        """The turns recorded for a session, oldest first (waits for the writes still queued)."""
        self.flush()
        query = sa.select(turns).where(turns.c.session_id == session_id).order_by(turns.c.time)
        return self._now_or_error("read the conversation",
                                  lambda c: [dict(row._mapping) for row in c.execute(query)])

    def image(self, digest: str) -> bytes | None:
        """The stored photo with SHA-256 ``digest`` (only kept when ``store_images`` is on), or ``None``."""
        return self._now_or_error("read a photo", lambda c: c.execute(
            sa.select(images.c.data).where(images.c.hash == digest)).scalar())

    # -- privacy ---------------------------------------------------------------------------------------------------

    def delete_session(self, session_id: str) -> int:
        """Delete a session and everything recorded about it (privacy requests); returns 1 if it existed, else 0."""
        return self._now_or_error("delete the session", lambda c: _delete_sessions(c, sessions.c.id == session_id))

    def purge(self, days: float) -> int:
        """Delete sessions started more than ``days`` ago, with their turns, feedback, photos and tickets; returns
        how many sessions went."""
        cutoff = now() - timedelta(days=days)
        return self._now_or_error("apply the retention period",
                                  lambda c: _delete_sessions(c, sessions.c.started < cutoff))


def _delete_sessions(connection: sa.Connection, condition) -> int:
    """Delete the sessions matching ``condition`` and their rows (explicitly: SQLite may run without cascades)."""
    ids = sa.select(sessions.c.id).where(condition).scalar_subquery()
    ticket_ids = sa.select(tickets.c.id).where(tickets.c.session_id.in_(ids)).scalar_subquery()
    connection.execute(ticket_messages.delete().where(ticket_messages.c.ticket_id.in_(ticket_ids)))
    for table in (tickets, feedback, images, turns):
        connection.execute(table.delete().where(table.c.session_id.in_(ids)))
    return connection.execute(sessions.delete().where(condition)).rowcount


def open_store(settings: Settings) -> ConversationStore:
    """The app's store, opened at start, with the retention period (``settings.retention_days``) applied.

    A database that does not answer does not stop the app: the error is logged, turns are still answered and each
    write that fails is counted in :attr:`ConversationStore.failures` (the schema is checked again before the next
    write). A database made by another schema version is refused (:class:`MMSupportError`).
    """
    store = ConversationStore.from_settings(settings, check=False)
    try:
        store._check_schema()
    except _Unreachable as error:
        log.error("%s Turns are answered but not recorded until it is back.", error)
        return store
    if settings.retention_days is not None:
        try:
            gone = store.purge(settings.retention_days)
            log.info("retention: deleted %d sessions older than %s days", gone, settings.retention_days)
        except MMSupportError as error:
            log.error("%s", error)
    return store
