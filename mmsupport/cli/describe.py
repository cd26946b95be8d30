"""Describe a product photo with the vision-language model.

Prints the description, or with --json one object: {"text", "model", "adapter", "runtime", "timings": {"load_s",
"generate_s", "ttft_s", "decode_tokens", "decode_tok_s"}} (the last three null where the backend does not measure them,
e.g. a model server). ``runtime`` is what ran the model: transformers, llamacpp or openai.
A file that is not a usable image exits with code 2 and a one-line reason.
"""

from __future__ import annotations

import json
import time


def add_arguments(parser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="image file (JPEG, PNG, WebP or GIF)")
    parser.add_argument("--prompt", help="question or instruction (default: a product description prompt)")
    parser.add_argument("--model", help="model Hub id or local folder (default: settings / MMSUPPORT_MODEL)")
    parser.add_argument("--adapter", help="LoRA adapter folder to attach (default: MMSUPPORT_ADAPTER)")
    parser.add_argument("--max-new-tokens", type=int, help="longest description in tokens (default: settings)")
    parser.add_argument("--json", action="store_true", help="print JSON with text, model and timings")


def run(args) -> int:
    from mmsupport.config import load_settings
    from mmsupport.images import load_image
    from mmsupport.vlm import load_vlm

    settings = load_settings(model=args.model, adapter=args.adapter, max_new_tokens=args.max_new_tokens)
    image = load_image(args.image, max_side=settings.image_max_side)  # a bad file fails before the model loads
    started = time.perf_counter()
    vlm = load_vlm(settings)
    loaded = time.perf_counter()
    # the limit goes with the call: a model already loaded in this process keeps the one it was loaded with
    text = vlm.describe(image, args.prompt, max_new_tokens=settings.max_new_tokens)
    done = time.perf_counter()
    if args.json:
        stats = vlm.last_stats or dict.fromkeys(("ttft_s", "decode_tokens", "decode_tok_s"))
        print(json.dumps({"text": text, "model": vlm.name, "adapter": vlm.adapter, "runtime": vlm.runtime,
                          "timings": {"load_s": round(loaded - started, 3), "generate_s": round(done - loaded, 3),
                                      **stats}}))
    else:
        print(text)
    return 0
