"""Command line: ``python -m mmsupport COMMAND ...``.

Each command lives in its own module under ``mmsupport.cli`` with ``add_arguments(parser)`` and ``run(args) -> int``;
heavy imports (torch, lancedb) happen inside ``run`` so ``--help`` stays instant. Errors we raise on purpose are
printed as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mmsupport.errors import MMSupportError

#: command name (a space makes a sub-command) -> module in mmsupport.cli
COMMANDS = {
    "describe": "describe",
    "label": "label",
    "finetune": "finetune",
    "ingest": "ingest",
    "search": "search",
    "eval retrieval": "eval_retrieval",
    "chat": "chat",
    "eval agent": "eval_agent",
    "deploy": "deploy",
    "forget": "forget",
    "purge": "purge",
    "transcribe": "transcribe",
    "report": "report",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmsupport", description=__doc__.splitlines()[0])
    groups = {None: parser.add_subparsers(dest="command", required=True, metavar="COMMAND")}
    for name, module_name in COMMANDS.items():
        *parents, leaf = name.split()
        parent = " ".join(parents) or None
        if parent not in groups:
            group_parser = groups[None].add_parser(parent, help=f"{parent} sub-commands")
            groups[parent] = group_parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        module = importlib.import_module(f"mmsupport.cli.{module_name}")
        summary = (module.__doc__ or "").strip().splitlines()[0]
        sub = groups[parent].add_parser(leaf, help=summary, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except MMSupportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
