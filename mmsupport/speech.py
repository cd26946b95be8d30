"""Speech to text for voice questions: one small interface, a faster-whisper backend, safe audio loading.

:func:`load_audio` is the one door recordings come through: it checks a file by its content and its header (empty,
not audio, corrupt, over the size limit, longer than ``max_audio_seconds`` as declared, before decoding), then
decodes it with PyAV to 16 kHz mono, whatever its sample rate and channels, stopping as soon as it runs past the
limit (so a header that lies costs no more than the limit). Backends implement :meth:`ASR.transcribe_audio`;
:func:`load_asr` loads the configured one once per process. faster-whisper is imported only then, so the app starts
as fast with voice as without it.

>>> sniff_audio(b"RIFF\\x24\\x00\\x00\\x00WAVEfmt "), sniff_audio(b"hello")
('WAV', None)
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from mmsupport.config import Settings
from mmsupport.errors import InvalidInput, ModelUnavailable

#: File name extensions of the recordings we take.
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".ogg", ".oga", ".opus", ".webm", ".m4a"})
#: What a shopper is told about the formats.
AUDIO_FORMATS = "WAV, MP3, OGG/Opus, WebM or M4A"
#: Sample rate Whisper listens at.
SAMPLE_RATE = 16_000
#: Said when a recording holds no speech we could make out.
NOT_CAUGHT = "I didn't catch that."
NOT_CAUGHT_HINT = "Please try again a little closer to the microphone, or type your question."
#: Silence added before and after a recording: one that starts on its first word is misheard less with it.
EDGE_SILENCE_S = 0.3
#: Longest word-bias prompt passed to the model (Whisper keeps at most 223 prompt tokens).
MAX_PROMPT_CHARS = 600
#: Support words the catalog's own names do not carry, which tiny.en mishears without a hint.
SUPPORT_WORDS = ("order", "parcel", "refund", "return", "warranty", "delivery", "waterproof")


def sniff_audio(head: bytes) -> str | None:
    """The container a file's first bytes open, or None: WAV, MP3, OGG, WEBM (Matroska) or MP4 (M4A)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WEBM"
    if head[4:8] == b"ftyp":
        return "MP4"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    return None


@dataclass(frozen=True)
class Transcript:
    """What was said: ``text`` (empty when no speech was heard), ``language``, the audio's ``duration_s`` and the
    ``seconds`` transcription took."""

    text: str
    language: str
    duration_s: float
    seconds: float

    def to_dict(self) -> dict:
        return {"text": self.text, "language": self.language, "duration_s": round(self.duration_s, 3),
                "seconds": round(self.seconds, 3)}


def _unreadable(name: str) -> InvalidInput:
    return InvalidInput(f"{name} is not an audio recording we can read.",
                        hint=f"Send a recording in {AUDIO_FORMATS}.")


def _too_long(name: str, seconds: float, limit: float) -> InvalidInput:
    return InvalidInput(f"{name} is {seconds:.0f} seconds long, over the {limit:g}-second limit.",
                        hint="Send a shorter recording: one question at a time works best.")


