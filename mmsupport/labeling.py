"""Label catalog images with a vision-language model, then review the labels into a catalog table.

:func:`label_images` asks the VLM for one JSON object per image, validates it against a small schema (title,
category from a :class:`Taxonomy`, colour, attributes, description) and appends one record per image to a JSONL file::

    {"image": "/shop/photos/42.jpg", "sha256": "...", "title": "...", "category": "sneakers", "colour": "red",
     "attributes": {"material": "canvas"}, "description": "...", "model": "...", "attempts": 1}
    {"image": "/shop/photos/43.jpg", "sha256": "...", "error": "refused: I can't help with that", "model": "..."}

Malformed JSON is repaired when it can be, otherwise the model is asked again (``max_attempts`` in all); refusals and
failures are recorded with the reason. The file is append-only and resumable: images whose content hash is already
in it are skipped, and each batch is written in one flushed write, so a kill loses at most the batch in flight.

:func:`review_labels` turns records into the catalog's CSV shape (drop rows, override fields, rebalance categories),
which :func:`write_review` saves for ``Catalog.ingest_csv``; :func:`label_accuracy` compares records with human labels.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mmsupport.errors import InvalidInput, ModelUnavailable
from mmsupport.images import SUFFIXES

#: The bundled taxonomy (mirrors the sample catalog in data/).
DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.txt")
#: Fields every label has; ``attributes`` is a dict of strings, the others are strings.
FIELDS = ("title", "category", "colour", "attributes", "description")
#: The category given when nothing in the taxonomy is close.
OTHER = "other"

PROMPT = """Label this product photo for a shop catalog. Reply with only a JSON object with these keys:
"title": a short product name,
"category": exactly one of: {categories},
"colour": the main colour in one or two words,
"attributes": an object of other visible attributes as strings (material, pattern, style, brand),
"description": one or two sentences a shopper would find useful."""

RETRY_PROMPT = "That reply was not usable ({reason}). Reply again with only the JSON object, nothing else."

_REFUSAL = re.compile(r"^\W*(i'?m sorry|sorry|i can ?not|i can't|i am unable|i'm unable|i won't|as an ai)", re.I)


class LabelError(ValueError):
    """A model reply that is not a usable label; the message is the reason recorded."""


@dataclass(frozen=True)
class Taxonomy:
    """Allowed categories (product types), each in a group (the catalog's top-level category)."""

    groups: dict[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Taxonomy:
        """Read ``group: type, type, ...`` lines (``#`` starts a comment); a line without ``:`` is its own group."""
        path = Path(path) if path else DEFAULT_TAXONOMY
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise InvalidInput(f"Cannot read the taxonomy file {path}: {error.strerror}.",
                               hint="Pass an existing text file with one 'group: type, type' line per group.") from None
        groups: dict[str, tuple[str, ...]] = {}
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            group, _, types = line.partition(":")
            names = [name.strip().lower() for name in (types.split(",") if types else [group])]
            groups[group.strip().lower()] = tuple(name for name in names if name)
        if not groups:
            raise InvalidInput(f"The taxonomy file {path} lists no categories.",
                               hint="Write one 'group: type, type' line per group.")
        return cls(groups)

    @property
    def categories(self) -> list[str]:
        """Every allowed category, in file order, then ``other``."""
        return [name for names in self.groups.values() for name in names] + [OTHER]

    def group(self, category: str) -> str:
        """The group a category belongs to (``other`` for ``other``)."""
        return next((group for group, names in self.groups.items() if category in names), OTHER)

    def normalise(self, value: str) -> str:
        """The allowed category closest to ``value``: exact, singular/plural, contained word, near spelling, else other.

        >>> Taxonomy({"shoes": ("sneakers", "boots")}).normalise("Running Sneaker")
        'sneakers'
        """
        value = " ".join(str(value).lower().replace("_", " ").replace("-", " ").split())
        allowed = self.categories
        plain = {name.replace("-", " "): name for name in allowed}
        for candidate in (value, value + "s", value.removesuffix("s"), value.removesuffix("es")):
            if candidate in plain:
                return plain[candidate]
        words = set(value.split())
        for name in plain:
            if name in value or {name, name.removesuffix("s")} & words:
                return plain[name]
        close = difflib.get_close_matches(value, list(plain), n=1, cutoff=0.75)
        return plain[close[0]] if close else OTHER


# --------------------------------------------------------------------------------------------------------------------
# Parsing model replies


def _json_candidate(text: str) -> str:
    """The JSON object inside a reply: code fences and chatter removed, a truncated tail closed."""
    text = re.sub(r"```(?:json)?", "", text).strip()
    start = text.find("{")
    if start < 0:
        raise LabelError("no JSON object in the reply")
    text = text[start:]
    depth, in_string, escaped, end = 0, False, False, None
    for index, char in enumerate(text):
        if in_string:
            escaped = char == "\\" and not escaped
            if char == '"' and not escaped:
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                end = index + 1
                break
    if end is not None:
        return text[:end]
    return text.rstrip(", \n") + ('"' if in_string else "") + "}" * depth  # the model stopped mid-object


def _loads_repaired(candidate: str) -> object:
    """``json.loads`` with the usual slips fixed: trailing commas, Python literals, single quotes."""
    attempts = [candidate]
    fixed = re.sub(r",\s*([}\]])", r"\1", candidate)
    fixed = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", fixed)))
    attempts.append(fixed)
    if '"' not in fixed:
        attempts.append(fixed.replace("'", '"'))
    for attempt in attempts:
        try:
            return json.loads(attempt)
        except json.JSONDecodeError as error:
            reason = f"invalid JSON: {error.msg} at character {error.pos}"
    raise LabelError(reason)


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(item) for item in value)
    return "" if value is None else " ".join(str(value).split())


def parse_label(reply: str, taxonomy: Taxonomy) -> dict:
    """Validate one model reply into ``{title, category, colour, attributes, description}``.

    Raises :class:`LabelError` with the reason when the reply is a refusal, holds no JSON object or misses fields.
    An off-taxonomy category is normalised (the model's own word is kept as ``raw_category``); unknown scalar keys
    are moved into ``attributes``.
    """
    if _REFUSAL.match(reply or ""):
        raise LabelError(f"refused: {_text(reply)[:200]}")
    data = _loads_repaired(_json_candidate(reply or ""))
    if not isinstance(data, dict):
        raise LabelError("the JSON is not an object")
    if data.get("error") and not data.get("title"):
        raise LabelError(f"refused: {_text(data['error'])[:200]}")
    data = {str(key).lower().strip(): value for key, value in data.items()}
    if "color" in data:
        data.setdefault("colour", data.pop("color"))
    missing = [name for name in FIELDS if name != "attributes" and not _text(data.get(name))]
    if missing:
        raise LabelError(f"missing {', '.join(missing)}")
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise LabelError("attributes is not an object")
    attributes = {str(key): _text(value) for key, value in attributes.items() if _text(value)}
    for key, value in data.items():
        if key not in FIELDS and isinstance(value, (str, int, float)) and _text(value):
            attributes.setdefault(key, _text(value))
    label = {
        "title": _text(data["title"]),
        "category": taxonomy.normalise(_text(data["category"])),
        "colour": _text(data["colour"]).lower(),
        "attributes": attributes,
        "description": _text(data["description"]),
    }
    if label["category"] != _text(data["category"]).lower():
        label["raw_category"] = _text(data["category"])
    return label


# --------------------------------------------------------------------------------------------------------------------
# The append-only label file


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes: the key that makes labeling resumable."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder.", hint="Pass the folder that holds the product images.")
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in SUFFIXES and path.is_file())


