"""Delete everything recorded about one conversation (a shopper's privacy request): its turns, photos, feedback
and hand-off tickets.

The session id is the one /chat returned, or the one a hand-off ticket names. --db-url picks the conversation store
(default: settings / MMSUPPORT_DATABASE_URL, else the SQLite file beside the catalog).
"""

from __future__ import annotations

import json


def add_store_arguments(parser) -> None:
    """The options every conversation-store command takes."""
    parser.add_argument("--db-url", help="SQLAlchemy URL of the conversation store (default: settings)")
    parser.add_argument("--db", help="LanceDB folder; the default store is beside it (default: settings)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def open_store(args):
    """The conversation store the options name."""
    from mmsupport.config import load_settings
    from mmsupport.store import ConversationStore

    return ConversationStore.from_settings(load_settings(database_url=args.db_url, db_dir=args.db))


def add_arguments(parser) -> None:
    parser.add_argument("session_id", help="the conversation's session id")
    add_store_arguments(parser)


def run(args) -> int:
    deleted = open_store(args).delete_session(args.session_id)
    if args.json:
        print(json.dumps({"session_id": args.session_id, "deleted": deleted}))
    else:
        print(f"deleted session {args.session_id}" if deleted else f"no session {args.session_id}: nothing to delete")
    return 0
