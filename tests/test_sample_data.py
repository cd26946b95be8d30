"""The bundled sample catalog in data/: reproducible from its generator, complete, and consistent with its
scripted conversations."""

import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
SUBCATEGORIES = {
    "apparel": {"t-shirts", "jackets", "hoodies", "jeans", "dresses"},
    "shoes": {"sneakers", "boots", "sandals"},
    "bags": {"backpacks", "totes"},
    "electronics": {"smartwatches", "fitness bands", "headphones", "earbuds", "speakers", "phone chargers"},
}
ARTICLE_CATEGORIES = {"troubleshooting", "returns", "warranty", "care", "shipping", "sizing"}


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_sample", DATA / "generate_sample.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", text.strip()) if s]


@pytest.fixture(scope="module")
def products():
    return read_rows(DATA / "products.csv")


@pytest.fixture(scope="module")
def articles():
    return read_rows(DATA / "articles.csv")


@pytest.fixture(scope="module")
def conversations():
    with (DATA / "conversations.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def all_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.suffix in {".csv", ".jsonl",
                                                                                            ".png"})


@pytest.mark.slow
def test_generator_is_deterministic_and_matches_committed_files(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    load_generator().generate(first)
    subprocess.run([sys.executable, str(DATA / "generate_sample.py"), "--out", str(second)], check=True,
                   capture_output=True)

    assert all_files(first) == all_files(second) == all_files(DATA)
    for rel in all_files(first):
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
        if rel.suffix == ".png":  # compare pixels: zlib builds may encode identical pixels differently
            with Image.open(first / rel) as fresh, Image.open(DATA / rel) as committed:
                assert fresh.tobytes() == committed.tobytes(), rel
        else:
            assert (first / rel).read_bytes() == (DATA / rel).read_bytes(), rel


def test_both_files_share_the_catalog_columns(products, articles):
    with (DATA / "products.csv").open(encoding="utf-8") as f, (DATA / "articles.csv").open(encoding="utf-8") as g:
        header = f.readline().strip().split(",")
        assert header == g.readline().strip().split(",")
    assert {"kind", "id", "title", "category", "colour", "price", "description", "image"} <= set(header)


def test_ids_are_unique_and_well_formed(products, articles):
    ids = [r["id"] for r in products + articles]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"P\d{4}", r["id"]) and r["kind"] == "product" for r in products)
    assert all(re.fullmatch(r"A\d{3}", r["id"]) and r["kind"] == "article" for r in articles)


def test_products_cover_every_category_with_prices_and_text(products):
    assert len(products) >= 160
    for category, subcategories in SUBCATEGORIES.items():
        found = {r["subcategory"] for r in products if r["category"] == category}
        assert found == subcategories, category
    assert {r["category"] for r in products} == set(SUBCATEGORIES)
    for row in products:
        assert float(row["price"]) > 0, row["id"]
        assert row["colour"] and row["brand"] and row["title"], row["id"]
    ordinary = [r for r in products if "<" not in r["description"] and "Ignore previous" not in r["description"]]
    assert all(2 <= len(sentences(r["description"])) <= 4 for r in ordinary)
    assert len({r["description"] for r in products}) >= 0.9 * len(products)  # not one template repeated


def test_catalog_carries_hostile_rows_for_injection_and_html_tests(products):
    descriptions = [r["description"] for r in products]
    assert sum("Ignore previous instructions" in d and "system prompt" in d for d in descriptions) == 1
    assert sum("<script>alert(1)</script>" in d and "onerror=" in d for d in descriptions) == 1


def test_articles_cover_every_support_topic(articles):
    assert len(articles) >= 45
    assert {r["category"] for r in articles} == ARTICLE_CATEGORIES
    for row in articles:
        assert 3 <= len(sentences(row["description"])) <= 8, row["id"]
        assert row["image"] == "" and row["price"] == "", row["id"]
    titles = {r["title"] for r in articles}
    assert {"Smartwatch button flashing red", "Headset blinking blue means pairing mode",
            "Returns within 30 days", "Washing a down jacket", "Sneaker sizing guide"} <= titles


def test_every_product_has_a_readable_image_and_the_folder_stays_small(products):
    for row in products:
        with Image.open(DATA / "images" / row["image"]) as image:
            image.load()
            assert image.size == (256, 256) and image.mode == "RGB", row["id"]
    customer = sorted((DATA / "images" / "customer").glob("*.png"))
    assert len(customer) >= 5
    for path in customer:
        with Image.open(path) as image:
            image.load()
    assert sum(p.stat().st_size for p in (DATA / "images").rglob("*.png")) < 3 * 1024 * 1024


def test_conversations_refer_to_real_items_and_images(products, articles, conversations):
    known = {r["id"] for r in products + articles}
    assert len(conversations) >= 30
    assert len({c["id"] for c in conversations}) == len(conversations)
    turns = [t for c in conversations for t in c["turns"]]
    for turn in turns:
        assert set(turn) - {"tag"} == {"message", "image", "relevant", "expect_no_match"}
        assert turn.get("tag", "topic_switch") in ("topic_switch", "variant", "article")
        assert turn["message"].strip()
        assert set(turn["relevant"]) <= known, turn["message"]
        assert turn["expect_no_match"] == (not turn["relevant"]), turn["message"]
        if turn["image"] is not None:
            assert (REPO / turn["image"]).is_file(), turn["image"]
    assert sum(len(c["turns"]) > 1 for c in conversations) >= 10
    assert sum(t["image"] is not None for t in turns) >= 8
    assert sum(t["expect_no_match"] for t in turns) >= 4
    assert sorted(t["relevant"][0] for t in turns if t.get("tag") == "article") == sorted(r["id"] for r in articles)
