"""Labeling: schema validation, repair and retries, refusals, taxonomy, resumability (with a real killed process)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from mmsupport.errors import InvalidInput, ModelUnavailable
from mmsupport.labeling import (LabelError, Taxonomy, find_images, label_accuracy, label_images, parse_label,
                                read_labels, review_labels)
from mmsupport.vlm import VLM

TAXONOMY = Taxonomy({"shoes": ("sneakers", "boots"), "electronics": ("smartwatches", "headphones")})
GOOD = {"title": "Canvas sneaker", "category": "sneakers", "colour": "Red", "attributes": {"material": "canvas"},
        "description": "A red canvas sneaker."}


class ColourScriptedVLM(VLM):
    """Replies by the colour of the image's corner pixel; the n-th attempt gets the n-th scripted reply.

    A reply that is an Exception is raised instead. ``batches`` records the size of each generate_batch call.
    """

    name = "scripted"

    def __init__(self, script: dict[tuple, list], fail_batches: bool = False):
        self.script = script
        self.fail_batches = fail_batches
        self.batches: list[int] = []

    def stream(self, messages, *, max_new_tokens=None, tools=None):
        image = messages[0]["content"][0]["image"]
        attempt = sum(message["role"] == "assistant" for message in messages)
        replies = self.script[image.getpixel((0, 0))]
        reply = replies[min(attempt, len(replies) - 1)]
        if isinstance(reply, Exception):
            raise reply
        yield reply

    def generate_batch(self, conversations, **kwargs):
        self.batches.append(len(conversations))
        if self.fail_batches:
            raise RuntimeError("batched generation is broken")
        return super().generate_batch(conversations, **kwargs)


def make_images(folder: Path, colours: list[tuple]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, colour in enumerate(colours):
        path = folder / f"P{index:03d}.png"
        Image.new("RGB", (48, 40), colour).save(path)
        paths.append(path)
    return paths


def test_taxonomy_file_and_normalisation(tmp_path):
    path = tmp_path / "taxonomy.txt"
    path.write_text("# comment\nshoes: Sneakers, boots\nbags\n")
    taxonomy = Taxonomy.load(path)
    assert taxonomy.categories == ["sneakers", "boots", "bags", "other"]
    assert taxonomy.group("boots") == "shoes"
    assert taxonomy.normalise("Sneaker") == "sneakers"
    assert taxonomy.normalise("high-top sneakers") == "sneakers"
    assert taxonomy.normalise("Bots") == "boots"
    assert taxonomy.normalise("spaceship") == "other"
    assert "sneakers" in Taxonomy.load().categories  # the bundled file
    with pytest.raises(InvalidInput, match="Cannot read the taxonomy"):
        Taxonomy.load(tmp_path / "missing.txt")


@pytest.mark.parametrize("reply", [
    json.dumps(GOOD),
    "Sure! Here it is:\n```json\n" + json.dumps(GOOD, indent=1) + "\n```",
    json.dumps(GOOD)[:-1] + ",}",  # trailing comma
    json.dumps(GOOD).replace('"', "'"),  # single quotes
    json.dumps(GOOD)[:-2],  # cut off mid-object
])
def test_parse_label_repairs_common_slips(reply):
    label = parse_label(reply, TAXONOMY)
    assert label["title"] == "Canvas sneaker"
    assert label["category"] == "sneakers"
    assert label["colour"] == "red"
    assert label["description"] == "A red canvas sneaker."


def test_parse_label_validates_and_normalises():
    label = parse_label(json.dumps({**GOOD, "category": "Trail Boot", "color": "black", "brand": "Stride",
                                    "attributes": {"sizes": ["40", "41"]}}), TAXONOMY)
    assert label["category"] == "boots" and label["raw_category"] == "Trail Boot"
    assert label["colour"] == "red"  # "colour" wins over "color"
    assert label["attributes"] == {"sizes": "40, 41", "brand": "Stride"}
    assert parse_label(json.dumps({**GOOD, "category": "lawn mower"}), TAXONOMY)["category"] == "other"
    with pytest.raises(LabelError, match="missing title"):
        parse_label(json.dumps({**GOOD, "title": ""}), TAXONOMY)
    with pytest.raises(LabelError, match="no JSON object"):
        parse_label("a red shoe", TAXONOMY)
    with pytest.raises(LabelError, match="refused"):
        parse_label("I'm sorry, I can't identify people.", TAXONOMY)
    with pytest.raises(LabelError, match="refused: no product"):
        parse_label('{"error": "no product"}', TAXONOMY)
    with pytest.raises(LabelError, match="attributes is not an object"):
        parse_label(json.dumps({**GOOD, "attributes": "canvas"}), TAXONOMY)


def test_label_images_records_every_outcome(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9), (200, 200, 0), (0, 200, 200)]
    images = make_images(tmp_path / "images", colours)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not an image at all")
    vlm = ColourScriptedVLM({
        (255, 0, 0): [json.dumps(GOOD)],  # good first time
        (0, 255, 0): ["{title: oops", json.dumps({**GOOD, "title": "Fixed"})],  # broken, fixed on retry
        (0, 0, 255): ["no json here"],  # never usable
        (9, 9, 9): ["I cannot help with that request."],  # refusal: not retried
        (200, 200, 0): [json.dumps({**GOOD, "category": "wristwatch computer"})],  # off-taxonomy
        (0, 200, 200): [RuntimeError("CUDA out of memory")],  # the model raises
    })
    out = tmp_path / "labels.jsonl"
    run = label_images(vlm, find_images(tmp_path / "images"), out, taxonomy=TAXONOMY, batch_size=4, max_attempts=3,
                       progress=False)
    assert (run.labelled, run.failed, run.skipped) == (3, 4, 0)
    records = {Path(record["image"]).name: record for record in read_labels(out)}
    assert len(records) == 7
    assert records["P000.png"]["title"] == "Canvas sneaker" and records["P000.png"]["attempts"] == 1
    assert records["P001.png"]["title"] == "Fixed" and records["P001.png"]["attempts"] == 2
    assert records["P002.png"]["error"].startswith("no JSON object") and records["P002.png"]["attempts"] == 3
    assert records["P003.png"]["error"].startswith("refused") and records["P003.png"]["attempts"] == 1
    assert records["P004.png"]["category"] == "other" and records["P004.png"]["raw_category"] == "wristwatch computer"
    assert "CUDA out of memory" in records["P005.png"]["error"]
    assert records["broken.jpg"]["error"].startswith("unreadable image") and records["broken.jpg"]["attempts"] == 0
    assert {record["sha256"] for record in records.values()} == {record["sha256"] for record in read_labels(out)}
    assert vlm.batches[0] == 4 and str(images[0].resolve()) == records["P000.png"]["image"]


def test_failed_batch_falls_back_to_single_images(tmp_path):
    images = make_images(tmp_path / "images", [(1, 1, 1), (2, 2, 2)])
    vlm = ColourScriptedVLM({(1, 1, 1): [json.dumps(GOOD)], (2, 2, 2): [ValueError("bad image tokens")]},
                            fail_batches=True)
    run = label_images(vlm, images, tmp_path / "labels.jsonl", taxonomy=TAXONOMY, progress=False)
    assert (run.labelled, run.failed) == (1, 1)
    assert "bad image tokens" in run.errors[str(images[1].resolve())]


def test_model_outage_stops_the_run_and_keeps_finished_batches(tmp_path):
    images = make_images(tmp_path / "images", [(1, 1, 1), (2, 2, 2), (3, 3, 3)])
    down = ModelUnavailable("The model server is down.", hint="Start it.")
    vlm = ColourScriptedVLM({(1, 1, 1): [json.dumps(GOOD)], (2, 2, 2): [json.dumps(GOOD)], (3, 3, 3): [down]})
    out = tmp_path / "labels.jsonl"
    with pytest.raises(ModelUnavailable):
        label_images(vlm, images, out, taxonomy=TAXONOMY, batch_size=2, progress=False)
    assert [Path(record["image"]).name for record in read_labels(out)] == ["P000.png", "P001.png"]
    with pytest.raises(InvalidInput, match="does not exist"):
        label_images(vlm, [tmp_path / "gone.png"], out, taxonomy=TAXONOMY, progress=False)


def test_rerun_skips_labelled_images_and_can_retry_failures(tmp_path):
    images = make_images(tmp_path / "images", [(1, 1, 1), (2, 2, 2), (3, 3, 3)])
    duplicate = tmp_path / "images" / "copy_of_first.png"
    duplicate.write_bytes(images[0].read_bytes())
    script = {(1, 1, 1): [json.dumps(GOOD)], (2, 2, 2): [json.dumps(GOOD)], (3, 3, 3): ["I'm sorry."]}
    out = tmp_path / "labels.jsonl"
    first = label_images(ColourScriptedVLM(script), [*images, duplicate], out, taxonomy=TAXONOMY, progress=False)
    assert (first.labelled, first.failed, first.skipped) == (2, 1, 1)  # the copy has the same content hash
    again = label_images(ColourScriptedVLM(script), [*images, duplicate], out, taxonomy=TAXONOMY, progress=False)
    assert (again.labelled, again.failed, again.skipped) == (0, 0, 4)
    script[(3, 3, 3)] = [json.dumps(GOOD)]
    retried = label_images(ColourScriptedVLM(script), images, out, taxonomy=TAXONOMY, retry_failed=True,
                           progress=False)
    assert (retried.labelled, retried.skipped) == (1, 2)
    assert len(out.read_text().splitlines()) == 4  # append-only: the old failure stays in the file
    assert [record.get("error") for record in read_labels(out)] == [None, None, None]  # the newest record wins


def test_partial_last_line_is_dropped_before_appending(tmp_path):
    images = make_images(tmp_path / "images", [(1, 1, 1), (2, 2, 2)])
    script = {(1, 1, 1): [json.dumps(GOOD)], (2, 2, 2): [json.dumps(GOOD)]}
    out = tmp_path / "labels.jsonl"
    label_images(ColourScriptedVLM(script), images[:1], out, taxonomy=TAXONOMY, progress=False)
    with open(out, "a") as handle:
        handle.write('{"image": "half a rec')  # what a kill mid-write would leave
    assert len(read_labels(out)) == 1
    label_images(ColourScriptedVLM(script), images, out, taxonomy=TAXONOMY, progress=False)
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["title"] for line in lines)


SLOW_LABELER = textwrap.dedent("""
    import json, sys, time
    from mmsupport.labeling import Taxonomy, find_images, label_images
    from mmsupport.vlm import VLM

    class SlowVLM(VLM):
        name = "slow"
        def stream(self, messages, **kwargs):
            time.sleep(0.05)
            yield json.dumps({"title": "Thing", "category": "boots", "colour": "red", "description": "A thing."})

    label_images(SlowVLM(), find_images(sys.argv[1]), sys.argv[2], batch_size=3, progress=False,
                 taxonomy=Taxonomy({"shoes": ("boots",)}))
