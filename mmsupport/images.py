"""Safe image loading for uploads, catalog files and model inputs.

:func:`load_image` is the one door images come through. It refuses what it cannot use with an
:class:`~mmsupport.errors.InvalidInput` that says why (empty, not an image, truncated, too large, decompression bomb,
unsupported format, absurd aspect ratio) and normalises what it accepts: first frame of animations, EXIF orientation
applied, transparency flattened onto white, CMYK / 16-bit / palette converted to 8-bit RGB, downscaled to ``max_side``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from mmsupport.errors import InvalidInput

#: Formats we decode; anything else is refused before decoding.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
#: File name extensions of those formats.
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif"})
#: Largest encoded file accepted.
MAX_BYTES = 20 * 1024 * 1024
#: Largest decoded image accepted (width × height); above this a file is treated as a decompression bomb.
MAX_PIXELS = 40_000_000
#: Longest side over shortest side; beyond this an image is a strip or a line, not a photo.
MAX_ASPECT_RATIO = 20


#: Leading bytes of each format in FORMATS.
_SIGNATURES = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",), "GIF": (b"GIF87a", b"GIF89a")}


def sniff_format(head: bytes) -> str | None:
    """The format in :data:`FORMATS` that the first bytes of a file start with, or None: content, not the name, decides.

    >>> sniff_format(b"GIF89a..."), sniff_format(b"<svg xmlns=...")
    ('GIF', None)
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for name, starts in _SIGNATURES.items() if head.startswith(starts)), None)


def _read_bytes(source, max_bytes: int) -> bytes:
    if isinstance(source, str) and source.startswith("data:"):
        try:
            source = base64.b64decode(source.split(",", 1)[1], validate=True)
        except (IndexError, ValueError):
            raise InvalidInput("The image data URL is not valid base64.", hint="Send data:image/...;base64,...") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        where = "the uploaded image"
    else:
        path = Path(source)
        where = str(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise InvalidInput(f"Image file {where} does not exist.", hint="Check the path.") from None
        except OSError as error:
            raise InvalidInput(f"Cannot read image file {where}: {error.strerror}.", hint="Check the path.") from None
        if size > max_bytes:
            raise InvalidInput(
                f"Image file {where} is {size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB.",
                hint="Resize or re-save it as JPEG.",
            )
        data = path.read_bytes()
    if not data:
        raise InvalidInput(f"{where} is empty (0 bytes).", hint="Upload the photo again.")
    if len(data) > max_bytes:
        raise InvalidInput(
            f"The image is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB.",
            hint="Resize or re-save it as JPEG.",
        )
    return data


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, with transparency composited onto white and 16/32-bit samples scaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        image = image.point(lambda value: value / 256, "F").convert("L")  # "F" keeps 16-bit values unclipped
    elif image.mode == "I":
        image = image.point(lambda value: value / 256).convert("L")
    elif image.mode == "F":
        image = image.convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def _check_shape(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InvalidInput(
            f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} MP); the limit is "
            f"{max_pixels / 1e6:.0f} MP (very large images can be decompression bombs).",
            hint="Downscale it before uploading.",
        )
    if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise InvalidInput(
            f"The image is {width}×{height} pixels, an aspect ratio above {MAX_ASPECT_RATIO}:1.",
            hint="Crop it to the product before uploading.",
        )


def load_image(source: str | Path | bytes | Image.Image, *, max_side: int | None = None, max_bytes: int = MAX_BYTES,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (a path, a ``data:`` URL, raw bytes or a PIL image) defensively into an RGB image.

    ``max_side`` downscales (never upscales) so the longest side fits. Raises
    :class:`~mmsupport.errors.InvalidInput` with the reason and a fix when the input is unusable.

    >>> load_image(Image.new("RGBA", (800, 400)), max_side=200).size
    (200, 100)
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        data = _read_bytes(source, max_bytes)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _check_shape refuses those below
                image = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            raise InvalidInput(
                "The file is not an image in a supported format.", hint=f"Use one of: {', '.join(FORMATS)}."
            ) from None
        except Image.DecompressionBombError:
            raise InvalidInput("The image declares an enormous size (a decompression bomb).",
                               hint="Downscale it before uploading.") from None
    _check_shape(*image.size, max_pixels)
    if max_side and image.format == "JPEG":
        image.draft(None, (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale when that still covers max_side
    try:
        image.seek(0)  # first frame of a GIF / animated WebP
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InvalidInput(f"The image could not be decoded ({error}); the file is probably truncated or corrupt.",
                           hint="Upload the original file again.") from None
    image = _to_rgb(image)
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def image_digest(image: Image.Image) -> str:
    """SHA-256 of an image's decoded pixels, size and mode: the same picture gives the same digest."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def to_data_url(image: Image.Image, *, quality: int = 90) -> str:
    """An RGB image as a ``data:image/jpeg;base64,...`` URL, the form OpenAI-compatible servers accept."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def check_upload(path: str | Path, *, max_mb: float, max_side: int | None = None) -> Image.Image:
    """Decode and check an uploaded file once: an image by its content (not its name) within ``max_mb``.

    Returns the RGB image, downscaled to ``max_side``. Raises :class:`InvalidInput` naming the file and the reason.
    """
    path = Path(path)
    try:
        size_mb = path.stat().st_size / 2**20
    except OSError:
        raise InvalidInput(f"{path.name} could not be read.", hint="Attach the photo again.") from None
    if size_mb > max_mb:
        raise InvalidInput(f"{path.name} is {size_mb:.1f} MB, over the {max_mb:g} MB limit.",
                           hint="Upload a smaller or more compressed photo.")
    try:
        return load_image(path, max_side=max_side)
    except InvalidInput as error:
        raise InvalidInput(f"{path.name}: {error.message}", hint=error.hint) from None
