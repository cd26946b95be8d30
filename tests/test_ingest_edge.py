"""Catalog ingest on hostile or unusual CSV files: broken records, odd prices, image paths leading out, clashing
headers, other encodings and delimiters, bad table names, version counts, NUL bytes and spreadsheet formulas."""

import csv
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from mmsupport.__main__ import main
from mmsupport.catalog import Catalog, Item
from mmsupport.config import load_settings
from mmsupport.csvfile import MAX_FIELD_BYTES, write_csv as write_safe_csv
from mmsupport.errors import InvalidInput
from test_catalog import ROWS, write_csv


@pytest.fixture
def catalog(tmp_path):
    return Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"), create=True)


def ingest_bytes(catalog, path: Path, data: bytes, **kwargs):
    path.write_bytes(data)
    return catalog.ingest_csv(path, progress=False, **kwargs)


def reasons(report) -> dict[int, str]:
    return {r.row: r.reason for r in report.rejected}


# 1. one broken record is one rejected line


def test_a_huge_field_rejects_only_its_line(tmp_path, catalog):
    huge = "x" * 1_000_000
    lines = ["id,title,description", "a1,Red scarf,Soft wool scarf", f'a2,Huge,"{huge}"', f"a3,Blue hat,{huge}",
             "a4,Green mug,Ceramic mug"]
    report = ingest_bytes(catalog, tmp_path / "big.csv", "\n".join(lines).encode())
    assert sorted(i.id for i in catalog.search("scarf hat mug", mode="fts", k=10)) == ["a1", "a4"]
    assert reasons(report) == {3: f"field 3 ('description') is 1000000 bytes, over the limit of {MAX_FIELD_BYTES}",
                               4: f"field 3 ('description') is 1000000 bytes, over the limit of {MAX_FIELD_BYTES}"}


def test_an_unterminated_quote_rejects_its_line_and_the_rest_lands(tmp_path, catalog):
    lines = ["id,title,description", "a1,Red scarf,Soft wool scarf", 'a2,"Broken title,Never closed',
             'a3,"Blue, wide hat",Felt hat', "a4,Green mug,Ceramic mug", 'a5,Tote,"A bag', 'a6,Pen,Blue ink']
    report = ingest_bytes(catalog, tmp_path / "quote.csv", "\n".join(lines).encode())
    assert reasons(report) == {3: "a quote opened on line 3 is never closed",
                               6: "a quote opened on line 6 is never closed"}
    assert sorted(i.id for i in catalog.search("scarf hat mug pen", mode="fts", k=10)) == ["a1", "a3", "a4", "a6"]
    assert catalog.get("a3").title == "Blue, wide hat"


def test_a_wrong_field_count_says_what_to_quote(tmp_path, catalog):
    report = ingest_bytes(catalog, tmp_path / "count.csv", b"id;title;price\np1;Hat;12;99\np2;Mug\np3;Pen;2\n")
    assert reasons(report) == {2: "has 4 fields, the header has 3 (a value that holds ';' must be in double quotes)",
                               3: "has 2 fields, the header has 3"}
    assert catalog.get("p3").price == 2.0


def test_a_quoted_field_may_still_span_lines(tmp_path, catalog):
    data = b'id,title,description\r\na1,Scarf,"Two\r\nlines"\r\na2,Hat,"say ""hi"""\r\n'
    report = ingest_bytes(catalog, tmp_path / "multi.csv", data)
    assert not report.rejected
    assert catalog.get("a1").text == "Scarf\nTwo\r\nlines"
    assert catalog.get("a2").text == 'Hat\nsay "hi"'


# 2. prices


def prices_file(tmp_path, prices) -> Path:
    return write_csv(tmp_path / "prices.csv", [[f"p{n}", f"Item {n}", "", "", price, "A thing", "", ""]
                                               for n, price in enumerate(prices)])


