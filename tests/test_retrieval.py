"""Search modes, prefilters, freshness after ingest and the hybrid fusion, on a small real LanceDB table."""

import numpy as np
import pytest

from mmsupport.catalog import Catalog
from mmsupport.config import load_settings
from mmsupport.errors import InvalidInput
from mmsupport.retrieval import ExactIndex, fuse, load_vectors
from test_catalog import write_csv

HEADER = ["kind", "id", "title", "category", "price", "description"]
ROWS = [
    ["product", "w1", "Pulse S2 smartwatch", "smartwatches", "129", "Fitness smartwatch with heart-rate sensor"],
    ["product", "h1", "Sonora H7 headset", "headphones", "59", "Wireless over-ear headset with noise cancelling"],
    ["product", "s1", "Trail runner", "shoes", "89", "Lightweight running shoe for muddy trails"],
    ["product", "b1", "City backpack", "bags", "45", "Water-resistant backpack with a laptop sleeve"],
    ["article", "a1", "Smartwatch button flashing red", "troubleshooting", "",
     "A red flashing light on the side button means the battery is low; charge the watch for 30 minutes"],
    ["article", "a2", "Headset blinking blue means pairing mode", "troubleshooting", "",
     "When the light blinks blue the headset is ready to pair with your phone over Bluetooth"],
    ["article", "a3", "Returns within 30 days", "returns", "",
     "Unused items can be sent back within 30 days of delivery for a full refund"],
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    catalog = Catalog.open(load_settings(db_dir=root / "db", table="shop"), create=True)
    catalog.ingest_csv(write_csv(root / "shop.csv", ROWS, HEADER), progress=False)
    return catalog


@pytest.mark.parametrize("mode", ["vector", "fts", "hybrid"])
def test_every_mode_finds_the_obvious_item_and_says_its_kind(catalog, mode):
    items = catalog.search("smartwatch button flashing red", mode=mode, k=3)
    assert items[0].id == "a1"
    assert items[0].kind == "article"
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)


def test_vector_mode_understands_paraphrases(catalog):
    assert catalog.search("my earphones want to connect to my mobile", mode="vector", k=1)[0].id in {"a2", "h1"}


@pytest.mark.parametrize("mode", ["vector", "fts", "hybrid"])
def test_where_is_a_prefilter(catalog, mode):
    items = catalog.search("headset", mode=mode, k=5, where="kind = 'product' AND price < 100")
    assert items and items[0].id == "h1"
    assert all(i.kind == "product" and i.price < 100 for i in items)


def test_new_rows_are_found_by_every_mode_right_after_ingest(tmp_path):
    catalog = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"), create=True)
    catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS, HEADER), progress=False)
    catalog.ingest_csv(write_csv(tmp_path / "b.csv", [["product", "z1", "Zebra print tote", "bags", "30",
                                                      "Canvas tote bag with a zebra print"]], HEADER), progress=False)
    for mode in ("vector", "fts", "hybrid"):
        assert catalog.search("zebra print tote", mode=mode, k=1)[0].id == "z1", mode
    assert not catalog.table.index_stats("text_idx").num_unindexed_rows


def test_results_carry_their_own_rows_after_an_update(tmp_path):
    """An update deletes a row and appends its new version, which shifts the row offsets searches read by."""
    catalog = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"), create=True)
    catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS, HEADER), progress=False)
    changed = [row[:] for row in ROWS]
    changed[0][2], changed[0][5] = "Pulse S3 smartwatch", "Fitness smartwatch with GPS and heart-rate sensor"
    catalog.ingest_csv(write_csv(tmp_path / "b.csv", changed, HEADER), progress=False)
    for mode in ("vector", "fts", "hybrid"):
        items = catalog.search("smartwatch with GPS", mode=mode, k=len(ROWS))
        assert items[0].title == "Pulse S3 smartwatch", mode
        for item in items:
            stored = catalog.get(item.id)
            assert (item.title, item.text, item.price) == (stored.title, stored.text, stored.price), mode


