"""Deploy the app to a Hugging Face Space (create it, set secrets and variables, upload the app files).

Secrets (admin and desk passwords, the model server's API key, the database URL) are read from this shell's
MMSUPPORT_* environment and sent as Space secrets, never printed. --dry-run prints what would be sent; --to DIR
writes the Space's files into a folder instead of uploading (run `python app.py` there to try it).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser) -> None:
    from mmsupport.deploy import HARDWARE

    parser.add_argument("--space", required=True, metavar="USER/NAME", help="the Space to create or update")
    parser.add_argument("--private", action="store_true", help="make a new Space private")
    parser.add_argument("--hardware", default="cpu-basic", choices=HARDWARE, metavar="HARDWARE",
                        help=f"Space hardware (default cpu-basic; one of {', '.join(HARDWARE)})")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                        help="a setting for the Space, e.g. --set top_k=3 (repeatable; secrets come from the env)")
    parser.add_argument("--llamacpp", action=argparse.BooleanOptionalAction, default=None,
                        help="build the llama.cpp runtime in the Space and run MMSUPPORT_RUNTIME=auto (default: on "
                             "CPU hardware; about 7 more minutes of Space build)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be sent, send nothing")
    parser.add_argument("--to", metavar="DIR", help="write the Space's files into DIR instead of uploading")
    parser.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or `hf auth login`)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args) -> int:
    from mmsupport.deploy import plan, push, write_folder

    deploy = plan(args.space, hardware=args.hardware, private=args.private, settings=args.set, llamacpp=args.llamacpp)
    summary = deploy.summary()
    if args.to:
        summary["written_to"] = str(write_folder(deploy, args.to).resolve())
    elif not args.dry_run:
        summary["deployed"] = push(deploy, token=args.token)
    if args.json:
        print(json.dumps(summary))
        return 0
    action = ("would deploy" if args.dry_run else "wrote") if args.dry_run or args.to else "deployed"
    print(f"{action} {len(summary['files'])} files to {summary.get('written_to') or summary['url']} "
          f"({summary['hardware']}{', private' if summary['private'] else ''})")
    print(f"  secrets: {', '.join(summary['secrets']) or 'none'} (values not shown)")
    print(f"  variables: {', '.join(f'{k}={v}' for k, v in summary['variables'].items()) or 'none'}")
    print(f"  added to requirements.txt: {', '.join(summary['extra_requirements']) or 'nothing'}")
    if args.dry_run:
        for name in summary["files"]:
            print(f"  {name}")
    return 0
