"""Audio files for the voice tests: real speech from Debian's espeak-ng, tones, and re-encodings through PyAV."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest


def say(text: str, path: Path, *, voice: str = "en-gb", speed: int = 150) -> Path:
    """A WAV of espeak-ng saying ``text`` (22.05 kHz mono); skips the test when espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    """Write float samples in [-1, 1] as 16-bit PCM, the same signal on every channel."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(pcm[:, None], channels, axis=1).tobytes())
    return path


def tone(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    """A quiet 440 Hz tone."""
    t = np.arange(int(seconds * rate)) / rate
    return write_wav(path, 0.3 * np.sin(2 * np.pi * 440 * t), rate, channels)


def resample(source: Path, path: Path, rate: int, channels: int) -> Path:
    """``source`` (a WAV) at another sample rate and channel count, by linear interpolation."""
    with wave.open(str(source)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2") / 32768
        old_rate = wav.getframerate()
    times = np.arange(int(len(samples) * rate / old_rate)) / rate
    return write_wav(path, np.interp(times, np.arange(len(samples)) / old_rate, samples), rate, channels)


def encode(source: Path, path: Path, codec: str, container: str | None = None, repeat: int = 1) -> Path:
    """``source`` re-encoded with PyAV (``libmp3lame``, ``libopus``, ``aac``), ``repeat`` times over."""
    import av

    with av.open(str(source)) as inp, av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=48000)
        frames = list(inp.decode(audio=0))
        for _ in range(repeat):
            for frame in frames:
                frame.pts = None
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