@pytest.mark.parametrize("query, kwargs, message", [
    ("  ", {}, "query is empty"),
    ("watch", {"mode": "semantic"}, "Unknown search mode 'semantic'"),
    ("watch", {"k": 0}, "k=0"),
    ("watch", {"where": "colour_of_box = 'x'"}, "filter .colour_of_box = 'x'. is not valid.*columns id, kind, title"),
])
def test_bad_search_input_says_what_to_do(catalog, query, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        catalog.search(query, **kwargs)



def test_hybrid_puts_an_exact_phrase_first(catalog):
    assert catalog.search("the light blinks blue the headset", k=1)[0].id == "a2"


def test_fusion_ranks_phrase_matches_first():
    ranked = fuse({"strong": 9.0, "phrase": 4.0}, {"strong": 1.0, "phrase": 0.0, "near": 1.0}, {"phrase"})
    assert [item_id for item_id, _ in ranked] == ["phrase", "strong", "near"]


def test_fusion_lets_vectors_order_a_flat_bm25_list():
    assert [item_id for item_id, _ in fuse({"far": 5.0, "close": 4.9}, {"far": 0.0, "close": 1.0})] == ["close", "far"]


def test_fusion_keeps_a_clear_bm25_winner_above_a_vector_only_match():
    ranked = fuse({"lexical": 10.0, "weak": 1.0}, {"lexical": 0.6, "weak": 0.0, "semantic": 1.0})
    assert [item_id for item_id, _ in ranked] == ["lexical", "semantic", "weak"]


def test_exact_search_in_memory_agrees_with_lancedb(catalog):
    assert catalog.view().exact is not None  # a small table: no ANN index
    for query in ("smartwatch button flashing red", "returns and refunds", "bag for my laptop"):
        vector = catalog.embedder.embed_query(query)
        on_disk = catalog.table.search(vector).distance_type("cosine").select(["id"]).limit(4).to_list()
        found = catalog.search(query, mode="vector", k=4)
        assert [item.id for item in found] == [row["id"] for row in on_disk]
        np.testing.assert_allclose([item.similarity for item in found], [1 - row["_distance"] for row in on_disk],
                                   atol=1e-5)


def test_full_text_rows_take_their_ids_from_memory_as_the_table_has_them(catalog):
    from mmsupport.retrieval import _full_text

    view = catalog.view()
    for query in ("smartwatch with a red light", "the light blinks blue the headset", "backpack for a laptop"):
        from_memory = _full_text(view.dataset, query, 50, None, view.exact)
        from_table = _full_text(view.dataset, query, 50, None, None)
        assert from_memory[1] == from_table[1] and len(from_memory[0]) >= 2, query
        assert {item_id: (row["_rowoffset"], row["_score"]) for item_id, row in from_memory[0].items()} == {
            item_id: (row["_rowoffset"], row["_score"]) for item_id, row in from_table[0].items()}, query


def test_every_mode_but_full_text_reports_similarity(catalog):
    for mode in ("vector", "hybrid"):
        assert all(-1 <= item.similarity <= 1 for item in catalog.search("headset", mode=mode, k=3))
    assert all(item.similarity is None for item in catalog.search("headset", mode="fts", k=3))


@pytest.fixture
def large_catalog(tmp_path, monkeypatch):
    """A table with an ANN index, as 100k rows get."""
    import mmsupport.catalog

    monkeypatch.setattr(mmsupport.catalog, "ANN_MIN_ROWS", 300)  # what 100k rows do, on a table a test can build
    colours = ["red", "blue", "green", "black", "white", "grey", "navy", "pink", "brown", "beige"]
    things = ["running shoe", "backpack", "rain jacket", "wool beanie", "leather belt", "linen shirt"]
    rows = [["product", f"g{i}", f"{colour} {thing} {i}", "misc", "10", f"A {colour} {thing}, model {i}."]
            for i, (colour, thing) in enumerate((c, t) for c in colours for t in things for _ in range(6))]
    catalog = Catalog.open(load_settings(db_dir=tmp_path / "db", table="big"), create=True)
    catalog.ingest_csv(write_csv(tmp_path / "big.csv", [*rows, *ROWS], HEADER), progress=False)
    assert len(catalog) >= 300 and catalog.view().exact is None
    return catalog


def test_large_tables_search_through_the_ann_index_while_their_vectors_are_not_in_memory(large_catalog):
    large_catalog.view().vectors = None
    for mode in ("vector", "hybrid"):
        items = large_catalog.search("smartwatch button flashing red", mode=mode, k=3)
        assert items[0].id == "a1", mode
        assert all(item.similarity is not None for item in items)


QUERIES = ["navy rain jacket", "smartwatch button flashing red", "something warm for my head", "pink belt 17"]


def test_on_a_large_table_searches_are_exact_once_the_vectors_are_in_memory(large_catalog):
    view = large_catalog.view()
    vectors = view.vectors.result()  # loaded in the background, as a serving process has them
    assert view.in_memory() is vectors and vectors.matrix.dtype == np.float16
    exact = ExactIndex(view.dataset)
    for query in QUERIES:
        truth = exact.nearest(large_catalog.embedder.embed_query(query), 8)
        found = large_catalog.search(query, mode="vector", k=8)
        assert [item.id for item in found] == [row["id"] for row in truth], query
        np.testing.assert_allclose([item.similarity for item in found], [row["_cosine"] for row in truth],
                                   atol=2e-3)


def test_the_compact_in_memory_index_finds_what_float32_finds_among_near_ties(tmp_path):
    import lance
    import pyarrow as pa

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5000, 384)).astype(np.float32)  # random directions: cosines crowd near 0.15
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    dataset = lance.write_dataset(pa.table({"id": [f"r{i}" for i in range(5000)],
                                            "vector": pa.FixedSizeListArray.from_arrays(vectors.ravel(), 384)}),
                                  tmp_path / "random.lance")
    compact, exact = ExactIndex(dataset, dtype=np.float16), ExactIndex(dataset)
    among = np.arange(0, 5000, 3)
    for query in vectors[:20] * 0.5 + rng.standard_normal((20, 384)).astype(np.float32) * 0.02:
        query /= np.linalg.norm(query)
        for subset in (None, among):
            found, truth = compact.nearest(query, 10, among=subset), exact.nearest(query, 10, among=subset)
            assert found[0]["id"] == truth[0]["id"]
            # float16 storage may swap rows closer than 1e-3; a row missed by the int8 product would show here
            np.testing.assert_allclose([row["_cosine"] for row in found], [row["_cosine"] for row in truth],
                                       atol=1e-3)


