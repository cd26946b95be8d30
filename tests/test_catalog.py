"""Catalog ingest: upsert by id, versions, attributes, row-level rejections and whole-file errors (LanceDB on disk)."""

import csv
from pathlib import Path

import pytest
from PIL import Image

from mmsupport.catalog import Catalog, Item, ensure_sample_catalog
from mmsupport.config import SAMPLE_DATA_DIR, load_settings
from mmsupport.errors import CatalogError, InvalidInput

HEADER = ["id", "title", "category", "colour", "price", "description", "brand", "image"]
ROWS = [
    ["p1", "Pulse smartwatch", "electronics", "black", "129", "Smartwatch with a side button that flashes red", "Pulse",
     "p1.png"],
    ["p2", "Sonora headset", "electronics", "blue", "59.5", "Wireless headset; blinking blue means pairing mode",
     "Sonora", "p2.png"],
    ["p3", "Trail runner shoe", "shoes", "grey", "89", "Lightweight running shoe with a grippy outsole", "Stride", ""],
]


def write_csv(path: Path, rows, header=HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, colour in [("p1.png", "black"), ("p2.png", "blue")]:
        Image.new("RGB", (32, 32), colour).save(folder / name)
    return folder


@pytest.fixture
def catalog(tmp_path):
    return Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"), create=True)


def test_missing_table_says_how_to_build_it(tmp_path):
    with pytest.raises(CatalogError, match="mmsupport ingest --csv"):
        Catalog.open(load_settings(db_dir=tmp_path / "db", table="nope"))


def test_ingest_then_reopen_and_get(tmp_path, catalog, images):
    report = catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)
    assert (report.added, report.updated, report.unchanged, report.rejected) == (3, 0, 0, [])
    assert report.version == catalog.version > 0
    reopened = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"))
    assert len(reopened) == 3
    item = reopened.get("p1")
    assert isinstance(item, Item)
    assert (item.kind, item.title, item.category, item.colour, item.price) == (
        "product", "Pulse smartwatch", "electronics", "black", 129.0)
    assert item.text.startswith("Pulse smartwatch\n")  # title + description are the searchable text
    assert item.image == str((images / "p1.png").resolve())
    assert item.attributes == {"brand": "Pulse"}
    assert reopened.get("p3").image is None
    assert reopened.get("missing") is None


def test_upsert_same_file_twice_changes_nothing_and_changed_row_is_updated(tmp_path, catalog, images):
    path = write_csv(tmp_path / "a.csv", ROWS)
    first = catalog.ingest_csv(path, images_dir=images, progress=False)
    again = catalog.ingest_csv(path, images_dir=images, progress=False)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    assert again.version == first.version
    changed = [r[:] for r in ROWS] + [["p4", "Canvas tote", "bags", "beige", "25", "Roomy canvas tote bag", "", ""]]
    changed[1][4] = "49"
    report = catalog.ingest_csv(write_csv(tmp_path / "b.csv", changed), images_dir=images, progress=False)
    assert (report.added, report.updated, report.unchanged) == (1, 1, 2)
    assert report.version > first.version
    assert len(catalog) == 4
    assert catalog.get("p2").price == 49.0
    assert [i.id for i in catalog.search("roomy canvas tote", mode="fts", k=1)] == ["p4"]


def test_changed_image_file_counts_as_an_update(tmp_path, catalog, images):
    path = write_csv(tmp_path / "a.csv", ROWS)
    catalog.ingest_csv(path, images_dir=images, progress=False)
    Image.new("RGB", (32, 32), "red").save(images / "p1.png")
    report = catalog.ingest_csv(path, images_dir=images, progress=False)
    assert (report.updated, report.unchanged) == (1, 2)