def read_labels(path: str | Path) -> list[dict]:
    """Records of a label file, in order; for an image labelled again, the latest record wins.

    A partial last line (the process was killed mid-write) is ignored.
    """
    path = Path(path)
    if not path.exists():
        return []
    records: dict[str, dict] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise InvalidInput(f"Line {number} of {path} is not JSON.",
                                   hint="Fix or delete that line: the file holds one JSON record per line.") from None
            records.pop(record.get("sha256") or record["image"], None)
            records[record.get("sha256") or record["image"]] = record
    return list(records.values())


def _open_for_append(path: Path) -> int:
    """An append-only descriptor on ``path``; a partial last line from a killed run is cut off first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            os.truncate(path, data.rfind(b"\n") + 1)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _write_records(descriptor: int, records: list[dict]) -> None:
    """All of a batch's records in one write, flushed to disk: a kill keeps the batch whole or not at all."""
    os.write(descriptor, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode())
    os.fsync(descriptor)


# --------------------------------------------------------------------------------------------------------------------
# Labeling


@dataclass
class LabelRun:
    """What one :func:`label_images` call did."""

    out: str
    labelled: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        """Images labelled or failed per second of wall time (skipped ones excluded)."""
        done = self.labelled + self.failed
        return done / self.seconds if self.seconds else 0.0


