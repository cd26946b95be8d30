"""Attribute-aware search: query words read against the catalog's own column values, on a small real LanceDB table."""

import numpy as np
import pytest

from mmsupport.attributes import AttributeIndex, _price_bounds
from mmsupport.catalog import Catalog
from mmsupport.config import load_settings
from mmsupport.retrieval import search
from test_catalog import write_csv

HEADER = ["id", "title", "description", "gender", "colour", "article_type", "usage", "price"]
#: The texts hardly tell the three shirts apart ("formal" in one, "navy" in another), so only the columns make the
#: navy men's shirt the answer to "navy formal shirt for men".
ROWS = [
    ["navy-men", "Oxford shirt", "Formal cotton oxford shirt", "Men", "Navy Blue", "Shirts",
     "Formal", "40"],
    ["navy-women", "Oxford shirt", "Cotton oxford shirt with a navy collar", "Women", "Navy Blue", "Shirts",
     "Formal", "45"],
    ["olive-men", "Oxford shirt", "Cotton oxford shirt with a spread collar", "Men", "Olive", "Shirts", "Formal", "35"],
    ["tee-men", "Crew tee", "Soft cotton crew neck t-shirt", "Men", "Grey", "Tshirts", "Casual", "12"],
    ["tee-women", "Crew tee", "Soft cotton crew neck t-shirt", "Women", "Grey", "Tshirts", "Casual", "14"],
    ["tee-unisex", "Crew tee", "Soft cotton crew neck t-shirt", "Unisex", "Grey Melange", "Tshirts", "Casual", "10"],
    ["runner", "Trail runner", "Light running shoe for muddy trails", "Men", "Black", "Sports Shoes", "Sports", "90"],
    ["heel", "Evening heel", "Satin heel with an ankle strap", "Women", "Black", "Heels", "Party", "120"],
    ["bag", "City backpack", "Water-resistant backpack with a laptop sleeve", "Unisex", "Olive", "Backpacks",
     "Casual", "65"],
    ["leather-bag", "Leather bag", "A roomy leather bag, the bag for every day", "Unisex", "Brown", "Bags", "Casual",
     "80"],
    ["tote", "Canvas tote", "Canvas tote bag", "Unisex", "Beige", "Bags", "Casual", "9"],
    ["watch", "Pulse smartwatch", "Fitness smartwatch with a heart-rate sensor", "Unisex", "Black", "Watches",
     "Sports", "150"],
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("attributes")
    catalog = Catalog.open(load_settings(db_dir=root / "db", table="shop"), create=True)
    catalog.ingest_csv(write_csv(root / "shop.csv", ROWS, HEADER), progress=False)
    return catalog


def ids(catalog, query, mode="hybrid", k=10, **kwargs):
    return [row["id"] for row, _, _ in search(catalog, query, mode=mode, k=k, **kwargs)]


def named(catalog, query):
    return AttributeIndex.of(catalog.view()).read(query).values


def test_the_catalog_columns_are_the_vocabulary(catalog):
    assert named(catalog, "navy formal shirt for men") == {"gender": {"Men"}, "colour": {"Navy Blue"},
                                                          "article_type": {"Shirts"}, "usage": {"Formal"}}
    assert named(catalog, "t-shirts for a woman") == {"gender": {"Women"}, "article_type": {"Tshirts"}}
    assert named(catalog, "grey melange tshirt")["colour"] == {"Grey Melange"}
    assert named(catalog, "guys sports shoes") == {"gender": {"Men"}, "article_type": {"Sports Shoes"},
                                                   "usage": {"Sports"}}
    assert named(catalog, "a watch for men or women")["gender"] == {"Unisex"}
    assert named(catalog, "cotton crew neck") == {}


def test_women_is_not_men_and_titles_are_not_attributes(catalog):
    assert named(catalog, "shirts for women")["gender"] == {"Women"}
    assert named(catalog, "women's shirts")["gender"] == {"Women"}
    assert named(catalog, "mens shirts")["gender"] == {"Men"}
    assert "title" not in named(catalog, "oxford shirt") and "description" not in named(catalog, "oxford shirt")


@pytest.mark.parametrize("mode", ["hybrid", "vector", "fts"])
def test_attribute_words_lift_the_row_that_has_them(catalog, mode):
    shirts = {"navy-men", "navy-women", "olive-men"}
    found = ids(catalog, "navy formal shirt for men", mode=mode)
    assert found[0] == "navy-men" and set(found[:3]) == shirts
    unboosted = ids(catalog, "navy formal shirt for men", mode=mode, attributes=False)
    assert unboosted[0] != "navy-men" or set(unboosted[:3]) != shirts


def test_women_finds_the_womens_row(catalog):
    assert ids(catalog, "grey tshirt for women")[0] == "tee-women"
    assert ids(catalog, "grey tshirt for men")[0] == "tee-men"


@pytest.mark.parametrize("mode", ["hybrid", "vector", "fts"])
def test_price_words_filter(catalog, mode):
    prices = {row[0]: float(row[-1]) for row in ROWS}
    under = ids(catalog, "shirt under $40", mode=mode)
    assert under and all(prices[i] <= 40 for i in under)
    assert "olive-men" in under and "navy-women" not in under
    over = ids(catalog, "a heel or a smartwatch, over 100 dollars", mode=mode)
    assert over and all(prices[i] >= 100 for i in over)
    between = ids(catalog, "tee between $11 and $13", mode=mode)
    assert between == ["tee-men"]


@pytest.mark.parametrize("mode", ["hybrid", "vector", "fts"])
def test_cheap_lifts_the_cheap_end(catalog, mode):
    assert ids(catalog, "a cheap bag", mode=mode)[0] == "tote"
    assert ids(catalog, "a cheap bag", mode=mode, attributes=False)[0] == "leather-bag"


@pytest.mark.parametrize("text, bounds", [
    ("under $50", (None, 50.0)), ("below 50 dollars", (None, 50.0)), ("$80 or less", (None, 80.0)),
    ("at least 20", (20.0, None)), ("between $20 and $50", (20.0, 50.0)), ("$20-$50 jackets", (20.0, 50.0)),
    ("50% off jackets", (None, None)), ("returns within 30 days", (None, None)), ("size 8-10", (None, None)),
    ("under 30 days old", (None, None)), ("navy shirt", (None, None)),
])
def test_price_bounds(text, bounds):
    assert _price_bounds(text) == bounds


@pytest.mark.parametrize("query", ["soft cotton crew neck", "water-resistant laptop sleeve", "heart-rate sensor",
                                   "satin with an ankle strap"])
@pytest.mark.parametrize("mode", ["hybrid", "vector", "fts"])
def test_a_query_naming_no_attribute_is_ranked_as_before(catalog, query, mode):
    assert named(catalog, query) == {}
    with_attributes = [(row["id"], score) for row, score, _ in search(catalog, query, mode=mode, k=10)]
    without = [(row["id"], score) for row, score, _ in search(catalog, query, mode=mode, k=10, attributes=False)]
    assert with_attributes == without


def test_values_written_to_break_parsing_are_only_values(tmp_path):
    """Quotes, SQL and pattern characters in a catalog's values are matched as words and filtered as literals."""
    rows = [row[:] for row in ROWS]
    rows[0][4] = "Navy' OR '1'='1"
    rows[3][4] = "C++ (Beta).*"
    rows[6][5] = "Shoes\\ %_"
    catalog = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"), create=True)
    catalog.ingest_csv(write_csv(tmp_path / "shop.csv", rows, HEADER), progress=False)
    assert named(catalog, "navy' or '1'='1 shirt")["colour"] == {"Navy' OR '1'='1"}
    for where in (None, "kind = 'product'"):  # without and with a filter: in memory, and through LanceDB's SQL
        assert ids(catalog, "navy' OR '1'='1 formal shirt for men", where=where)[0] == "navy-men"
        assert ids(catalog, "c++ (beta).* tee", where=where)[0] == "tee-men"
        assert ids(catalog, "shoes\\ %_ for running", where=where)[0] == "runner"


@pytest.fixture
def ann_catalog(tmp_path, monkeypatch):
    """:data:`ROWS` among 312 socks, caps and scarves: a table with an ANN index, as 100k rows get."""
    import mmsupport.catalog

    monkeypatch.setattr(mmsupport.catalog, "ANN_MIN_ROWS", 300)  # what 100k rows do, on a table a test can build
    fillers = [[f"f{i}", f"{thing} {i}", f"A {colour.lower()} {thing.lower()} for every day, model {i}", gender,
                colour, thing, "Casual", "20"]
               for i, (thing, colour, gender) in enumerate(
                   (t, c, g) for t in ("Socks", "Caps", "Scarves") for c in ("Red", "Green", "White", "Navy Blue")
                   for g in ("Men", "Women") for _ in range(13))]
    catalog = Catalog.open(load_settings(db_dir=tmp_path / "db", table="big"), create=True)
    catalog.ingest_csv(write_csv(tmp_path / "big.csv", [*ROWS, *fillers], HEADER), progress=False)
    assert len(catalog) >= 300 and catalog.view().exact is None
    return catalog


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_attribute_words_lift_the_row_that_has_them_on_a_table_with_an_ann_index(ann_catalog, mode):
    catalog = ann_catalog
    shirts = {"navy-men", "navy-women", "olive-men"}
    found = ids(catalog, "navy formal shirt for men", mode=mode)
    assert found[0] == "navy-men" and set(found[:3]) == shirts
    unboosted = ids(catalog, "navy formal shirt for men", mode=mode, attributes=False)
    assert unboosted[0] != "navy-men" or set(unboosted[:3]) != shirts
    bitmaps = {index.columns[0] for index in catalog.table.list_indices() if index.index_type == "Bitmap"}
    assert bitmaps == {"gender", "colour", "article_type", "usage"}  # the attribute columns; not id, title, text


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_with_the_vectors_in_memory_the_rows_having_the_attributes_are_the_ones_lancedb_finds(ann_catalog, mode):
    queries = ["navy formal shirt for men", "red socks for women", "white caps", "green scarf for a man",
               "navy blue caps for her"]
    view = ann_catalog.view()
    view.vectors.result()  # loaded, as a serving process has them: the nearest rows having the attributes from memory
    in_memory = {query: search(ann_catalog, query, mode=mode, k=10) for query in queries}
    view.vectors = None  # as before they are loaded: LanceDB's prefiltered nearest-neighbour query
    for query in queries:
        on_disk = search(ann_catalog, query, mode=mode, k=10)
        assert in_memory[query][0][0]["id"] == on_disk[0][0]["id"], query
        np.testing.assert_allclose([score for _, score, _ in in_memory[query]], [score for _, score, _ in on_disk],
                                   atol=2e-3, err_msg=query)