def _declared_seconds(container, stream) -> float | None:
    """The duration the header declares, or None when it declares none (a live WebM recording)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _wav_declared_seconds(head: bytes) -> float | None:
    """The length a WAV header declares (data chunk size over byte rate), read from its first bytes."""
    import struct

    position, byte_rate = 12, None
    while position + 8 <= len(head):
        chunk, size = head[position:position + 4], struct.unpack("<I", head[position + 4:position + 8])[0]
        if chunk == b"fmt " and position + 20 <= len(head):
            byte_rate = struct.unpack("<I", head[position + 16:position + 20])[0]
        if chunk == b"data":
            return size / byte_rate if byte_rate else None
        position += 8 + size + size % 2
    return None


def _decode(container, stream, name: str, max_seconds: float):
    """The stream's samples at 16 kHz mono int16, decoding no further than ``max_seconds`` (then refused)."""
    import av
    import numpy as np

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks, samples, limit = [], 0, int((max_seconds + 0.5) * SAMPLE_RATE)
    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames, None)
        except av.error.InvalidDataError:  # damaged data after a good start: keep what decoded
            if not chunks:
                raise
            frame = None
        for out in resampler.resample(frame):  # None flushes the resampler
            chunks.append(out.to_ndarray().reshape(-1))
            samples += chunks[-1].size
        if samples > limit:
            raise _too_long(name, samples / SAMPLE_RATE, max_seconds)
        if frame is None:
            return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def load_audio(path: str | Path, *, max_seconds: float, max_mb: float):
    """Check and decode a recording to 16 kHz mono float32 samples (a numpy array).

    Raises :class:`InvalidInput` naming the file and the fix: empty, over ``max_mb``, not audio by its content,
    a header that cannot be read, or longer than ``max_seconds`` (declared in the header, or found while decoding).
    """
    import av
    import numpy as np

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            head = file.read(4096)
    except OSError:
        raise InvalidInput(f"{path.name} could not be read.", hint="Record or attach it again.") from None
    if size == 0:
        raise InvalidInput(f"{path.name} is empty (0 bytes).", hint="Record or attach it again.")
    if size > max_mb * 2**20:
        raise InvalidInput(f"{path.name} is {size / 2**20:.1f} MB, over the {max_mb:g} MB limit.",
                           hint="Send a shorter recording.")
    kind = sniff_audio(head)
    if kind is None:
        raise _unreadable(path.name)
    declared = _wav_declared_seconds(head) if kind == "WAV" else None
    if declared is not None and declared > max_seconds:
        raise _too_long(path.name, declared, max_seconds)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise _unreadable(path.name)
            stream = container.streams.audio[0]
            declared = _declared_seconds(container, stream)
            if declared is not None and declared > max_seconds:
                raise _too_long(path.name, declared, max_seconds)
            samples = _decode(container, stream, path.name, max_seconds)
    except (av.error.FFmpegError, OSError, ValueError):
        raise _unreadable(path.name) from None
    return samples.astype(np.float32) / 32768.0


def placement(cuda_devices: int) -> tuple[str, str]:
    """``(device, compute_type)`` for a host with ``cuda_devices`` GPUs: CUDA float16 on a GPU, else CPU int8.

    >>> placement(0), placement(1)
    (('cpu', 'int8'), ('cuda', 'float16'))
    """
    return ("cuda", "float16") if cuda_devices > 0 else ("cpu", "int8")


class ASR(ABC):
    """A speech recogniser."""

    #: Short name shown in the admin status and recorded with results.
    name: str = "asr"

    @abstractmethod
    def transcribe_audio(self, samples, *, language: str | None = None, prompt: str | None = None) -> Transcript:
        """What is said in ``samples`` (16 kHz mono float32); ``prompt`` names words to listen for."""

    def transcribe(self, path: str | Path, *, max_seconds: float, max_mb: float, language: str | None = None,
                   prompt: str | None = None) -> Transcript:
        """Check, decode and transcribe the file at ``path`` (see :func:`load_audio`)."""
        started = time.perf_counter()
        samples = load_audio(path, max_seconds=max_seconds, max_mb=max_mb)
        transcript = self.transcribe_audio(samples, language=language, prompt=prompt)
        return Transcript(transcript.text, transcript.language, transcript.duration_s,
                          time.perf_counter() - started)


