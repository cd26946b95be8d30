"""What ingest derives for the agent: variant families and embedded sentences (LanceDB on disk)."""

import csv

import numpy as np
import pytest

from mmsupport.catalog import Catalog, family_name, split_sentences
from mmsupport.config import load_settings

HEADER = ["id", "title", "colour", "subcategory", "description", "group"]
ROWS = [
    ["j1", "Field Jacket (Olive)", "olive", "jackets", "Waxed cotton. Do not wash it! Re-wax once a year.", ""],
    ["j2", "Field Jacket (Brown)", "brown", "jackets", "Waxed cotton. Sponge off dirt with cold water.", ""],
    ["j3", "Rain Jacket (Black)", "black", "jackets", "A waterproof shell. Taped seams keep rain out.", ""],
    ["t1", "Trail Tee Red", "red", "t-shirts", "Merino tee for hikes.", "TEE-1"],
    ["t2", "Trail Tee - Blue / M", "blue", "t-shirts", "Merino tee for hikes.", "TEE-1"],
]


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "shop.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([HEADER, *ROWS])
    catalog = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"), create=True)
    catalog.ingest_csv(path, progress=False)
    catalog.csv_path = path
    return catalog


@pytest.mark.parametrize("title, family", [
    ("Fjellhus Waxed Cotton Field Jacket (Olive)", "Fjellhus Waxed Cotton Field Jacket"),
    ("Trail Tee - Blue / M", "Trail Tee"), ("Voltix 65W GaN Charger [Grey]", "Voltix 65W GaN Charger"),
    ("Plain title", "Plain title")])
def test_family_name_drops_the_variant_suffix(title, family):
    assert family_name(title) == family


def test_families_come_from_the_group_column_else_from_the_title(catalog):
    assert [item.id for item in catalog.family(catalog.get("j1"))] == ["j1", "j2"]
    assert [item.id for item in catalog.family(catalog.get("t2"))] == ["t1", "t2"]  # titles differ, group agrees
    assert catalog.get("t1").family == "TEE-1" and catalog.get("j3").family == "Rain Jacket"
    assert catalog.distinct("family") == ["Field Jacket", "Rain Jacket", "TEE-1"]


def test_sentences_are_embedded_once_at_ingest_and_kept(catalog):
    sentences, vectors = catalog.sentences("j1")
    assert sentences == ["Waxed cotton.", "Do not wash it!", "Re-wax once a year."]  # the title line left out
    expected = catalog.embedder.embed(sentences)
    assert vectors.shape == expected.shape and np.allclose((vectors * expected).sum(1), 1.0, atol=1e-4)
    assert split_sentences("One. Two?\nThree") == ["One.", "Two?", "Three"]
    hits = catalog.table.search(expected[0]).limit(1).to_list()  # still one vector column for LanceDB to infer
    assert hits[0]["id"] in {"j1", "j2"}


def test_ingest_embeds_each_distinct_text_once_and_a_one_sentence_text_keeps_its_vector(tmp_path, monkeypatch):
    long = "A packable down vest with a two-way zip, zipped hand pockets and a drawcord hem for cold mornings"
    path = tmp_path / "vests.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "description"], ["v1", long],  # no title: its first 80 characters
                                 ["v2", "Merino vest. Machine wash cold."], ["v3", "Wool vest. Machine wash cold."]])
    catalog = Catalog.open(load_settings(db_dir=tmp_path / "db", table="vests"), create=True)
    embedded = []
    embed = catalog.embedder.embed
    monkeypatch.setattr(catalog.embedder, "embed", lambda texts, **kw: embedded.extend(texts) or embed(texts, **kw))
    catalog.ingest_csv(path, progress=False)
    assert sorted(embedded) == sorted({*embedded}) and embedded.count("Machine wash cold.") == 1
    sentences, vectors = catalog.sentences("v1")
    row = catalog.table.search().where("id = 'v1'").select(["vector"]).to_list()[0]["vector"]
    assert sentences == [long] and np.array_equal(vectors[0], np.asarray(row, dtype=np.float32))
    assert catalog.sentences("v3")[0] == ["Wool vest.", "Machine wash cold."]
    assert np.array_equal(catalog.sentences("v2")[1][1], catalog.sentences("v3")[1][1])


def test_a_table_without_the_derived_columns_gets_them_on_the_next_ingest(catalog):
    catalog.table.drop_columns(["family", "sentences", "sentence_vectors"])
    old = Catalog.open(catalog.settings)
    assert old.sentences("j1")[0] == [] and [item.id for item in old.family(old.get("j1"))] == ["j1"]
    report = old.ingest_csv(catalog.csv_path, progress=False)
    assert (report.updated, report.unchanged) == (len(ROWS), 0)
    assert old.sentences("j1")[0] and [item.id for item in old.family(old.get("j1"))] == ["j1", "j2"]
    assert old.ingest_csv(catalog.csv_path, progress=False).unchanged == len(ROWS)
