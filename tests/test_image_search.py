"""Image search: image vectors at ingest, photo → products, model records and refusals, degraded mode, bad photos.

The image–text models are tiny random CLIP/SigLIP folders built here (tests/tiny_models.py): identical pixels give
identical vectors whatever the weights, so an exact catalog picture must find its own row; nothing else about
quality is tested.
"""

import io
import json
import shutil
from collections import Counter

import numpy as np
import onnx
import pytest
from PIL import Image

from mmsupport.catalog import Catalog
from mmsupport.config import SAMPLE_DATA_DIR, load_settings
from mmsupport.errors import CatalogError, InvalidInput, ModelUnavailable
from mmsupport.image_embeddings import ImageEmbedder
from mmsupport.retrieval import fuse_ranks
from mmsupport.vector_models import KEY, recorded
from test_catalog import ROWS, write_csv
from tiny_models import build_tiny_image_model

#: Products of the sample catalog used as query photos (the first 50).
SAMPLE = 50


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, colour in [("p1.png", (20, 20, 20)), ("p2.png", (30, 60, 220))]:
        Image.new("RGB", (48, 48), colour).save(folder / name)
    return folder


def shop(tmp_path, model, table="shop") -> Catalog:
    settings = load_settings(db_dir=tmp_path / "db", table=table, image_embedding_model=str(model))
    return Catalog.open(settings, create=True)


def image_vectors(catalog) -> dict:
    rows = catalog.table.to_lance().to_table(columns=["id", "image_vector"]).to_pylist()
    return {row["id"]: row["image_vector"] for row in rows}


def jpeg(path, quality: int = 70) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_ingest_writes_an_image_vector_per_picture_and_records_both_models(image_catalog_settings, tiny_clip_dir):
    catalog = Catalog.open(image_catalog_settings)
    rows = catalog.table.to_lance().to_table(columns=["id", "kind", "image", "image_vector"]).to_pylist()
    with_picture = [row for row in rows if row["image"]]
    assert len(with_picture) >= SAMPLE
    assert all(row["image_vector"] is not None for row in with_picture)
    assert all(row["image_vector"] is None for row in rows if not row["image"])  # help articles have no picture
    vector = np.array(with_picture[0]["image_vector"])
    assert abs(np.linalg.norm(vector) - 1) < 1e-4
    models = recorded(catalog.table.to_lance().schema)
    assert models["image_vector"]["model"] == str(tiny_clip_dir)
    assert models["image_vector"]["fingerprint"] == catalog.image_embedder.fingerprint
    assert models["vector"]["fingerprint"] == catalog.embedder.fingerprint
    assert catalog.get(with_picture[0]["id"]).attributes.keys().isdisjoint({"image_vector", "image_digest"})


def test_an_exact_catalog_picture_finds_its_own_product_first(image_catalog_settings):
    catalog = Catalog.open(image_catalog_settings)
    found = catalog.search("", mode="image", image=SAMPLE_DATA_DIR / "images" / "P0007.png", k=3)
    assert found[0].id == "P0007"
    assert found[0].score == pytest.approx(1.0, abs=1e-4)


def test_own_pictures_reencoded_as_jpeg_rank_first_for_at_least_90_percent(image_catalog_settings, capsys):
    catalog = Catalog.open(image_catalog_settings)
    products = [item for item in (catalog.get(f"P{n:04d}") for n in range(1, SAMPLE + 1)) if item and item.image]
    assert len(products) == SAMPLE
    first = [catalog.search("", mode="image", image=jpeg(item.image), k=1)[0].id == item.id for item in products]
    share = sum(first) / len(first)
    with capsys.disabled():
        print(f"\n[image search] own picture (JPEG q70) at rank 1: {sum(first)}/{len(first)} = {share:.0%}")
    assert share >= 0.9


def test_words_search_the_pictures_with_a_clip_text_tower(image_catalog_settings):
    catalog = Catalog.open(image_catalog_settings)
    found = catalog.search("red sneakers with white soles", mode="image", k=5)
    assert len(found) == 5 and all(item.image for item in found)


def test_a_photo_in_hybrid_mode_brings_its_product_in_even_with_unrelated_words(image_catalog_settings):
    catalog = Catalog.open(image_catalog_settings)
    words = catalog.search("return policy", mode="hybrid", k=5)
    assert "P0007" not in [item.id for item in words]
    fused = catalog.search("return policy", mode="hybrid", image=SAMPLE_DATA_DIR / "images" / "P0007.png", k=5)
    ids = [item.id for item in fused]
    assert "P0007" in ids[:2]
    assert words[0].id in ids  # the words' best match (a help article, no picture) keeps its place in the list


