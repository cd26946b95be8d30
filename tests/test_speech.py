"""Speech to text: audio checks and decoding (quick), and real espeak-ng speech through the bundled Whisper tiny.en
(slow), in every format the chat takes, at odd sample rates and channel counts, and with silence."""

import struct

import numpy as np
import pytest
from speech_audio import encode, resample, say, tone, write_wav

from mmsupport.config import load_settings
from mmsupport.errors import InvalidInput
from mmsupport.speech import SAMPLE_RATE, catalog_prompt, load_audio, placement, sniff_audio

LIMITS = {"max_seconds": 60, "max_mb": 10}
QUESTION = "My watch button is flashing red. What does that mean?"


def words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


# -- checks and decoding (no model) -------------------------------------------------------------------------------


def test_a_tone_at_any_rate_and_channel_count_decodes_to_16_khz_mono(tmp_path):
    for rate, channels in [(16000, 1), (8000, 2), (11025, 6), (96000, 1)]:
        samples = load_audio(tone(tmp_path / f"t{rate}.wav", 1.0, rate, channels), **LIMITS)
        assert samples.dtype == np.float32 and abs(len(samples) - SAMPLE_RATE) <= 16, (rate, channels)
        assert 0.25 < np.abs(samples).max() <= 0.31  # the tone's level, not summed over channels


@pytest.mark.parametrize("codec, container, suffix", [("libmp3lame", None, ".mp3"), ("libopus", "ogg", ".ogg"),
                                                      ("libopus", "webm", ".webm"), ("aac", "mp4", ".m4a")])
def test_compressed_formats_decode(tmp_path, codec, container, suffix):
    source = tone(tmp_path / "t.wav", 2.0, 44100)
    samples = load_audio(encode(source, tmp_path / f"t{suffix}", codec, container), **LIMITS)
    assert abs(len(samples) / SAMPLE_RATE - 2.0) < 0.1 and np.abs(samples).max() > 0.2


def _refusal(path) -> str:
    with pytest.raises(InvalidInput) as error:
        load_audio(path, **LIMITS)
    return str(error.value)