""")


@pytest.mark.slow
def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    images = make_images(tmp_path / "images", [(index, 0, 0) for index in range(60)])
    script = tmp_path / "slow_labeler.py"
    script.write_text(SLOW_LABELER)
    out = tmp_path / "labels.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, str(script), str(tmp_path / "images"), str(out)]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 6):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = out.read_bytes()
    assert written.endswith(b"\n") and len(written.splitlines()) % 3 == 0  # whole batches only
    assert 6 <= len(written.splitlines()) < 60, "the process should have been killed mid-run"

    subprocess.run(command, env=env, check=True)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(record["image"]).name for record in records) == sorted(path.name for path in images)


def test_review_labels_drops_overrides_and_rebalances(tmp_path):
    records = [{"image": f"/shop/S{index}.jpg", "sha256": str(index), **GOOD} for index in range(5)]
    records += [{"image": "/shop/W1.jpg", "sha256": "w", **GOOD, "category": "smartwatches"},
                {"image": "/shop/X.jpg", "sha256": "x", "error": "refused: no product"}]
    table = review_labels(records, taxonomy=TAXONOMY, drop=["S0"], overrides={"S1": {"colour": "blue"}})
    assert list(table["id"]) == ["S1", "S2", "S3", "S4", "W1"]
    assert table.set_index("id").loc["S1", "colour"] == "blue"
    assert table.set_index("id").loc["W1", "category"] == "electronics"
    assert json.loads(table.iloc[0]["attributes"]) == {"material": "canvas"}
    balanced = review_labels(records, taxonomy=TAXONOMY, max_per_category=2)
    assert balanced["subcategory"].value_counts().to_dict() == {"sneakers": 2, "smartwatches": 1}
    with pytest.raises(InvalidInput, match="NOPE"):
        review_labels(records, taxonomy=TAXONOMY, overrides={"NOPE": {"colour": "red"}})


def test_label_accuracy_against_human_labels():
    import pandas as pd

    records = [{"image": "/a/1.jpg", "category": "sneakers", "colour": "red"},
               {"image": "/a/2.jpg", "category": "boots", "colour": "black"},
               {"image": "/a/3.jpg", "error": "refused"}]
    truth = pd.DataFrame({"image": ["1.jpg", "2.jpg", "3.jpg", "4.jpg"], "category": ["Sneakers", "sneakers", "boots",
                                                                                      "boots"],
                          "colour": ["red", "black", "white", "grey"]})
    report = label_accuracy(records, truth)
    assert report["n"] == 3
    assert report["accuracy"] == {"category": pytest.approx(1 / 3), "colour": pytest.approx(2 / 3)}
    assert report["confusion"]["category"].loc["sneakers", "boots"] == 1
    with pytest.raises(InvalidInput, match="no column colour"):
        label_accuracy(records, truth.drop(columns="colour"))


@pytest.mark.slow
def test_label_cli_with_a_tiny_real_model(tiny_vlm_dir, tmp_path, capsys):
    from mmsupport.__main__ import main

    make_images(tmp_path / "images", [(255, 0, 0), (0, 0, 255), (0, 128, 0)])
    out = tmp_path / "labels.jsonl"
    argv = ["label", str(tmp_path / "images"), "--out", str(out), "--model", str(tiny_vlm_dir), "--batch-size", "2",
            "--max-new-tokens", "12", "--max-attempts", "2", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labelled"] + summary["failed"] == 3 and summary["skipped"] == 0
    records = read_labels(out)
    assert len(records) == 3 and {record["model"] for record in records} == {str(tiny_vlm_dir)}
    for record in records:  # random weights write noise: a failure with its reason, or a schema-valid label
        assert record["error"] if "error" in record else set(record) >= {"title", "category", "colour"}
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 3


def test_label_cli_reports_a_missing_folder(tmp_path, capsys):
    from mmsupport.__main__ import main

    assert main(["label", str(tmp_path / "nope"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_reviewed_table_ingests_into_the_catalog(tmp_path):
    from mmsupport.catalog import Catalog
    from mmsupport.config import load_settings

    images = make_images(tmp_path / "images", [(200, 0, 0), (0, 0, 0)])
    records = [{"image": str(images[0]), "sha256": "a", **GOOD},
               {"image": str(images[1]), "sha256": "b", **GOOD, "title": "Trail boot", "category": "boots"}]
    reviewed = tmp_path / "reviewed.csv"
    review_labels(records, taxonomy=TAXONOMY, overrides={"P001": {"colour": "black"}}).to_csv(reviewed, index=False)
    catalog = Catalog.open(load_settings(db_dir=str(tmp_path / "db"), table="labelled"), create=True)
    report = catalog.ingest_csv(reviewed, progress=False)
    assert not report.rejected and len(catalog) == 2
    boot = catalog.get("P001")
    assert (boot.title, boot.category, boot.colour, boot.image) == ("Trail boot", "shoes", "black", str(images[1]))
    assert boot.attributes["subcategory"] == "boots"
    assert catalog.search("trail boot", mode="fts", k=1)[0].id == "P001"
