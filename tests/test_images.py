"""load_image against a corpus of good and bad images generated here."""

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from mmsupport.errors import InvalidInput
from mmsupport.images import image_digest, load_image, to_data_url


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` × ``height`` pixels (valid CRC, so decoders believe it)."""
    data = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = bytearray(data[16:29])  # the 13-byte IHDR body after signature, length and type
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_supported_formats_decode_to_rgb(fmt):
    image = load_image(_encode(Image.new("RGB", (40, 30), (200, 10, 10)), fmt))
    assert image.mode == "RGB" and image.size == (40, 30)
    assert image.getpixel((20, 15))[0] > 150  # still red


def test_path_and_str_sources(tmp_path):
    path = tmp_path / "shoe.png"
    Image.new("RGB", (10, 10), "blue").save(path)
    assert load_image(path).getpixel((5, 5)) == (0, 0, 255)
    assert load_image(str(path)).size == (10, 10)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty"),
        (b"Hello, this is a text file that someone named photo.jpg\n" * 20, "not an image"),
        (_png_bomb(30000, 30000), "decompression bomb"),
        (_png_bomb(12000, 12000), "limit is 40 MP"),
        (_encode(Image.new("RGB", (10000, 10)), "PNG"), "aspect ratio"),
        (_encode(Image.new("RGB", (64, 64)), "BMP"), "not an image in a supported format"),
    ],
    ids=["zero-bytes", "text-named-jpg", "bomb-header", "too-many-pixels", "10000x10-strip", "bmp"],
)
def test_bad_images_are_refused_with_a_reason(payload, reason):
    with pytest.raises(InvalidInput, match=reason):
        load_image(payload)


def test_truncated_jpeg_is_refused():
    photo = Image.effect_noise((256, 256), 64).convert("RGB")
    data = _encode(photo, "JPEG", quality=95)
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_missing_and_oversized_files(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
    big = tmp_path / "big.png"
    big.write_bytes(_encode(Image.new("RGB", (8, 8)), "PNG") + b"\0" * 2048)
    with pytest.raises(InvalidInput, match="limit"):
        load_image(big, max_bytes=1024)


def test_cmyk_jpeg_is_converted():
    image = load_image(_encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"))
    assert image.mode == "RGB"
    red, green, blue = image.getpixel((8, 8))
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_png_is_scaled_not_clipped():
    gray16 = Image.new("I;16", (8, 8), 32768)  # half of 65535: mid grey, not white
    image = load_image(_encode(gray16, "PNG"))
    assert image.mode == "RGB"
    assert 120 <= image.getpixel((4, 4))[0] <= 135


def test_rgba_is_flattened_on_white():
    image = load_image(_encode(Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "PNG"))
    assert image.getpixel((4, 4)) == (255, 255, 255)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "lime", "blue")]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = load_image(data)
    red, green, blue = image.getpixel((10, 10))
    assert red > 200 and green < 50 and blue < 50


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red band on the left edge as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    loaded = load_image(_encode(image, "JPEG", exif=exif.tobytes()))
    assert loaded.size == (20, 60)
    assert loaded.getpixel((10, 3))[1] < 80  # the red band is now on top


def test_downscale_keeps_aspect_and_never_upscales():
    assert load_image(Image.new("RGB", (1000, 500)), max_side=200).size == (200, 100)
    assert load_image(Image.new("RGB", (100, 50)), max_side=200).size == (100, 50)


def test_digest_and_data_url():
    red, blue = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")
    assert image_digest(red) == image_digest(red.copy()) != image_digest(blue)
    url = to_data_url(red)
    assert url.startswith("data:image/jpeg;base64,")
    assert load_image(base64.b64decode(url.split(",", 1)[1])).size == (4, 4)
    assert load_image(url).size == (4, 4)
    with pytest.raises(InvalidInput, match="base64"):
        load_image("data:image/png;base64,@@@")