def test_bad_audio_is_refused_with_the_fix(tmp_path):
    (tmp_path / "notes.wav").write_text("this is a text file, not a recording")
    assert "notes.wav is not an audio recording we can read. Send a recording in WAV" in _refusal(
        tmp_path / "notes.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    assert "empty.wav is empty (0 bytes)" in _refusal(tmp_path / "empty.wav")
    good = tone(tmp_path / "good.wav", 1.0).read_bytes()
    (tmp_path / "corrupt.wav").write_bytes(good[:20] + b"\xff" * 16 + good[36:])  # the fmt chunk's fields
    assert "corrupt.wav is not an audio recording we can read" in _refusal(tmp_path / "corrupt.wav")
    (tmp_path / "cut.wav").write_bytes(good[:30])
    assert "cut.wav is not an audio recording" in _refusal(tmp_path / "cut.wav")
    (tmp_path / "big.wav").write_bytes(good + b"\0" * (11 * 2**20))
    assert "big.wav is 11.0 MB, over the 10 MB limit" in _refusal(tmp_path / "big.wav")


def test_length_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    import av

    long = tone(tmp_path / "long.wav", 61, rate=8000)
    bomb = bytearray(tone(tmp_path / "bomb.wav", 1.0).read_bytes())  # 1 s of data, declaring 37 hours
    bomb[4:8], bomb[40:44] = struct.pack("<I", 0xFFFFFF24), struct.pack("<I", 0xFFFFFF00)
    (tmp_path / "bomb.wav").write_bytes(bomb)
    monkeypatch.setattr(av.container.InputContainer, "decode", lambda *a, **k: pytest.fail("decoded"))
    assert "long.wav is 61 seconds long, over the 60-second limit. Send a shorter recording" in _refusal(long)
    assert "bomb.wav is 134218 seconds long, over the 60-second limit" in _refusal(tmp_path / "bomb.wav")


def test_length_without_a_header_is_checked_while_decoding(tmp_path):
    # A WebM as browsers record it declares no duration; decoding stops at the limit.
    source = tone(tmp_path / "t.wav", 5.0, 48000)
    long = encode(source, tmp_path / "long.webm", "libopus", "webm", repeat=13)
    assert "long.webm is 6" in _refusal(long) and "over the 60-second limit" in _refusal(long)


def test_sniffing_uses_content_not_names():
    assert sniff_audio(b"OggS\0\2") == "OGG" and sniff_audio(b"\x1a\x45\xdf\xa3\x9f") == "WEBM"
    assert sniff_audio(b"\0\0\0\x20ftypM4A ") == "MP4" and sniff_audio(b"ID3\4\0") == "MP3"
    assert sniff_audio(b"\x89PNG\r\n\x1a\n") is None and sniff_audio(b"RIFF\0\0\0\0WEBPVP8 ") is None


def test_placement_is_cpu_int8_without_a_gpu_and_cuda_float16_with_one():
    assert placement(0) == ("cpu", "int8")
    assert placement(2) == ("cuda", "float16")


def test_voice_settings_come_from_the_environment():
    settings = load_settings({"MMSUPPORT_ASR": "off", "MMSUPPORT_MAX_AUDIO_SECONDS": "30",
                              "MMSUPPORT_ASR_MODEL": "Systran/faster-whisper-small"})
    assert (settings.asr, settings.max_audio_seconds, settings.asr_model) == (False, 30.0,
                                                                              "Systran/faster-whisper-small")
    assert load_settings({}).asr and load_settings({}).max_audio_seconds == 60


def test_the_prompt_holds_the_catalogs_words_and_follows_an_ingest(sample_catalog_settings, tmp_path):
    import dataclasses
    import shutil

    from mmsupport.catalog import Catalog

    shutil.copytree(sample_catalog_settings.db_dir, tmp_path / "db")
    catalog = Catalog.open(dataclasses.replace(sample_catalog_settings, db_dir=tmp_path / "db"))
    prompt = catalog_prompt(catalog)
    for word in ("backpack", "smartwatch", "t-shirt", "fitness band", "Pulse", "Kestrel Denim", "troubleshooting",
                 "parcel"):
        assert word in prompt.split(", ") or word + "." in prompt.split(", "), word
    assert "backpacks" not in prompt.split(", ") and "jeans" in prompt.split(", ") and len(prompt) <= 600
    csv = tmp_path / "new.csv"
    csv.write_text("id,title,category,subcategory,brand,description\n"
                   "Z1,Glacier Parka,apparel,parkas,Zephyrine,A very warm parka.\n")
    catalog.ingest_csv(csv, images_dir=tmp_path)
    assert "Zephyrine" in catalog_prompt(catalog) and "parka" in catalog_prompt(catalog)


# -- the real model ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asr():
    from mmsupport.speech import load_asr

    return load_asr(load_settings())


@pytest.fixture(scope="module")
def question(tmp_path_factory):
    return say(QUESTION, tmp_path_factory.mktemp("speech") / "question.wav")


@pytest.mark.slow
@pytest.mark.parametrize("form", ["wav", "8k_stereo", "48k_6ch", "mp3", "ogg", "webm", "m4a"])
def test_real_speech_is_transcribed_in_every_format(asr, question, tmp_path, form):
    path = {"wav": lambda: question,
            "8k_stereo": lambda: resample(question, tmp_path / "q.wav", 8000, 2),
            "48k_6ch": lambda: resample(question, tmp_path / "q.wav", 48000, 6),
            "mp3": lambda: encode(question, tmp_path / "q.mp3", "libmp3lame"),
            "ogg": lambda: encode(question, tmp_path / "q.ogg", "libopus", "ogg"),
            "webm": lambda: encode(question, tmp_path / "q.webm", "libopus", "webm"),
            "m4a": lambda: encode(question, tmp_path / "q.m4a", "aac", "mp4")}[form]()
    transcript = asr.transcribe(path, **LIMITS)
    heard = words(transcript.text)
    assert {"watch", "flashing", "red", "mean"} <= set(heard), transcript.text
    assert transcript.language == "en" and 2 < transcript.duration_s < 8 and transcript.seconds > 0


@pytest.mark.slow
def test_silence_and_a_tone_are_heard_as_nothing(asr, tmp_path):
    quiet = asr.transcribe(write_wav(tmp_path / "quiet.wav", np.zeros(3 * 16000), 16000), **LIMITS)
    assert quiet.text == "" and quiet.duration_s == 3.0  # the recording's length, without the silence added around it
    assert asr.transcribe(tone(tmp_path / "tone.wav", 3.0), **LIMITS).text == ""


@pytest.mark.slow
def test_the_model_is_loaded_once_per_process(asr):
    from mmsupport.speech import load_asr

    assert load_asr(load_settings()) is asr and asr.device == "cpu" and asr.compute_type == "int8"


@pytest.mark.slow
def test_a_missing_model_folder_says_how_to_fix_it(tmp_path):
    from mmsupport.errors import ModelUnavailable
    from mmsupport.speech import load_asr

    with pytest.raises(ModelUnavailable, match="MMSUPPORT_ASR_MODEL"):
        load_asr(load_settings(asr_model=str(tmp_path / "no-such-model")))


@pytest.mark.slow
def test_the_transcribe_command_prints_one_record_per_file_and_fails_on_bad_ones(question, tmp_path, capsys):
    from mmsupport.__main__ import main

    (tmp_path / "notes.wav").write_text("not audio")
    code = main(["transcribe", str(question), str(tmp_path / "notes.wav"), "--json", "--db", str(tmp_path / "none")])
    first, second = [__import__("json").loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 2 and not (tmp_path / "none").exists()
    assert {"watch", "flashing", "red"} <= set(words(first["text"])) and first["language"] == "en"
    assert first["duration_s"] > 2 and first["seconds"] > 0 and first["file"] == str(question)
    assert "not an audio recording" in second["error"]
    assert main(["transcribe", str(question), "--language", "en"]) == 0
    assert "flashing red" in capsys.readouterr().out.lower()