def test_rank_fusion_puts_rows_both_sides_found_first():
    fused = fuse_ranks(["a1", "both", "a2"], ["both", "p1", "p2"])
    assert fused[0][0] == "both"
    assert [item for item, _ in fused[1:3]] == ["a1", "p1"] or [item for item, _ in fused[1:3]] == ["p1", "a1"]
    assert {item for item, _ in fused} == {"a1", "a2", "both", "p1", "p2"}


def test_unchanged_pictures_are_not_embedded_again(tmp_path, images, tiny_clip_dir, monkeypatch):
    catalog = shop(tmp_path, tiny_clip_dir)
    catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)
    before = image_vectors(catalog)
    embedded = []
    real = ImageEmbedder.embed_images
    monkeypatch.setattr(ImageEmbedder, "embed_images",
                        lambda self, pictures, **kw: embedded.append(len(pictures)) or real(self, pictures, **kw))
    changed = [row[:] for row in ROWS]
    changed[0][5] += " Now with a longer strap."  # p1's text changes, its picture does not
    catalog.ingest_csv(write_csv(tmp_path / "b.csv", changed), images_dir=images, progress=False)
    assert embedded == []
    assert image_vectors(catalog)["p1"] == before["p1"]
    Image.new("RGB", (48, 48), (200, 30, 30)).save(images / "p2.png")  # p2's picture changes
    catalog.ingest_csv(write_csv(tmp_path / "b.csv", changed), images_dir=images, progress=False)
    assert embedded == [1]
    after = image_vectors(catalog)
    assert after["p2"] != before["p2"] and after["p1"] == before["p1"] and after["p3"] is None


def test_a_table_without_image_vectors_gets_them_on_the_next_ingest(tmp_path, images, tiny_clip_dir):
    plain = shop(tmp_path, "off")
    plain.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)
    assert "image_vector" not in plain.table.schema.names
    assert plain.image_status.startswith("off")
    catalog = shop(tmp_path, tiny_clip_dir)
    report = catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)
    assert report.updated == 3
    assert {k for k, v in image_vectors(catalog).items() if v is not None} == {"p1", "p2"}
    assert catalog.search("", mode="image", image=images / "p2.png", k=1)[0].id == "p2"


def test_another_image_model_is_refused_for_queries_and_ingest(tmp_path, images, tiny_clip_dir):
    catalog = shop(tmp_path, tiny_clip_dir)
    catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)
    other = build_tiny_image_model(tmp_path / "other_clip", "clip", seed=1)
    stranger = shop(tmp_path, other)
    with pytest.raises(CatalogError, match="MMSUPPORT_IMAGE_EMBEDDING_MODEL=") as refused:
        stranger.search("", mode="image", image=images / "p1.png")
    assert str(tiny_clip_dir) in str(refused.value)
    with pytest.raises(CatalogError, match="cannot be compared"):
        stranger.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)


def test_a_query_with_another_text_embedder_is_refused(tmp_path, images):
    catalog = shop(tmp_path, "off")
    catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)
    models = recorded(catalog.table.to_lance().schema)
    assert models["vector"]["fingerprint"] == catalog.embedder.fingerprint
    models["vector"].update(model="some/other-embedder", fingerprint="0123456789abcdef")
    catalog.table.to_lance().update_schema_metadata({KEY: json.dumps(models)})  # as if another model built it
    reader = Catalog.open(load_settings(db_dir=tmp_path / "db", table="shop", image_embedding_model="off"))
    with pytest.raises(CatalogError, match="MMSUPPORT_EMBEDDING_MODEL=some/other-embedder"):
        reader.search("smartwatch", mode="hybrid")
    assert reader.search("smartwatch", mode="fts")[0].id == "p1"  # keyword search uses no vectors


def test_without_the_model_ingest_and_text_search_carry_on_and_photos_are_refused_clearly(tmp_path, images, caplog):
    catalog = shop(tmp_path, tmp_path / "no-such-model")
    report = catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)
    assert report.added == 3
    assert "image_vector" not in catalog.table.schema.names
    assert catalog.image_status.startswith("unavailable") and "no-such-model" in catalog.image_status
    assert "Image search is off" in caplog.text
    assert catalog.search("smartwatch", mode="hybrid")[0].id == "p1"
    with pytest.raises(ModelUnavailable, match="MMSUPPORT_IMAGE_EMBEDDING_MODEL"):
        catalog.search("smartwatch", image=images / "p1.png")