def test_a_decimal_comma_is_read_as_such_when_the_whole_file_uses_it(tmp_path, catalog):
    report = catalog.ingest_csv(prices_file(tmp_path, ["12,99", "5", "1.299,50"]), progress=False)
    assert not report.rejected
    assert [catalog.get(f"p{n}").price for n in range(3)] == [12.99, 5.0, 1299.5]


def test_bad_prices_are_rejected_with_the_reason(tmp_path, catalog):
    report = catalog.ingest_csv(prices_file(tmp_path, ["12.50", "12,99", "nan", "inf", "-5", "1e308", "1,299.00"]),
                                progress=False)
    assert reasons(report) == {
        3: "price '12,99' has a decimal comma but other values in this column have a decimal point (e.g. '12.50'); "
           "write it as 12.99",
        4: "price 'nan' is not a number (write digits with an optional decimal part, e.g. 12.99)",
        5: "price 'inf' is not a number (write digits with an optional decimal part, e.g. 12.99)",
        6: "price '-5' is negative",
        7: "price '1e308' is not a number (write digits with an optional decimal part, e.g. 12.99)",
    }
    assert (catalog.get("p0").price, catalog.get("p6").price) == (12.5, 1299.0)


def test_search_results_are_json_even_when_an_old_table_holds_nan_and_infinity(tmp_path, catalog):
    catalog.ingest_csv(write_csv(tmp_path / "a.csv", [r[:7] + [""] for r in ROWS]), progress=False)
    catalog.table.update(where="id = 'p1'", values={"price": float("nan")})
    catalog.table.update(where="id = 'p2'", values={"price": float("inf")})
    reopened = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"))
    items = reopened.search("smartwatch headset", mode="hybrid", k=3) + [reopened.get("p1"), reopened.get("p2")]
    assert {"p1", "p2"} <= {item.id for item in items}
    json.dumps([item.to_dict() for item in items], allow_nan=False)
    assert reopened.get("p1").price is None and reopened.get("p2").price is None
    made = Item("x", "product", "X", "x", price=float("-inf"), score=float("nan"), similarity=float("nan"))
    assert json.loads(json.dumps(made.to_dict(), allow_nan=False))["score"] == 0.0


# 3. image paths leading out of the images folder


def test_image_paths_outside_the_folder_get_one_message_whether_or_not_they_exist(tmp_path, catalog):
    images = tmp_path / "shop" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (16, 16), "red").save(images / "ok.png")
    Image.new("RGB", (16, 16), "blue").save(tmp_path / "secret.png")
    (images / "link.png").symlink_to(tmp_path / "secret.png")
    (images / "dir-link").symlink_to(tmp_path)
    names = ["../../secret.png", "../../nothing.png", str(tmp_path / "secret.png"), str(tmp_path / "nothing.png"),
             "link.png", "dir-link/secret.png", "dir-link/nothing.png", "ok.png"]
    rows = [[f"p{n}", f"Item {n}", "", "", "", "A thing", "", name] for n, name in enumerate(names)]
    report = catalog.ingest_csv(write_csv(tmp_path / "shop" / "a.csv", rows), images_dir=images, progress=False)
    found = reasons(report)
    assert sorted(found) == list(range(2, 9))
    for line, name in zip(range(2, 9), names):
        assert found[line] == f"image {name!r} is not inside the images folder (give a path relative to it)"
    assert len(catalog) == 1 and catalog.get("p7").image == str((images / "ok.png").resolve())


# 4. clashing headers


@pytest.mark.parametrize("header, named", [
    (["id", "title", "Primary Color", "primary_color", "primary color!"],
     "'Primary Color', 'primary_color', 'primary color!' all become column 'primary_color'"),
    (["id", "title", "brand", "brand"], "'brand', 'brand' all become column 'brand'"),
])
def test_headers_that_become_the_same_column_refuse_the_file(tmp_path, catalog, header, named):
    path = write_csv(tmp_path / "h.csv", [["1", "Scarf"] + ["x"] * (len(header) - 2)], header)
    with pytest.raises(InvalidInput, match="name the same column") as error:
        catalog.ingest_csv(path, progress=False)
    assert named in str(error.value)
    assert catalog.version == 0


