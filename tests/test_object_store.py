"""The catalog on object storage: a real S3-compatible server (moto's ``moto_server``) on 127.0.0.1, LanceDB
writing and reading ``s3://`` URIs, one process ingesting while another searches."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmsupport.catalog import Catalog
from mmsupport.config import load_settings
from mmsupport.errors import CatalogError

pytestmark = pytest.mark.slow  # every test here starts (or uses) the storage server

MOTO = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The environment that points LanceDB (and boto3) at a fresh moto server with a bucket ``shop``."""
    if not Path(MOTO).exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = _free_port()
    server = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        import boto3

        for _ in range(100):
            try:
                boto3.client("s3").create_bucket(Bucket="shop")
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        yield env
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        server.terminate()
        server.wait(timeout=30)


def _csv(path: Path, first: int, count: int) -> Path:
    rows = ["kind,id,title,category,price,description"]
    rows += [f'product,S{n:04d},Trail Boot {n},footwear,{50 + n},"A waterproof leather trail boot, model {n}."'
             for n in range(first, first + count)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_ingest_and_search_on_s3_write_nothing_locally(s3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"MMSUPPORT_DB_DIR": "s3://shop/one"})
    assert settings.db_dir == "s3://shop/one" and settings.catalog_is_remote
    catalog = Catalog.open(settings, create=True)
    report = catalog.ingest_csv(_csv(tmp_path / "boots.csv", 0, 12), progress=False)
    assert report.added == 12
    assert [item.id for item in Catalog.open(settings).search("trail boot 7", mode="fts", k=1)] == ["S0007"]
    catalog.cleanup()  # maintenance works there too, and keeps the table whole
    assert len(Catalog.open(settings)) == 12
    assert not any(tmp_path.glob("s3*"))  # the URI was not folded into a local folder named "s3:"
    import boto3

    keys = [obj["Key"] for obj in boto3.client("s3").list_objects_v2(Bucket="shop", Prefix="one/")["Contents"]]
    assert any(key.startswith("one/catalog.lance/") for key in keys)


def test_a_view_on_s3_reads_its_full_text_index_ahead_of_the_first_search(s3, tmp_path):
    settings = load_settings({"MMSUPPORT_DB_DIR": "s3://shop/ahead"})
    Catalog.open(settings, create=True).ingest_csv(_csv(tmp_path / "boots.csv", 0, 12), progress=False)
    catalog = Catalog.open(settings)
    cached = catalog.table.to_lance().session().index_cache_size_bytes()
    session = catalog.view().dataset.session()  # no search yet
    deadline = time.monotonic() + 30
    while session.index_cache_size_bytes() <= cached and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session.index_cache_size_bytes() > cached


def test_one_process_ingests_while_another_searches(s3, tmp_path):
    settings = load_settings({"MMSUPPORT_DB_DIR": "s3://shop/two"})
    Catalog.open(settings, create=True).ingest_csv(_csv(tmp_path / "first.csv", 0, 10), progress=False)
    reader = Catalog.open(settings)
    writer = subprocess.Popen([sys.executable, "-m", "mmsupport", "ingest", "--csv",
                               str(_csv(tmp_path / "more.csv", 100, 20)), "--db", "s3://shop/two", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    searches = 0
    while writer.poll() is None:
        found = reader.search("waterproof trail boot", mode="hybrid", k=5)
        assert len(found) == 5  # every search during the ingest sees a whole version
        searches += 1
    assert writer.returncode == 0, writer.stderr
    assert searches > 0
    deadline = time.monotonic() + 30
    while len(reader.view().dataset.to_table(columns=["id"])) < 30 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert {item.id for item in reader.search("Trail Boot 119", mode="fts", k=1)} == {"S0119"}


@pytest.mark.parametrize("uri, env, reason", [
    ("s3://no-such-bucket/db", {}, "the bucket does not exist"),
    ("s3://shop/db", {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}"}, "nothing answers"),
])
def test_storage_problems_are_named(s3, monkeypatch, uri, env, reason):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(CatalogError, match=f"{reason}.*AWS_ENDPOINT_URL"):
        Catalog.open(load_settings({"MMSUPPORT_DB_DIR": uri}))
