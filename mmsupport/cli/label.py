"""Label product images with the VLM into a resumable JSONL file (one validated record per image).

Rerunning with the same --out skips images already labelled (by content hash). With --truth, also prints per-field
accuracy and confusion tables against human labels (a CSV with an `image` column and `category`/`colour` columns).
"""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("images", metavar="IMAGES_DIR", help="folder of product images (searched recursively)")
    parser.add_argument("--out", required=True, help="JSONL file to append labels to")
    parser.add_argument("--model", help="model Hub id or local folder (default: settings / MMSUPPORT_MODEL)")
    parser.add_argument("--batch-size", type=int,
                        help="images per batch, written together (default 8; with a model server 4 x --concurrency)")
    parser.add_argument("--concurrency", type=int,
                        help="requests in flight to a model server (MMSUPPORT_BACKEND=openai; default "
                             "MMSUPPORT_SERVER_CONCURRENCY, 8)")
    parser.add_argument("--taxonomy", help="taxonomy file, 'group: type, type' per line (default: bundled)")
    parser.add_argument("--max-attempts", type=int, default=3, help="tries per image when the JSON is unusable")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest reply per image")
    parser.add_argument("--limit", type=int, help="label at most this many images")
    parser.add_argument("--retry-failed", action="store_true", help="label again images whose record is an error")
    parser.add_argument("--truth", help="CSV of human labels to score against")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of text")


def run(args) -> int:
    from mmsupport.config import load_settings
    from mmsupport.labeling import Taxonomy, find_images, label_accuracy, label_images, read_labels
    from mmsupport.vlm import load_vlm

    taxonomy = Taxonomy.load(args.taxonomy)
    images = find_images(args.images)[:args.limit]
    settings = load_settings(model=args.model, server_concurrency=args.concurrency)
    vlm = load_vlm(settings)
    batch_size = args.batch_size or (4 * settings.server_concurrency if settings.backend == "openai" else 8)
    result = label_images(vlm, images, args.out, taxonomy=taxonomy, batch_size=batch_size,
                          max_attempts=args.max_attempts, max_new_tokens=args.max_new_tokens,
                          retry_failed=args.retry_failed, image_max_side=settings.image_max_side,
                          progress=not args.json)
    summary = {"out": result.out, "labelled": result.labelled, "failed": result.failed, "skipped": result.skipped,
               "seconds": round(result.seconds, 2), "images_per_second": round(result.images_per_second, 3)}
    report = label_accuracy(read_labels(args.out), args.truth) if args.truth else None
    if args.json:
        if report:
            summary["accuracy"] = report["accuracy"]
            summary["confusion"] = {name: table.to_dict() for name, table in report["confusion"].items()}
        print(json.dumps(summary))
        return 0
    print(f"labelled {result.labelled}, failed {result.failed}, skipped {result.skipped} (already in {result.out}) "
          f"in {result.seconds:.1f}s, {result.images_per_second:.2f} images/s")
    for image, error in list(result.errors.items())[:10]:
        print(f"  failed: {image}: {error}")
    if report:
        print(f"accuracy against {args.truth} over {report['n']} images:")
        for name, value in report["accuracy"].items():
            print(f"  {name}: {value:.1%}")
            print(report["confusion"][name].to_string())
    return 0