class WhisperASR(ASR):
    """Whisper through faster-whisper (CTranslate2): any faster-whisper Hub id or CTranslate2 folder.

    ``device``/``compute_type`` default to :func:`placement` for this host (CPU int8, CUDA float16). Voice activity
    detection drops silence before decoding, so a recording without speech comes back with empty text.
    :data:`EDGE_SILENCE_S` of silence goes around the samples first (measured in the README's "Voice" section).
    """

    def __init__(self, model: str, *, device: str = "auto", compute_type: str = "auto", cpu_threads: int = 0,
                 beam_size: int = 5):
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError as error:
            raise ModelUnavailable(f"Voice needs faster-whisper ({error}).",
                                   hint="pip install -r requirements.txt, or set MMSUPPORT_ASR=off.") from None
        if device == "auto":
            device, auto_compute = placement(ctranslate2.get_cuda_device_count())
        else:
            auto_compute = placement(1 if device.startswith("cuda") else 0)[1]
        self.device, self.compute_type = device, auto_compute if compute_type == "auto" else compute_type
        self.name = "/".join(Path(model).parts[-2:]) if Path(model).is_dir() else model
        self.beam_size = beam_size
        try:
            self.model = WhisperModel(str(model), device=self.device, compute_type=self.compute_type,
                                      cpu_threads=cpu_threads)
        except Exception as error:  # missing folder, offline Hub id, broken weights
            reason = f"{type(error).__name__}: {str(error).rstrip('.')}"
            raise ModelUnavailable(f"Could not load the speech model {model}: {reason}.",
                                   hint="Set MMSUPPORT_ASR_MODEL to a CTranslate2 Whisper folder or a faster-whisper "
                                        "Hub id in the local cache, or MMSUPPORT_ASR=off.") from None

    def transcribe_audio(self, samples, *, language: str | None = None, prompt: str | None = None) -> Transcript:
        import numpy as np

        started = time.perf_counter()
        edge = int(EDGE_SILENCE_S * SAMPLE_RATE)
        segments, info = self.model.transcribe(np.pad(samples, edge), language=language, beam_size=self.beam_size,
                                               vad_filter=True, hotwords=prompt or None,
                                               condition_on_previous_text=False)
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return Transcript(text, info.language, len(samples) / SAMPLE_RATE, time.perf_counter() - started)


_LOADED: dict[tuple, ASR] = {}
_LOAD_LOCK = threading.Lock()


def load_asr(settings: Settings) -> ASR:
    """The speech model the settings name, loaded on first use and shared by every caller in the process.

    Raises :class:`ModelUnavailable` (nothing is cached then, so a later call can retry) or, when voice is off,
    :class:`InvalidInput`.
    """
    if not settings.asr:
        raise InvalidInput("Voice messages are turned off here.", hint="Please type your question.")
    with _LOAD_LOCK:
        if settings.asr_model not in _LOADED:
            _LOADED[settings.asr_model] = WhisperASR(settings.asr_model)
        return _LOADED[settings.asr_model]


#: Nouns said in the plural only.
PLURAL_ONLY = {"jeans", "trousers", "shorts", "leggings", "pants", "headphones", "earbuds", "glasses", "sunglasses"}


def singular(phrase: str) -> str:
    """A product type as a shopper says one of it: ``t-shirts`` -> ``t-shirt``, ``dresses`` -> ``dress``,
    ``hoodies`` -> ``hoodie``; ``jeans`` stays.

    >>> [singular(p) for p in ("fitness bands", "dresses", "hoodies", "jeans", "boots", "glass")]
    ['fitness band', 'dress', 'hoodie', 'jeans', 'boot', 'glass']
    """
    *head, last = phrase.split()
    if last.lower() not in PLURAL_ONLY and len(last) > 3:
        if last.endswith(("sses", "xes", "ches", "shes")):
            last = last[:-2]
        elif last.endswith("s") and not last.endswith("ss"):
            last = last[:-1]
    return " ".join([*head, last])


def catalog_prompt(catalog) -> str:
    """Words to listen for, from the catalog: categories, product types (singular) and brands, then
    :data:`SUPPORT_WORDS`; at most :data:`MAX_PROMPT_CHARS`. Read once per table version, so an ingest's new names
    count from the next recording on."""
    from mmsupport.catalog import TYPE_COLUMNS

    cache = catalog.view().cache
    if "speech_prompt" not in cache:
        names = list(catalog.distinct("category"))
        for column in TYPE_COLUMNS:
            names += [singular(value) for value in catalog.distinct(column, kind="product") if value.split()]
        names += catalog.distinct("brand", kind="product") + list(SUPPORT_WORDS)
        words, length = [], 0
        for name in dict.fromkeys(n.strip() for n in names if n.strip()):
            if length + len(name) + 2 > MAX_PROMPT_CHARS:
                break
            words.append(name)
            length += len(name) + 2
        cache["speech_prompt"] = ", ".join(words) + "." if words else ""
    return cache["speech_prompt"]