def _generate(vlm, conversations: list[list[dict]], max_new_tokens: int) -> list[str | Exception]:
    """One reply (or the exception it raised) per conversation; one batched call, per-item calls if it fails."""
    try:  # our batch is the model's batch
        return list(vlm.generate_batch(conversations, max_new_tokens=max_new_tokens, batch_size=len(conversations)))
    except ModelUnavailable:
        raise
    except Exception:  # noqa: BLE001 - find out which conversation fails, keep the others
        replies: list[str | Exception] = []
        for conversation in conversations:
            try:
                replies.append(vlm.generate(conversation, max_new_tokens=max_new_tokens))
            except ModelUnavailable:
                raise  # the model is gone for every image: stop, nothing of this batch is written
            except Exception as error:  # noqa: BLE001 - recorded as that image's failure reason
                replies.append(error)
        return replies


def _label_batch(vlm, images: list, taxonomy: Taxonomy, prompt: str, max_attempts: int,
                 max_new_tokens: int) -> list[tuple[dict | None, str | None, int]]:
    """``(label, error, attempts)`` per image: generate, parse, and re-ask the ones that did not parse."""
    conversations = [[{"role": "user", "content": [{"type": "image", "image": image},
                                                   {"type": "text", "text": prompt}]}] for image in images]
    results: list[tuple[dict | None, str | None, int]] = [(None, "not attempted", 0)] * len(images)
    pending = list(range(len(images)))
    for attempt in range(1, max_attempts + 1):
        replies = _generate(vlm, [conversations[index] for index in pending], max_new_tokens)
        still_pending = []
        for index, reply in zip(pending, replies):
            if isinstance(reply, Exception):
                results[index] = (None, f"model failed: {type(reply).__name__}: {reply}", attempt)
                continue
            try:
                results[index] = (parse_label(reply, taxonomy), None, attempt)
            except LabelError as error:
                results[index] = (None, str(error), attempt)
                if not str(error).startswith("refused"):
                    conversations[index] = conversations[index] + [
                        {"role": "assistant", "content": [{"type": "text", "text": reply}]},
                        {"role": "user", "content": [{"type": "text", "text": RETRY_PROMPT.format(reason=error)}]},
                    ]
                    still_pending.append(index)
        pending = still_pending
        if not pending:
            break
    return results


def label_images(vlm, images: Iterable[str | Path], out: str | Path, *, taxonomy: Taxonomy | None = None,
                 batch_size: int = 8, max_attempts: int = 3, max_new_tokens: int = 256, retry_failed: bool = False,
                 image_max_side: int = 512, progress: bool = True) -> LabelRun:
    """Label ``images`` with ``vlm`` and append one record per image to the JSONL file ``out``.

    Images whose content is already recorded in ``out`` are skipped (failed ones too, unless ``retry_failed``).
    Unreadable images are recorded as failures without calling the model. :class:`ModelUnavailable` (server down,
    model gone) stops the run; the batches already written stay, so rerunning continues where it stopped.
    """
    from tqdm.auto import tqdm

    from mmsupport.images import load_image

    if batch_size < 1 or max_attempts < 1:
        raise InvalidInput("batch_size and max_attempts must be at least 1.", hint="Pass positive numbers.")
    taxonomy = taxonomy or Taxonomy.load()
    prompt = PROMPT.format(categories=", ".join(taxonomy.categories))
    out = Path(out)
    done = {record.get("sha256") for record in read_labels(out) if not (retry_failed and "error" in record)}
    run = LabelRun(out=str(out))
    todo: list[tuple[Path, str]] = []
    for path in map(Path, images):
        if not path.is_file():
            raise InvalidInput(f"Image file {path} does not exist.", hint="Check the path; nothing was labelled.")
        digest = file_sha256(path)
        if digest in done:
            run.skipped += 1
        else:
            done.add(digest)  # the same picture twice in one run is labelled once
            todo.append((path, digest))

    start = time.perf_counter()
    descriptor = _open_for_append(out)
    try:
        with tqdm(total=len(todo), desc="labeling", unit="img", disable=not progress) as bar:
            for first in range(0, len(todo), batch_size):
                batch = todo[first:first + batch_size]
                records: list[dict | None] = [None] * len(batch)
                loaded = []
                for index, (path, digest) in enumerate(batch):
                    try:
                        loaded.append((index, load_image(path, max_side=image_max_side)))
                    except InvalidInput as error:
                        records[index] = {"error": f"unreadable image: {error}", "attempts": 0}
                if loaded:
                    results = _label_batch(vlm, [image for _, image in loaded], taxonomy, prompt, max_attempts,
                                           max_new_tokens)
                    for (index, _), (label, error, attempts) in zip(loaded, results):
                        records[index] = {**label, "attempts": attempts} if label else {"error": error,
                                                                                        "attempts": attempts}
                lines = [{"image": str(path.resolve()), "sha256": digest, **record, "model": vlm.name}
                         for (path, digest), record in zip(batch, records)]
                _write_records(descriptor, lines)
                for line in lines:
                    if "error" in line:
                        run.failed += 1
                        run.errors[line["image"]] = line["error"]
                    else:
                        run.labelled += 1
                bar.update(len(batch))
    finally:
        os.close(descriptor)
    run.seconds = time.perf_counter() - start
    return run