def test_result_rows_read_from_memory_are_the_rows_lancedb_has(large_catalog, monkeypatch):
    import mmsupport.retrieval

    view = large_catalog.view()
    offsets = list(range(0, view.dataset.count_rows(), 7))
    on_disk = {row["id"]: row for row in view.dataset.take(offsets, columns=view.columns).to_pylist()}
    assert ExactIndex(view.dataset, columns=view.columns).rows(offsets) == on_disk
    assert view.vectors.result().kept is not None

    def found():
        return {(query, mode): large_catalog.search(query, mode=mode, k=8)
                for query in QUERIES for mode in ("vector", "hybrid")}

    from_memory = found()
    monkeypatch.setattr(mmsupport.retrieval, "ROWS_IN_MEMORY_MB", 0.01)  # 10 kB: less than this table's rows
    view.vectors = load_vectors(view.dataset, view.columns)
    assert view.vectors.result().kept is None and view.in_memory() is not None
    assert found() == from_memory


def test_the_8_bit_product_is_within_its_stated_error_of_float32():
    from mmsupport.onnx_models import QuantizedRows

    rng = np.random.default_rng(1)
    rows = rng.standard_normal((20_000, 384)).astype(np.float32)
    rows[:, 10:12] += 8  # two neighbouring outlier dimensions, as sentence embedders have: a kernel summing pairs
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)  # of signed bytes in 16 bits saturates there (off by 0.2)
    product = QuantizedRows(rows.astype(np.float16), block=4096)  # several blocks
    for query in rows[:10] * 0.7 + rng.standard_normal((10, 384)).astype(np.float32) * 0.01:
        query /= np.linalg.norm(query)
        errors = np.abs(product(query) - rows @ query)
        assert errors.max() < 1e-2, errors.max()  # 5e-3 here: the outliers widen every row's scale


