"""Fine-tune the VLM with LoRA (or QLoRA: a 4-bit base via bitsandbytes) on support Q&A, with or without images.

Training data is a CSV or JSONL file of ``question`` + ``answer`` rows (``instruction`` / ``response`` as in the Bitext
support set work too) with an optional ``image`` column (a path, relative to ``images_dir`` or absolute). Each row
becomes a one-turn chat in the model's own chat template; the loss covers the answer tokens only. The result is a peft
adapter folder that the app loads with ``MMSUPPORT_ADAPTER=DIR`` (see :class:`mmsupport.vlm.TransformersVLM`).

>>> examples = [Example("Do you ship to Norway?", "Yes, in 3-5 days.")]
>>> result = finetune("HuggingFaceTB/SmolVLM-256M-Instruct", examples, "adapter/")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmsupport.errors import InvalidInput

#: Linear layers of the language model that get LoRA adapters (the vision tower stays frozen and unadapted).
TARGET_MODULES = r".*(text_model|language_model)\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
#: Column names accepted for each field, first match wins.
COLUMNS = {"question": ("question", "instruction", "prompt"), "answer": ("answer", "response"), "image": ("image",)}
#: Written next to the adapter: the base model, settings and metrics of the run.
REPORT_FILE = "finetune.json"


@dataclass(frozen=True)
class Example:
    """One training pair: a customer question (with an optional product photo) and the answer to learn."""

    question: str
    answer: str
    image: str | None = None


@dataclass(frozen=True)
class FinetuneConfig:
    """Training settings. ``eval_fraction`` of the examples are held out for the before/after loss and answers."""

    epochs: float = 1.0
    lr: float = 2e-4
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    grad_accum: int = 4
    max_steps: int | None = None
    max_length: int = 1024
    eval_fraction: float = 0.1
    compare: int = 3
    max_new_tokens: int = 64
    qlora: bool = False
    gradient_checkpointing: bool = True
    image_max_side: int = 512
    seed: int = 0


@dataclass
class FinetuneResult:
    """What a run did: losses per optimizer step, held-out loss before/after, and sample answers before/after."""

    out: str
    base_model: str
    train_examples: int
    eval_examples: int
    trainable_parameters: int
    steps: list[dict] = field(default_factory=list)
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    comparisons: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _read_rows(path: Path) -> list[dict]:
    """Rows of a CSV (header row) or JSONL file as dicts."""
    import csv

    try:
        with open(path, encoding="utf-8", newline="") as handle:
            if path.suffix.lower() != ".jsonl":
                return list(csv.DictReader(handle))
            rows = [json.loads(line) for line in handle if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as error:
        raise InvalidInput(f"Cannot parse {path}: {error}.",
                           hint="Use UTF-8 CSV with a header row, or JSONL with one JSON object per line.") from None
    if not all(isinstance(row, dict) for row in rows):
        raise InvalidInput(f"{path} has lines that are not JSON objects.",
                           hint='Write one {"question": ..., "answer": ...} object per line.')
    return rows


def load_examples(path: str | Path, images_dir: str | Path | None = None, limit: int | None = None) -> list[Example]:
    """Read training pairs from a CSV or JSONL file; image paths are resolved against ``images_dir``
    (default: the data file's folder). Rows without a question or an answer are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"Training data file {path} does not exist.", hint="Pass a CSV or JSONL file.")
    rows = _read_rows(path)
    found = {key for row in rows[:1] for key in row}
    names = {name: next((alias for alias in aliases if alias in found), None) for name, aliases in COLUMNS.items()}
    if not names["question"] or not names["answer"]:
        raise InvalidInput(f"{path} needs a question and an answer column; it has {', '.join(sorted(found))}.",
                           hint="Name them question/answer (or instruction/response); add an image column for photos.")
    images_dir = Path(images_dir) if images_dir else path.parent
    examples = []
    for row in rows[:limit]:
        question, answer = str(row.get(names["question"]) or "").strip(), str(row.get(names["answer"]) or "").strip()
        if not question or not answer:
            continue
        image = str(row.get(names["image"]) or "").strip() if names["image"] else ""
        if image:
            image_path = images_dir / image
            if not image_path.is_file():
                raise InvalidInput(f"Row with question {question[:60]!r} names image {image}, not found in "
                                   f"{images_dir}.", hint="Pass --images with the folder the image paths start from.")
            image = str(image_path.resolve())
        examples.append(Example(question, answer, image or None))
    if not examples:
        raise InvalidInput(f"{path} has no rows with both a question and an answer.", hint="Fill in both columns.")
    return examples


def _messages(example: Example, *, with_answer: bool) -> list[dict]:
    content = ([{"type": "image"}] if example.image else []) + [{"type": "text", "text": example.question}]
    messages = [{"role": "user", "content": content}]
    if with_answer:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": example.answer}]})
    return messages


def encode_example(processor, example: Example, *, image_max_side: int = 512, max_length: int = 1024) -> dict:
    """Model inputs for one pair, with ``labels`` = the token ids of the answer turn and -100 everywhere else."""
    from mmsupport.images import load_image

    prompt = processor.apply_chat_template(_messages(example, with_answer=False), add_generation_prompt=True,
                                           tokenize=False)
    full = processor.apply_chat_template(_messages(example, with_answer=True), tokenize=False)
    if not full.startswith(prompt):
        raise InvalidInput("The model's chat template renders the answer in a way that does not extend the prompt.",
                           hint="Use a model whose chat template has an assistant generation prompt.")
    images = [[load_image(example.image, max_side=image_max_side)]] if example.image else None
    inputs = processor(text=[full], images=images, return_tensors="pt")
    prompt_length = processor(text=[prompt], images=images, return_tensors="pt")["input_ids"].shape[1]
    if inputs["input_ids"].shape[1] > max_length:
        raise InvalidInput(f"An example is {inputs['input_ids'].shape[1]} tokens, over max_length={max_length}: "
                           f"{example.question[:60]!r}.", hint="Shorten it or raise --max-length.")
    labels = inputs["input_ids"].clone()
    labels[:, :prompt_length] = -100
    inputs["labels"] = labels
    return dict(inputs)


def split_examples(examples: list[Example], eval_fraction: float, seed: int = 0) -> tuple[list, list]:
    """Shuffle (seeded) and hold out ``eval_fraction`` (at least one example when there are two or more)."""
    examples = list(examples)
    random.Random(seed).shuffle(examples)
    if len(examples) < 2 or eval_fraction <= 0:
        return examples, []
    held_out = max(1, round(len(examples) * eval_fraction))
    return examples[held_out:], examples[:held_out]


def _load_model(model_id: str, *, qlora: bool, device: str, dtype):
    from transformers import AutoModelForImageTextToText

    kwargs: dict = {"dtype": dtype}
    if qlora:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = device
    model = AutoModelForImageTextToText.from_pretrained(model_id, **kwargs)
    if qlora and device == "cpu":
        from mmsupport.vlm import check_4bit_cpu_layout

        check_4bit_cpu_layout(model)
        _keep_4bit_trainable(model)
    return model if qlora else model.to(device)


def _keep_4bit_trainable(model) -> None:
    """Stop bitsandbytes repacking ``model``'s 4-bit layers for its CPU inference kernel.

    On AVX-512-BF16 hosts the first forward pass in eval mode (the loss before training) repacks each layer, for good,
    into a layout whose product has no backward pass, so training after it fails. Unpacked, the layers dequantize and
    multiply as on every other CPU."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _eval_loss(model, batches: list[dict]) -> float | None:
    import torch

    if not batches:
        return None
    model.eval()
    with torch.no_grad():
        losses = [model(**batch).loss.item() for batch in batches]
    return sum(losses) / len(losses)


def _to(batch, device: str, dtype) -> dict:
    """Tensors of ``batch`` on ``device``; floating-point ones (pixel values) in the model's dtype."""
    return {key: value.to(device, dtype=dtype) if value.is_floating_point() else value.to(device)
            for key, value in batch.items()}


def _answers(model, processor, examples: list[Example], device: str, dtype, image_max_side: int,
             max_new_tokens: int) -> list[str]:
    import torch

    from mmsupport.images import load_image

    model.eval()
    answers = []
    for example in examples:
        prompt = processor.apply_chat_template(_messages(example, with_answer=False), add_generation_prompt=True,
                                               tokenize=False)
        images = [[load_image(example.image, max_side=image_max_side)]] if example.image else None
        inputs = _to(processor(text=[prompt], images=images, return_tensors="pt"), device, dtype)
        tokenizer = processor.tokenizer
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                    else tokenizer.eos_token_id)
        answers.append(processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:],
                                                  skip_special_tokens=True).strip())
    return answers