@pytest.mark.parametrize("photo, reason", [(b"", "empty"), (b"not an image at all", "not an image"),
                                           (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image|truncated|corrupt")])
def test_bad_query_photos_get_the_usual_clear_errors(image_catalog_settings, photo, reason):
    catalog = Catalog.open(image_catalog_settings)
    with pytest.raises(InvalidInput, match=reason):
        catalog.search("", mode="image", image=photo)


def test_a_search_needs_words_or_a_photo(image_catalog_settings):
    with pytest.raises(InvalidInput, match="neither words nor a photo"):
        Catalog.open(image_catalog_settings).search("  ", mode="image")


def test_a_tiny_siglip_works_the_same_way(tmp_path, images):
    siglip = build_tiny_image_model(tmp_path / "siglip", "siglip")
    catalog = shop(tmp_path, siglip)
    catalog.ingest_csv(write_csv(tmp_path / "a.csv", ROWS), images_dir=images, progress=False)
    assert catalog.search("", mode="image", image=images / "p1.png", k=1)[0].id == "p1"
    assert len(catalog.search("black smartwatch", mode="image", k=2)) == 2


def test_a_pictures_vector_does_not_depend_on_the_pictures_embedded_with_it(tiny_clip_dir):
    embedder = ImageEmbedder(str(tiny_clip_dir))
    pictures = [SAMPLE_DATA_DIR / "images" / f"P{n:04d}.png" for n in (1, 30, 60)]
    alone = embedder.embed_images(pictures[:1])[0]
    assert np.array_equal(embedder.embed_images(pictures)[0], alone)
    assert np.array_equal(embedder.embed_query(pictures[0]), alone)


@pytest.mark.parametrize("arch", ["clip", "siglip"])
def test_photos_are_rescaled_and_normalised_as_the_models_processor_does(tmp_path, arch):
    embedder = ImageEmbedder(str(build_tiny_image_model(tmp_path / arch, arch)), runtime="torch")
    photo = Image.open(SAMPLE_DATA_DIR / "images" / "P0001.png").convert("RGB")
    expected = embedder.processor(images=[photo], return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(embedder._pixels([photo]).numpy(), expected, atol=1e-6)


def test_a_sentence_transformers_clip_folder_loads_its_transformers_model(tmp_path, tiny_clip_dir):
    folder = tmp_path / "st-clip"
    shutil.copytree(tiny_clip_dir, folder / "0_CLIPModel")
    (folder / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "0_CLIPModel", "type": "sentence_transformers.models.CLIPModel"}]))
    picture = SAMPLE_DATA_DIR / "images" / "P0001.png"
    assert np.array_equal(ImageEmbedder(str(folder)).embed_query(picture),
                          ImageEmbedder(str(tiny_clip_dir)).embed_query(picture))


@pytest.mark.parametrize("quantization", ["none", "int8-dynamic"])
def test_the_image_tower_on_onnx_runtime_gives_the_vectors_pytorch_gives(tmp_path, tiny_clip_dir, quantization):
    pictures = [SAMPLE_DATA_DIR / "images" / f"P{n:04d}.png" for n in (1, 30, 60)]
    onnx = ImageEmbedder(str(tiny_clip_dir), quantization=quantization, runtime="onnx", cache_dir=tmp_path)
    torch = ImageEmbedder(str(tiny_clip_dir), quantization=quantization, runtime="torch")
    assert (onnx.runtime, torch.runtime) == ("onnx", "torch")
    vectors = onnx.embed_images(pictures)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * torch.embed_images(pictures)).sum(axis=1).min() > (0.9999 if quantization == "none" else 0.99)
    assert onnx.fingerprint == torch.fingerprint  # the table records the weights, whatever runs them


def test_the_image_tower_export_is_cached_and_a_broken_one_falls_back_to_pytorch(tmp_path, tiny_clip_dir):
    cache = tmp_path / "cache"
    picture = SAMPLE_DATA_DIR / "images" / "P0001.png"
    first = ImageEmbedder(str(tiny_clip_dir), runtime="onnx", cache_dir=cache)
    exported = sorted((cache / "onnx").iterdir())
    assert [path.name.split(".", 1)[1] for path in exported] == ["image.int8.onnx", "image.onnx"]  # no partials
    operators = Counter(node.op_type for node in onnx.load(str(exported[0])).graph.node)
    assert operators["QAttention"] == first.model.config.vision_config.num_hidden_layers  # fused, int8
    assert "Conv" not in operators  # the patch embedding is an int8 matrix product too
    assert "SkipLayerNormalization" not in operators and operators["LayerNormalization"] > 0  # the faster kernels
    stamps = [path.stat().st_mtime_ns for path in exported]
    again = ImageEmbedder(str(tiny_clip_dir), runtime="onnx", cache_dir=cache)
    assert again.runtime == "onnx" and [path.stat().st_mtime_ns for path in exported] == stamps
    assert np.array_equal(again.embed_query(picture), first.embed_query(picture))
    (tmp_path / "broken" / "onnx").parent.mkdir()
    (tmp_path / "broken" / "onnx").write_text("a file where the export folder should be")
    fallback = ImageEmbedder(str(tiny_clip_dir), runtime="onnx", cache_dir=tmp_path / "broken")
    assert fallback.runtime == "torch"
    assert float(fallback.embed_query(picture) @ first.embed_query(picture)) > 0.99