def test_extra_columns_are_filterable_attributes(tmp_path, catalog, images):
    catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)
    hits = catalog.search("electronics gadget", mode="vector", k=5, where="brand = 'Sonora'")
    assert [i.id for i in hits] == ["p2"]
    assert catalog.attribute_columns() == ["brand"]
    # a later file may bring new columns; old rows get none
    extra = [["p9", "Rain jacket", "apparel", "yellow", "70", "Waterproof rain jacket", "Drizzle", "", "nylon"]]
    catalog.ingest_csv(write_csv(tmp_path / "b.csv", extra, HEADER + ["Fabric Type"]), progress=False)
    assert catalog.get("p9").attributes == {"brand": "Drizzle", "fabric_type": "nylon"}
    assert catalog.get("p1").attributes == {"brand": "Pulse"}
    assert [i.id for i in catalog.search("jacket", mode="fts", where="fabric_type = 'nylon'")] == ["p9"]


def test_bad_rows_are_rejected_with_line_numbers_while_good_rows_land(tmp_path, catalog, images):
    (images / "notes.png").write_text("this is not a picture")
    rows = [
        ROWS[0],
        ["", "No id", "x", "", "", "text", "", ""],
        ["p1", "Duplicate", "x", "", "", "text", "", ""],
        ["p5", "Broken image", "x", "", "", "text", "", "notes.png"],
        ["p6", "Missing image", "x", "", "", "text", "", "gone.png"],
        ["p7", "Bad price", "x", "", "cheap", "text", "", ""],
        ROWS[2],
    ]
    path = write_csv(tmp_path / "bad.csv", rows)
    raw = path.read_bytes() + b"p8,Caf\xe9 mug,kitchen,white,9,Latin-1 bytes in a UTF-8 file,,\n"
    path.write_bytes(raw)
    report = catalog.ingest_csv(path, images_dir=images, progress=False)
    assert report.added == 2
    assert {r.row: r.reason.split(" (")[0] for r in report.rejected} == {
        3: "empty id",
        4: "duplicate id 'p1'",
        5: "image 'notes.png' is not a readable image",
        6: "image 'gone.png' does not exist in the images folder",
        7: "price 'cheap' is not a number",
        9: "non-UTF-8 bytes in column 'title'",
    }
    assert sorted(i.id for i in catalog.search("running shoe watch", mode="vector", k=10)) == ["p1", "p3"]


@pytest.mark.parametrize("header, flags, message", [
    (["sku", "title", "description"], {}, r"no id column; columns found: sku, title, description\. .*--id-col"),
    (["id", "price", "brand"], {}, r"no text columns to search; columns found: id, price, brand\. .*--text-cols"),
    (["id", "title"], {"text_cols": ["body"]}, r"--text-cols 'body' is not a column of the CSV; columns found: id"),
])
def test_whole_file_errors_name_the_columns_and_the_flag_and_write_nothing(tmp_path, catalog, header, flags, message):
    path = write_csv(tmp_path / "x.csv", [["1", "2", "3"][:len(header)]], header)
    with pytest.raises(InvalidInput, match=message):
        catalog.ingest_csv(path, progress=False, **flags)
    assert catalog.version == 0
    assert not (tmp_path / "db" / "shop.lance").exists()


def test_flags_pick_columns(tmp_path, catalog):
    path = write_csv(tmp_path / "m.csv", [["10017413", "DKNY bag", "Black trolley bag with TSA lock", "Unisex"]],
                     ["Product_ID", "Product_Name", "Description", "Gender"])
    catalog.ingest_csv(path, id_col="Product_ID", title_col="Product_Name", text_cols=["Description"], progress=False)
    item = catalog.get("10017413")
    assert (item.title, item.text, item.attributes) == ("DKNY bag", "Black trolley bag with TSA lock",
                                                         {"gender": "Unisex"})


def test_ensure_sample_catalog_is_idempotent(sample_catalog_settings):
    if not (SAMPLE_DATA_DIR / "products.csv").is_file():
        pytest.skip("sample data not generated")
    catalog = ensure_sample_catalog(sample_catalog_settings)
    version = catalog.version
    assert {"product", "article"} <= {i.kind for i in catalog.search("smartwatch flashing red", k=10)}
    assert ensure_sample_catalog(sample_catalog_settings).version == version
    assert len(catalog) >= 190
