"""Transcribe voice recordings with the speech model (Whisper tiny.en, bundled, by default).

Prints one line per file, or with --json one object per file: {"file", "text", "language", "duration_s",
"seconds"} or {"file", "error"}. Recordings are WAV, MP3, OGG/Opus, WebM or M4A, at most MMSUPPORT_MAX_AUDIO_SECONDS
long. Decoding listens for the catalog's own words (categories, product types, brands) when the catalog table
exists. Exit code 2 when any file failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    parser.add_argument("--model", help="faster-whisper Hub id or CTranslate2 folder (default: MMSUPPORT_ASR_MODEL)")
    parser.add_argument("--language", help="language code, e.g. en (default: the model's, or detected)")
    parser.add_argument("--db", help="LanceDB folder whose catalog words bias decoding (default: settings)")
    parser.add_argument("--table", help="table name (default: settings / MMSUPPORT_TABLE)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")


def _prompt(settings) -> str | None:
    """The catalog's words to listen for, or None when there is no catalog table."""
    from mmsupport.catalog import Catalog
    from mmsupport.errors import CatalogError
    from mmsupport.speech import catalog_prompt

    if not Path(settings.db_dir).is_dir():  # opening would create the folder
        return None
    try:
        catalog = Catalog.open(settings)
    except CatalogError:
        return None
    return catalog_prompt(catalog) if len(catalog) else None


def run(args) -> int:
    from mmsupport.config import load_settings
    from mmsupport.errors import InvalidInput
    from mmsupport.speech import WhisperASR

    settings = load_settings(asr_model=args.model, db_dir=args.db, table=args.table)
    asr, prompt, failed = WhisperASR(settings.asr_model), _prompt(settings), 0
    for path in args.files:
        try:
            record = asr.transcribe(path, max_seconds=settings.max_audio_seconds, max_mb=settings.max_upload_mb,
                                    language=args.language, prompt=prompt).to_dict()
        except InvalidInput as error:
            failed += 1
            record = {"error": str(error)}
        if args.json:
            print(json.dumps({"file": path, **record}), flush=True)
        elif "error" in record:
            print(f"{path}: error: {record['error']}", file=sys.stderr)
        else:
            print(f"{path}: {record['text']}", flush=True)
    return 2 if failed else 0
