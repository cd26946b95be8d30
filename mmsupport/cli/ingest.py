"""Ingest a catalog CSV into the LanceDB table (upsert by id; prints added/updated/unchanged/rejected and the version).

Columns not named by a flag are kept as attributes usable in `search --where`. Bad rows are rejected one by one with
their line numbers while good rows land (--rejected FILE.csv saves them); exit code 1 when every row was rejected.
"""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--csv", required=True, help="catalog CSV file (UTF-8, header row)")
    parser.add_argument("--images", help="folder the image column is relative to (default: the CSV's folder)")
    parser.add_argument("--db", help="LanceDB folder (default: settings / MMSUPPORT_DB_DIR)")
    parser.add_argument("--table", help="table name (default: settings / MMSUPPORT_TABLE)")
    parser.add_argument("--id-col", help="column of unique ids (default: id)")
    parser.add_argument("--title-col", help="column of titles (default: title or name)")
    parser.add_argument("--text-cols", help="comma-separated searchable text columns (default: title + description)")
    parser.add_argument("--image-col", help="column of image file names (default: image)")
    parser.add_argument("--embedding-model", help="sentence-transformers id or folder (default: offline MiniLM)")
    parser.add_argument("--image-model", help="CLIP/SigLIP id or folder for image vectors, or off (default: settings / "
                        "MMSUPPORT_IMAGE_EMBEDDING_MODEL)")
    parser.add_argument("--rejected", metavar="FILE", help="also write the rejected rows (line, reason) to this CSV")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    from mmsupport.catalog import Catalog
    from mmsupport.config import load_settings
    from mmsupport.csvfile import write_csv

    settings = load_settings(db_dir=args.db, table=args.table, embedding_model=args.embedding_model,
                             image_embedding_model=args.image_model)
    catalog = Catalog.open(settings, create=True)
    report = catalog.ingest_csv(args.csv, images_dir=args.images, id_col=args.id_col, title_col=args.title_col,
                                text_cols=args.text_cols.split(",") if args.text_cols else None,
                                image_col=args.image_col, progress=not args.json)
    if args.rejected:
        write_csv(args.rejected, ["line", "reason"], [(r.row, r.reason) for r in report.rejected])
    images = catalog.image_status or f"on ({settings.image_embedding_model})"
    if args.json:
        print(json.dumps({**report.to_dict(), "image_vectors": images}))
    else:
        print(f"{report.table} version {report.version}: {report.added} added, {report.updated} updated, "
              f"{report.unchanged} unchanged, {len(report.rejected)} rejected ({len(catalog)} rows in the table)")
        print(f"image vectors: {images}")
        for rejected in report.rejected:
            print(f"  line {rejected.row}: {rejected.reason}")
    landed = report.added + report.updated + report.unchanged
    return 1 if report.rejected and not landed else 0