def test_the_8_bit_product_of_chosen_rows_is_within_its_stated_error_of_float32():
    from mmsupport.onnx_models import QuantizedSubsets, quantize_rows

    rng = np.random.default_rng(2)
    rows = rng.standard_normal((20_000, 384)).astype(np.float32)
    rows[:, 10:12] += 8  # the outliers that saturate a kernel of signed bytes (above)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    product = QuantizedSubsets(*quantize_rows(rows))
    for query in rows[:10] * 0.7 + rng.standard_normal((10, 384)).astype(np.float32) * 0.01:
        query /= np.linalg.norm(query)
        positions = rng.choice(len(rows), 3000, replace=False)  # in no order, some far apart
        errors = np.abs(product(query, positions) - rows[positions] @ query)
        assert errors.max() < 1e-2, errors.max()


def test_when_the_vectors_cannot_be_loaded_searches_go_through_lancedb(large_catalog, caplog):
    view = large_catalog.view()
    view.vectors.result()

    def ranked():
        return {query: [item.id for item in large_catalog.search(query, mode="vector", k=8)]
                for query in QUERIES}

    class Unreadable:  # the table's files cannot be read (say, the disk failed) after it was opened
        schema = view.dataset.schema
        count_rows = view.dataset.count_rows

        def to_batches(self, **kwargs):
            raise OSError("Input/output error")

    in_memory = ranked()
    view.vectors = load_vectors(Unreadable(), view.columns)
    assert view.vectors.exception(timeout=30) is not None and view.in_memory() is None
    assert "could not be loaded into memory" in caplog.text and "Input/output error" in caplog.text
    assert ranked() == in_memory


def test_vectors_past_the_memory_limits_stay_on_disk(large_catalog, monkeypatch):
    import mmsupport.retrieval

    view = large_catalog.view()
    assert load_vectors(view.dataset, view.columns).result().ranks_all_rows
    monkeypatch.setattr(mmsupport.retrieval, "SEARCH_IN_MEMORY_MB", 0.1)  # 100 kB: less than this table's vectors
    assert not load_vectors(view.dataset, view.columns).result().ranks_all_rows
    monkeypatch.setattr(mmsupport.retrieval, "RANK_IN_MEMORY_MB", 0.1)  # their 8-bit copy: 140 kB
    assert load_vectors(view.dataset, view.columns) is None
    view.vectors = None
    assert large_catalog.search("smartwatch button flashing red", mode="vector", k=3)[0].id == "a1"


def test_on_the_largest_tables_the_ann_candidates_are_ranked_from_an_8_bit_copy(large_catalog, monkeypatch):
    import mmsupport.retrieval

    view = large_catalog.view()
    exact = view.vectors.result()
    monkeypatch.setattr(mmsupport.retrieval, "RANK_FACTOR", 1)  # 50 candidates of the table's 367 rows
    naming = ["wool beanie for smartwatches", "muddy shoes"]  # a category each, far from the words / near them
    before = {(query, mode): [item.id for item in large_catalog.search(query, mode=mode, k=3)]
              for query in naming for mode in ("hybrid", "vector")}
    monkeypatch.setattr(mmsupport.retrieval, "SEARCH_IN_MEMORY_MB", 0.1)
    view.vectors = load_vectors(view.dataset, view.columns)
    assert not view.vectors.result().ranks_all_rows and view.in_memory() is view.vectors.result()
    asked = []

    class Counting:  # the table, counting its ANN queries
        def __getattr__(self, name):
            return getattr(dataset, name)

        def to_table(self, **kwargs):
            if "nearest" in kwargs:
                asked.append(kwargs["nearest"].get("refine_factor"))
            return dataset.to_table(**kwargs)

    dataset, view.dataset = view.dataset, Counting()
    for query in QUERIES:
        found = large_catalog.search(query, mode="vector", k=8)
        truth = exact.nearest(large_catalog.embedder.embed_query(query), 8)
        assert found[0].id == truth[0]["id"], query
        np.testing.assert_allclose([item.similarity for item in found], [row["_cosine"] for row in truth],
                                   atol=5e-3)
    assert asked == [None] * len(QUERIES)  # one ANN query each, without LanceDB's refine step
    view.dataset = dataset
    # the rows having a named attribute come from memory, whether or not the ANN index found them
    assert {(query, mode): [item.id for item in large_catalog.search(query, mode=mode, k=3)]
            for query in naming for mode in ("hybrid", "vector")} == before
    assert "w1" in before["wool beanie for smartwatches", "hybrid"]
    assert "w1" in before["wool beanie for smartwatches", "vector"]


