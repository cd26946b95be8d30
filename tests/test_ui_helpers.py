"""The app's building blocks that need no server: upload checks, citation links, cards, zip extraction."""

import zipfile
from types import SimpleNamespace

import pytest
from PIL import Image

from mmsupport.app.admin import extract_images
from mmsupport.app.views import caption, link_citations, step_message
from mmsupport.config import load_settings
from mmsupport.errors import InvalidInput
from mmsupport.images import check_upload


@pytest.fixture
def settings(tmp_path):
    return load_settings(db_dir=tmp_path / "db", max_upload_mb=0.5, image_max_side=64)


def validate_upload(path, settings):
    return check_upload(path, max_mb=settings.max_upload_mb, max_side=settings.image_max_side)


def test_validate_upload_accepts_an_image(tmp_path, settings):
    path = tmp_path / "shoe.png"
    Image.new("RGB", (200, 100), "red").save(path)
    image = validate_upload(path, settings)
    assert image.mode == "RGB" and max(image.size) <= 64


def test_validate_upload_rejects_other_types_by_content(tmp_path, settings):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(InvalidInput, match="notes.txt: The file is not an image"):
        validate_upload(path, settings)
    disguised = tmp_path / "page.png"
    disguised.write_text("<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")
    with pytest.raises(InvalidInput, match="page.png: The file is not an image"):
        validate_upload(disguised, settings)


def test_validate_upload_judges_a_photo_by_its_content_not_its_name(tmp_path, settings):
    path = tmp_path / "photo.download"
    Image.new("RGB", (30, 20), "blue").save(path, format="PNG")
    assert validate_upload(path, settings).size == (30, 20)


def test_validate_upload_rejects_big_files(tmp_path, settings):
    path = tmp_path / "huge.png"
    Image.effect_noise((600, 600), 80).convert("RGB").save(path)  # noise does not compress: about 0.7 MB
    with pytest.raises(InvalidInput, match=r"huge.png is 0\.\d MB, over the 0.5 MB limit"):
        validate_upload(path, settings)


def test_validate_upload_rejects_a_fake_image(tmp_path, settings):
    path = tmp_path / "fake.png"
    path.write_bytes(b"<script>alert(1)</script>")
    with pytest.raises(InvalidInput, match="fake.png: "):
        validate_upload(path, settings)


def test_citations_link_to_their_item_by_id_not_by_card_position():
    items = [SimpleNamespace(id="P001"), SimpleNamespace(id="A7")]
    answer = "Try [P001] or see [A7]; [X9] was not retrieved and [see below] is prose."
    assert link_citations(answer, items) == (
        "Try [[P001]](#item-P001) or see [[A7]](#item-A7); [X9] was not retrieved and [see below] is prose.")
    assert link_citations("See [A7].", items[::-1]) == link_citations("See [A7].", items)


def test_card_captions_name_title_colour_and_price_and_no_score():
    product = SimpleNamespace(id="P9", kind="product", title="Trail Boot", colour="brown", price=89.5, score=1.93)
    article = SimpleNamespace(id="A2", kind="article", title="Returns", colour=None, price=None, score=0.4)
    assert caption(product) == "Trail Boot · brown · 89.50 · P9"
    assert caption(article) == "Returns · help article · A2"


def test_long_search_queries_are_shortened_in_step_titles():
    step = SimpleNamespace(tool="search_catalog", arguments={"query": "boots " * 800}, result_ids=["P1"],
                           seconds=0.1, error=None)
    title = step_message(step)["metadata"]["title"]
    assert len(title) < 100 and "…" in title


def test_zip_extraction_keeps_only_images_without_paths(tmp_path):
    archive = tmp_path / "images.zip"
    png = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(png)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(png, "../../escape.png")
        zf.write(png, "nested/dir/b.png")
        zf.writestr("/etc/cron.d/evil", "* * * * * root rm -rf /")
        zf.writestr("readme.txt", "not an image")
        zf.writestr("..\\..\\windows.png", png.read_bytes())
    folder = extract_images(str(archive), tmp_path / "out")
    assert folder == tmp_path / "out"
    written = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["a.png", "b.png", "escape.png", "images.zip", "windows.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["b.png", "escape.png", "windows.png"]


def test_zip_extraction_rejects_a_broken_zip(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not really")
    with pytest.raises(InvalidInput, match="bad.zip is not a valid zip file"):
        extract_images(str(bad), tmp_path)


