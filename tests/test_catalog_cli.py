"""The ingest, search and eval retrieval commands, end to end on a LanceDB folder in tmp_path."""

import json
import subprocess
import sys

import pytest

from mmsupport.__main__ import main
from test_retrieval import HEADER, ROWS
from test_catalog import write_csv


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return root, write_csv(root / "shop.csv", ROWS, HEADER), ["--db", str(root / "db"), "--table", "shop"]


def run_json(capsys, argv):
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_ingest_twice_reports_an_upsert(shop, capsys):
    root, csv_path, where = shop
    first, = run_json(capsys, ["ingest", "--csv", str(csv_path), *where, "--json"])
    assert (first["added"], first["updated"], first["unchanged"], first["rejected"]) == (7, 0, 0, 0)
    again, = run_json(capsys, ["ingest", "--csv", str(csv_path), *where, "--json"])
    assert (again["added"], again["unchanged"], again["version"]) == (0, 7, first["version"])


def test_search_json_and_batch(shop, capsys, tmp_path):
    root, csv_path, where = shop
    main(["ingest", "--csv", str(csv_path), *where, "--json"])
    capsys.readouterr()
    result, = run_json(capsys, ["search", "headset blinking blue", *where, "-k", "2", "--json"])
    assert result["results"][0] == {"id": "a2", "title": "Headset blinking blue means pairing mode",
                                    "kind": "article", "score": result["results"][0]["score"]}
    batch = tmp_path / "q.jsonl"
    batch.write_text('{"query": "trail running shoe"}\n\n{"query": "return policy", "where": "kind = \'article\'"}\n')
    lines = run_json(capsys, ["search", "--batch", str(batch), *where, "--mode", "fts", "-k", "1"])
    assert [(line["query"], line["results"][0]["id"]) for line in lines] == [
        ("trail running shoe", "s1"), ("return policy", "a3")]


def test_eval_retrieval_json_and_plot(shop, capsys, tmp_path):
    root, csv_path, where = shop
    main(["ingest", "--csv", str(csv_path), *where, "--json"])
    capsys.readouterr()
    queries = tmp_path / "dev.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [
        {"kind": "known-item", "query": "red light on my watch button", "relevant": ["a1"]},
        {"kind": "known-item", "query": "send an item back for a refund", "relevant": ["a3"]},
        {"kind": "attribute", "query": "shoes for running", "relevant": ["s1", "missing-id"]},
    ]))
    plot = tmp_path / "eval.png"
    results, = run_json(capsys, ["eval", "retrieval", "--queries", str(queries), *where, "--modes", "vector,hybrid",
                                 "-k", "3", "--json", "--plot", str(plot)])
    assert set(results) == {"vector", "hybrid"}
    known = results["hybrid"]["known-item"]
    assert known["n"] == 2 and known["hit@3"] == 1.0 and known["median_rank"] >= 1
    assert results["hybrid"]["attribute"]["recall@3"] == 0.5
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_whole_file_error_is_one_line_exit_2_and_writes_nothing(tmp_path):
    csv_path = write_csv(tmp_path / "x.csv", [["1", "Mug"]], ["sku", "title"])
    proc = subprocess.run([sys.executable, "-m", "mmsupport", "ingest", "--csv", str(csv_path), "--db",
                           str(tmp_path / "db")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: The CSV has no id column; columns found: sku, title. Name the column holding unique ids with "
        "--id-col COL."]
    assert not list((tmp_path / "db").glob("*.lance"))


def test_search_without_a_table_says_how_to_build_one(tmp_path, capsys):
    assert main(["search", "watch", "--db", str(tmp_path / "db")]) == 2
    assert "python -m mmsupport ingest --csv FILE" in capsys.readouterr().err


@pytest.mark.slow
def test_a_running_catalog_finds_rows_another_process_ingests(tmp_path, monkeypatch):
    """The app keeps its catalog open while the shop owner ingests from the command line."""
    import mmsupport.catalog
    from mmsupport.catalog import Catalog
    from mmsupport.config import load_settings

    monkeypatch.setattr(mmsupport.catalog, "REFRESH_SECONDS", 0.0)  # look on every search (2 s in the app)
    serving = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop"), create=True)
    serving.ingest_csv(write_csv(tmp_path / "a.csv", ROWS, HEADER), progress=False)
    assert serving.search("zebra print tote", mode="hybrid", k=1)[0].id != "z1"
    new = write_csv(tmp_path / "b.csv", [["product", "z1", "Zebra print tote", "bags", "30", "Canvas tote bag"]],
                    HEADER)
    subprocess.run([sys.executable, "-m", "mmsupport", "ingest", "--csv", str(new), "--db", str(tmp_path / "db"),
                    "--table", "shop"], check=True, capture_output=True)
    for mode in ("vector", "fts", "hybrid"):
        assert serving.search("zebra print tote", mode=mode, k=1)[0].id == "z1", mode
