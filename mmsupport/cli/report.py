"""The A/B support report from the conversation store: FRT, resolution, CSAT, hand-off and no-match per variant.

Prints a plain summary with each variant's verdict against the control; --json prints the whole report as one
object ({"variants": {NAME: {...}}, "comparisons": [...], ...}); --html FILE writes a page with plots.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone


def add_arguments(parser) -> None:
    parser.add_argument("--db-url", help="SQLAlchemy URL of the store (default: settings / MMSUPPORT_DATABASE_URL)")
    parser.add_argument("--since", help="only sessions started on or after this date (YYYY-MM-DD, UTC)")
    parser.add_argument("--control", help="the control variant (default: 'control', else the first one seen)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="write the report with plots to this HTML file")


def parse_since(text: str | None) -> datetime | None:
    """``YYYY-MM-DD`` (or an ISO date-time) as an aware UTC datetime."""
    from mmsupport.errors import InvalidInput

    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text) if "T" in text or " " in text else \
            datetime.combine(date.fromisoformat(text), datetime.min.time())
    except ValueError:
        raise InvalidInput(f"--since {text!r} is not a date.", hint="Use YYYY-MM-DD, e.g. --since 2026-11-01.") \
            from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _shown(value, form: str) -> str:
    return "-" if value is None else format(value, form)


def _summary(report: dict) -> str:
    if not report["variants"]:
        return "no sessions in the store" + (f" since {report['since']}" if report["since"] else "")
    lines = [f"control: {report['control']}"]
    for name, f in report["variants"].items():
        lines.append(f"{name}: {f['sessions']} sessions, {f['turns']} turns, "
                     f"FRT p50 {_shown(f['frt_first_token_p50_s'], '.2f')}s / answer "
                     f"{_shown(f['frt_answer_p50_s'], '.2f')}s, resolved {_shown(f['resolution_rate'], '.1%')}, "
                     f"hand-off {_shown(f['handoff_rate'], '.1%')}, no match {_shown(f['no_match_rate'], '.1%')}, "
                     f"thumbs up {_shown(f['thumbs_up_share'], '.1%')}, CSAT {_shown(f['csat_mean'], '.2f')}")
    lines += [f"verdict {name}: {text}" for name, text in report["verdicts"].items()]
    return "\n".join(lines)


def run(args) -> int:
    from pathlib import Path

    from mmsupport.config import load_settings
    from mmsupport.report import build_report
    from mmsupport.report_html import render_html
    from mmsupport.store import ConversationStore

    store = ConversationStore.from_settings(load_settings(database_url=args.db_url))
    report = build_report(store.engine, since=parse_since(args.since), control=args.control)
    if args.html:
        Path(args.html).write_text(render_html(report), encoding="utf-8")
    print(json.dumps(report, indent=1) if args.json else _summary(report))
    return 0
