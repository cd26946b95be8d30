"""Fine-tune the VLM with LoRA (or QLoRA) on question/answer pairs; writes an adapter for MMSUPPORT_ADAPTER.

The data file is CSV or JSONL with question/answer columns (instruction/response also work) and an optional image
column (paths relative to --images). Prints held-out loss before/after and sample answers before/after.
"""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="training pairs, FILE.csv or FILE.jsonl")
    parser.add_argument("--images", help="folder the image column is relative to (default: the data file's folder)")
    parser.add_argument("--out", required=True, help="folder to write the adapter to")
    parser.add_argument("--model", help="base model Hub id or local folder (default: settings / MMSUPPORT_MODEL)")
    parser.add_argument("--eval-data", help="held-out pairs (default: hold out --eval-fraction of --data)")
    parser.add_argument("--eval-fraction", type=float, default=0.1, help="share of --data held out (default 0.1)")
    parser.add_argument("--qlora", action="store_true", help="load the base in 4-bit (bitsandbytes) and train LoRA")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the training pairs (default 1)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
    parser.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4)")
    parser.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default 8)")
    parser.add_argument("--lora-alpha", type=int, default=16, help="LoRA alpha (default 16)")
    parser.add_argument("--grad-accum", type=int, default=4, help="examples per optimizer step (default 4)")
    parser.add_argument("--max-length", type=int, default=1024, help="longest example in tokens (default 1024)")
    parser.add_argument("--limit", type=int, help="use only the first N rows of --data")
    parser.add_argument("--no-gradient-checkpointing", action="store_true", help="faster, uses more memory")
    parser.add_argument("--compare", type=int, default=3, help="held-out questions answered before/after (default 3)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    from dataclasses import asdict

    from mmsupport.config import load_settings
    from mmsupport.finetune import FinetuneConfig, finetune, load_examples

    settings = load_settings(model=args.model)
    examples = load_examples(args.data, args.images, args.limit)
    eval_examples = load_examples(args.eval_data, args.images) if args.eval_data else None
    config = FinetuneConfig(epochs=args.epochs, lr=args.lr, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                            grad_accum=args.grad_accum, max_steps=args.max_steps, max_length=args.max_length,
                            eval_fraction=args.eval_fraction, compare=args.compare, qlora=args.qlora,
                            gradient_checkpointing=not args.no_gradient_checkpointing,
                            image_max_side=settings.image_max_side)
    result = finetune(settings.model, examples, args.out, config, eval_examples=eval_examples,
                      device=settings.device, dtype=settings.dtype, progress=not args.json)
    if args.json:
        print(json.dumps(asdict(result)))
        return 0
    print(f"trained {len(result.steps)} steps on {result.train_examples} examples in {result.seconds:.0f}s "
          f"({result.trainable_parameters:,} trainable parameters); adapter saved to {result.out}")
    if result.eval_loss_before is not None:
        print(f"held-out loss on {result.eval_examples} examples: {result.eval_loss_before:.3f} -> "
              f"{result.eval_loss_after:.3f}")
    for comparison in result.comparisons:
        print(f"\nQ: {comparison['question']}\n  reference: {comparison['reference']}\n"
              f"  before:    {comparison['before']}\n  after:     {comparison['after']}")
    print(f"\nUse it: MMSUPPORT_MODEL={result.base_model} MMSUPPORT_ADAPTER={result.out} python app.py")
    return 0