# --------------------------------------------------------------------------------------------------------------------
# Review and accuracy

#: Columns of the reviewed table, in the catalog's CSV shape (see data/products.csv).
TABLE_COLUMNS = ["kind", "id", "title", "category", "subcategory", "colour", "price", "description", "image",
                 "attributes"]


def review_labels(records: Iterable[dict], *, taxonomy: Taxonomy | None = None, drop: Iterable[str] = (),
                  overrides: dict[str, dict] | None = None, max_per_category: int | None = None, seed: int = 0):
    """Labelled records → a pandas table in the catalog's CSV shape, for a person to check before ingest.

    Failed records are left out. ``drop`` and the keys of ``overrides`` are ids (the image file name without its
    suffix); ``overrides`` maps an id to fields to replace (e.g. ``{"P7": {"category": "boots"}}``).
    ``max_per_category`` rebalances by sampling at most that many rows per category (seeded).
    ``category`` is the taxonomy group and ``subcategory`` the labelled product type; ``attributes`` is JSON text.
    """
    import pandas as pd

    taxonomy = taxonomy or Taxonomy.load()
    overrides = overrides or {}
    drop = set(drop)
    rows, labelled_ids = [], set()
    for record in records:
        if "error" in record:
            continue
        row_id = Path(record["image"]).stem
        labelled_ids.add(row_id)
        if row_id in drop:
            continue
        label = {**record, **overrides.get(row_id, {})}
        subcategory = taxonomy.normalise(label["category"])
        rows.append({
            "kind": "product", "id": row_id, "title": label["title"], "category": taxonomy.group(subcategory),
            "subcategory": subcategory, "colour": label["colour"], "price": label.get("price"),
            "description": label["description"], "image": label["image"],
            "attributes": json.dumps(label.get("attributes") or {}, ensure_ascii=False, sort_keys=True),
        })
    unknown = sorted((set(overrides) | drop) - labelled_ids)
    if unknown:
        raise InvalidInput(f"Drops or overrides name ids that are not among the labelled rows: {', '.join(unknown)}.",
                           hint="Use the image file name without its suffix as the id.")
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if max_per_category is not None and len(table):
        shuffled = table.sample(frac=1, random_state=seed)
        table = shuffled.groupby("subcategory").head(max_per_category).sort_values("id").reset_index(drop=True)
    return table


def write_review(table, path: str | Path) -> Path:
    """Save a reviewed table (from :func:`review_labels`) as the CSV to ingest, safe to open in a spreadsheet: cells
    a spreadsheet would run as formulas get a leading ``'``, which ingest removes again."""
    from mmsupport.csvfile import write_csv

    return write_csv(path, list(table.columns), table.itertuples(index=False))


def label_accuracy(records: Iterable[dict], truth, fields: Iterable[str] = ("category", "colour")) -> dict:
    """Per-field accuracy of labelled records against human labels, with a confusion table per field.

    ``truth`` is a pandas DataFrame (or CSV path) with an ``image`` column (file name or path) and one column per
    field. Values are compared case-insensitively. Returns ``{"n": matched images, "accuracy": {field: float},
    "confusion": {field: DataFrame of human label (rows) × model label (columns)}}``; failed records count as wrong.
    """
    import pandas as pd

    if not isinstance(truth, pd.DataFrame):
        truth = pd.read_csv(truth, dtype=str)
    fields = list(fields)
    missing = [name for name in ["image", *fields] if name not in truth.columns]
    if missing:
        raise InvalidInput(f"The human labels have no column {', '.join(missing)}.",
                           hint="Give a table with an 'image' column and one column per field to compare.")
    truth = truth.assign(_name=truth["image"].map(lambda value: Path(str(value)).name)).set_index("_name")
    predicted = pd.DataFrame([{"_name": Path(record["image"]).name, **{name: record.get(name, "(failed)")
                                                                        for name in fields}} for record in records])
    if predicted.empty:
        return {"n": 0, "accuracy": {name: 0.0 for name in fields}, "confusion": {}}
    joined = predicted.join(truth[fields].add_suffix("_human"), on="_name", how="inner")
    report = {"n": len(joined), "accuracy": {}, "confusion": {}}
    for name in fields:
        model = joined[name].fillna("").astype(str).str.strip().str.lower()
        human = joined[f"{name}_human"].fillna("").astype(str).str.strip().str.lower()
        report["accuracy"][name] = float((model == human).mean()) if len(joined) else 0.0
        report["confusion"][name] = pd.crosstab(human.rename("human"), model.rename("model"))
    return report