def finetune(model_id: str, examples: list[Example], out: str | Path, config: FinetuneConfig = FinetuneConfig(), *,
             eval_examples: list[Example] | None = None, device: str = "auto", dtype: str = "auto",
             progress: bool = True) -> FinetuneResult:
    """Train a LoRA adapter for ``model_id`` on ``examples`` and save it to ``out``.

    Held-out loss and greedy answers to up to ``config.compare`` held-out questions are measured before and after
    training. ``out`` receives the adapter (``adapter_config.json`` + weights) and :data:`REPORT_FILE`.
    """
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from tqdm.auto import tqdm
    from transformers import AutoProcessor

    from mmsupport.vlm import resolve_placement

    start = time.perf_counter()
    torch.manual_seed(config.seed)
    device, torch_dtype, _ = resolve_placement(device, dtype, "none")
    if eval_examples is None:
        train, held_out = split_examples(examples, config.eval_fraction, config.seed)
    else:
        train, held_out = list(examples), list(eval_examples)
    if not train:
        raise InvalidInput("There are no training examples left after holding some out.",
                           hint="Add examples or lower --eval-fraction.")
    processor = AutoProcessor.from_pretrained(model_id)
    encode = dict(image_max_side=config.image_max_side, max_length=config.max_length)
    train_batches = [_to(encode_example(processor, example, **encode), device, torch_dtype)
                     for example in tqdm(train, desc="encoding", unit="example", disable=not progress)]
    eval_batches = [_to(encode_example(processor, example, **encode), device, torch_dtype) for example in held_out]
    model = _load_model(model_id, qlora=config.qlora, device=device, dtype=torch_dtype)
    compared = held_out[:config.compare]
    result = FinetuneResult(out=str(out), base_model=str(model_id), train_examples=len(train),
                            eval_examples=len(held_out), trainable_parameters=0)
    result.eval_loss_before = _eval_loss(model, eval_batches)
    before = _answers(model, processor, compared, device, torch_dtype, config.image_max_side, config.max_new_tokens)

    checkpointing = {"use_reentrant": False}
    if config.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=checkpointing)
    elif config.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing)
    model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                             lora_dropout=config.lora_dropout, target_modules=TARGET_MODULES,
                                             task_type="CAUSAL_LM"))
    result.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    steps = config.max_steps or max(1, round(len(train_batches) * config.epochs / config.grad_accum))
    order = random.Random(config.seed)
    queue: list[dict] = []
    model.train()
    with tqdm(total=steps, desc="training", unit="step", disable=not progress) as bar:
        for step in range(1, steps + 1):
            total = 0.0
            for _ in range(config.grad_accum):
                if not queue:
                    queue = order.sample(train_batches, len(train_batches))
                loss = model(**queue.pop()).loss / config.grad_accum
                loss.backward()
                total += loss.item()
            optimizer.step()
            optimizer.zero_grad()
            result.steps.append({"step": step, "loss": total})
            bar.set_postfix(loss=f"{total:.3f}")
            bar.update()

    result.eval_loss_after = _eval_loss(model, eval_batches)
    after = _answers(model, processor, compared, device, torch_dtype, config.image_max_side, config.max_new_tokens)
    result.comparisons = [{"question": example.question, "reference": example.answer, "before": b, "after": a}
                          for example, b, a in zip(compared, before, after)]
    out = Path(out)
    model.save_pretrained(out)
    result.seconds = time.perf_counter() - start
    (out / REPORT_FILE).write_text(json.dumps({**asdict(result), "config": asdict(config)}, indent=1))
    return result