# 5. encodings and delimiters


def test_utf16_with_a_bom_and_semicolons_ingest(tmp_path, catalog):
    text = "id;title;price;description\r\np1;Café crème mug;12,50;A mug, for coffee\r\n"
    report = ingest_bytes(catalog, tmp_path / "excel.csv", text.encode("utf-16"))
    assert not report.rejected
    item = catalog.get("p1")
    assert (item.title, item.price, item.text) == ("Café crème mug", 12.5, "Café crème mug\nA mug, for coffee")


def test_tab_delimited_utf8_with_bom_ingests_and_a_latin1_row_is_rejected_alone(tmp_path, catalog):
    data = "id\ttitle\tbrand\np1\tScarf, wool\tKnit\n".encode("utf-8-sig") + "p2\tCafé\tX\n".encode("cp1252")
    report = ingest_bytes(catalog, tmp_path / "t.csv", data)
    assert reasons(report) == {3: "non-UTF-8 bytes in column 'title'"}
    assert catalog.get("p1").attributes == {"brand": "Knit"}


@pytest.mark.parametrize("data, message", [
    ("id,title\np1,Scarf\n".encode("utf-16-le"), "looks like UTF-16 or UTF-32 without a byte-order mark"),
    ("id,títle\np1,Scarf\n".encode("cp1252"), "is not UTF-8 (probably Windows-1252 or Latin-1)"),
    (b"\xff\xfei\x00d\x00\x00\xd8", "starts with a UTF-16 byte-order mark but byte"),
])
def test_unreadable_encodings_are_refused_by_name(tmp_path, catalog, data, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        ingest_bytes(catalog, tmp_path / "enc.csv", data)


# 6. table names


@pytest.mark.parametrize("name", ["../../evil", "/../x", "a/b", "..", ".hidden", "", "shop\x00"])
def test_bad_table_names_are_refused_before_anything_touches_disk(tmp_path, capsys, name):
    csv_path = write_csv(tmp_path / "a.csv", [r[:7] + [""] for r in ROWS])
    before = set(Path(tmp_path).rglob("*"))
    assert main(["ingest", "--csv", str(csv_path), "--db", str(tmp_path / "x" / "db"), "--table", name]) == 2
    assert f"error: The table name {name!r} is not allowed" in capsys.readouterr().err
    assert set(Path(tmp_path).rglob("*")) == before
    with pytest.raises(InvalidInput, match="Use letters, digits"):
        Catalog.open(load_settings(db_dir=tmp_path / "db", table=name), create=True)


def test_dotted_and_dashed_table_names_work(tmp_path):
    catalog = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop-2026.v1"), create=True)
    catalog.ingest_csv(write_csv(tmp_path / "a.csv", [r[:7] + [""] for r in ROWS]), progress=False)
    assert len(Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop-2026.v1"))) == 3


# 7. versions


def test_a_no_op_ingest_adds_no_version_and_a_write_adds_one_data_version_plus_its_index_update(tmp_path, capsys):
    where = ["--db", str(tmp_path / "db"), "--table", "shop"]
    first_rows = [r[:7] + [""] for r in ROWS]
    csv_path = write_csv(tmp_path / "a.csv", first_rows)

    def ingest(path):
        assert main(["ingest", "--csv", str(path), *where, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        reader = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"))
        assert report["version"] == reader.version == max(v["version"] for v in reader.table.list_versions())
        return len(reader.table.list_versions())

    created = ingest(csv_path)
    assert created == 2  # the data, then the full-text index
    assert ingest(csv_path) == created
    changed = [r[:] for r in first_rows]
    changed[0][4] = "99"
    assert ingest(write_csv(tmp_path / "b.csv", changed)) == created + 2
    assert ingest(tmp_path / "b.csv") == created + 2


def test_every_eighth_fragment_compacts_the_table(tmp_path, catalog):
    versions = []
    for n in range(8):
        rows = [[f"p{n}", f"Item {n}", "", "", "", "A thing", "", ""]]
        catalog.ingest_csv(write_csv(tmp_path / f"{n}.csv", rows), progress=False)
        versions.append(len(catalog.table.list_versions()))
    # first ingest: data + index; later: data + index update; at 8 fragments also the rewrite and the index remap
    assert [b - a for a, b in zip(versions, versions[1:])] == [2] * 6 + [4]
    assert len(catalog.table.to_lance().get_fragments()) == 1
    assert sorted(i.id for i in catalog.search("item thing", mode="fts", k=10)) == [f"p{n}" for n in range(8)]


# 8. NUL bytes and spreadsheet formulas


def test_nul_bytes_are_stripped_from_every_field(tmp_path, catalog):
    report = ingest_bytes(catalog, tmp_path / "nul.csv", b"id,title,brand\np\x001,Sca\x00rf,Kn\x00it\n")
    assert not report.rejected
    item = catalog.get("p1")
    assert (item.title, item.attributes) == ("Scarf", {"brand": "Knit"})


FORMULAS = ["=cmd|' /C calc'!A0", "@SUM(A1:A9)", "+1+1", "-2+3", "\tTAB", "\rCR"]


def read_cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def test_the_csv_writer_defuses_formulas_and_ingest_reads_them_back(tmp_path, catalog):
    path = write_safe_csv(tmp_path / "out.csv", ["id", "title", "description"],
                          [[f"p{n}", formula, "plain text"] for n, formula in enumerate(FORMULAS)] + [["q", None, "x"]])
    cells = read_cells(path)
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert [cell for cell in cells if cell.startswith("'")] == ["'" + f for f in FORMULAS]
    catalog.ingest_csv(path, progress=False)
    assert [catalog.get(f"p{n}").title for n in range(len(FORMULAS) - 2)] == FORMULAS[:-2]


def test_the_rejected_rows_can_be_saved_as_csv(tmp_path, capsys):
    rows = [["p1", "Scarf", "", "", "", "Wool scarf", "", ""], ["p2", "Hat", "", "", "=1+1", "Felt hat", "", ""],
            ["", "Mug", "", "", "", "Mug", "", ""]]
    out = tmp_path / "rejected.csv"
    argv = ["ingest", "--csv", str(write_csv(tmp_path / "a.csv", rows)), "--db", str(tmp_path / "db"),
            "--rejected", str(out), "--json"]
    assert main(argv) == 0
    with open(out, newline="", encoding="utf-8") as handle:
        exported = list(csv.reader(handle))
    assert exported == [["line", "reason"], ["3", "price '=1+1' is not a number (write digits with an optional "
                                                  "decimal part, e.g. 12.99)"], ["4", "empty id"]]


def test_a_reviewed_label_table_exports_safely_and_ingests_back(tmp_path, catalog):
    import pandas as pd

    from mmsupport.labeling import TABLE_COLUMNS, write_review

    row = {"kind": "product", "id": "P1", "title": "=HYPERLINK(\"http://x\")", "category": "shoes",
           "subcategory": "boots", "colour": "-black", "price": None, "description": "@boot for trails",
           "image": "", "attributes": "{}"}
    path = write_review(pd.DataFrame([row], columns=TABLE_COLUMNS), tmp_path / "reviewed.csv")
    assert not [cell for cell in read_cells(path) if cell.startswith(("=", "-", "@"))]
    catalog.ingest_csv(path, progress=False)
    item = catalog.get("P1")
    assert (item.title, item.colour, item.price) == (row["title"], "-black", None)
    assert item.text == f"{row['title']}\n@boot for trails"

