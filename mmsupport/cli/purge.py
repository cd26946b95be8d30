"""Delete the conversations started more than --days days ago, with everything recorded about them.

The app does this at start when MMSUPPORT_RETENTION_DAYS is set; run it from cron for a long-running app.
"""

from __future__ import annotations

import json

from mmsupport.cli.forget import add_store_arguments, open_store


def _days(text: str) -> float:
    import argparse

    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (0 or more)")
    return days


def add_arguments(parser) -> None:
    parser.add_argument("--days", type=_days, required=True, help="keep the conversations of the last N days")
    add_store_arguments(parser)


def run(args) -> int:
    deleted = open_store(args).purge(args.days)
    if args.json:
        print(json.dumps({"days": args.days, "deleted_sessions": deleted}))
    else:
        print(f"deleted {deleted} sessions started more than {args.days:g} days ago")
    return 0
