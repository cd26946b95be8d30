"""Voice messages in the chat handlers, without a browser: a spoken question runs as if typed and is marked as
spoken, Undo gives the transcript back to correct, silence and bad recordings get a reason under the box."""

import dataclasses
from types import SimpleNamespace

import gradio as gr
import pytest
from fakes import ScriptedVLM
from speech_audio import say, write_wav

from mmsupport.app import voice
from mmsupport.app.chat import Chat
from mmsupport.app.resources import Resources
from mmsupport.app.uploads import AUDIO_KIND, upload_check, upload_problem
from mmsupport.config import REPO_DIR, load_settings
from mmsupport.store import ConversationStore

PHOTO = REPO_DIR / "data" / "images" / "customer" / "watch_red_light.png"


def make_chat(settings, tmp_path):
    from mmsupport.catalog import Catalog

    vlm = ScriptedVLM(default="The best match is [A001].", description="a smartwatch with a red light")
    return Chat(settings, Resources(settings, vlm=vlm, catalog=Catalog.open(settings)),
                ConversationStore(f"sqlite:///{tmp_path / 'conversations.db'}"))


@pytest.fixture(scope="module")
def chat(sample_catalog_settings, tmp_path_factory):
    settings = load_settings(db_dir=sample_catalog_settings.db_dir, max_upload_mb=2)
    return make_chat(settings, tmp_path_factory.mktemp("voice_chat"))


def send(chat, message: dict, history=(), uploads=None):
    """Attach and send a message as the page does: ``(history, box, notice, uploads)``."""
    box, checked, notice = chat.attach(message, dict(uploads or {}))
    uploads = checked if isinstance(checked, dict) else dict(uploads or {})
    if isinstance(notice, gr.Markdown) and notice.visible:
        return list(history), box, notice, uploads
    return chat.add_message(message, list(history), uploads)


# -- quick: no model --------------------------------------------------------------------------------------------


def test_uploads_take_recordings_by_content_and_only_with_voice_on():
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00"
    kinds = upload_check(load_settings({})).kwargs["kinds"]
    assert AUDIO_KIND in kinds and upload_problem("question.wav", wav, kinds) is None
    assert upload_problem("question.webm", b"\x1a\x45\xdf\xa3\x01", kinds) is None
    assert "not an image" in upload_problem("notes.wav", b"just some text", kinds)
    assert "or an audio recording (WAV" in upload_problem("notes.wav", b"just some text", kinds)
    assert upload_problem("page.html", wav, kinds) is not None  # a recording's bytes under another name
    off = upload_check(load_settings({"MMSUPPORT_ASR": "off"})).kwargs["kinds"]
    assert AUDIO_KIND not in off and upload_problem("question.wav", wav, off) is not None


def test_the_message_box_has_a_microphone_only_with_voice_on():
    assert voice.textbox_options(load_settings({}))["sources"] == ["upload", "microphone"]
    assert ".webm" in voice.textbox_options(load_settings({}))["file_types"]
    assert voice.textbox_options(load_settings({"MMSUPPORT_ASR": "off"}))["sources"] == ["upload"]


def test_a_bad_recording_is_dropped_when_attached_and_the_photo_stays(chat, tmp_path):
    fake = tmp_path / "question.wav"
    fake.write_text("this is text, not a recording")
    box, uploads, notice = chat.attach({"text": "", "files": [str(PHOTO), str(fake)]}, {})
    assert [f["orig_name"] for f in box.value["files"]] == [PHOTO.name] and list(uploads) == [str(PHOTO)]
    assert "question.wav is not an audio recording we can read" in notice.value
    assert chat.resources.asr_state == "idle"  # nothing to transcribe: the model is not loaded


def test_with_voice_off_a_recording_is_refused_in_plain_words(sample_catalog_settings, tmp_path):
    settings = load_settings(db_dir=sample_catalog_settings.db_dir, asr=False)
    off = make_chat(settings, tmp_path)
    recording = write_wav(tmp_path / "q.wav", [0.0] * 1600, 16000)
    _box, _uploads, notice = off.attach({"text": "hi", "files": [str(recording)]}, {})
    assert "Voice messages are turned off here. Please type your question." in notice.value
    assert off.resources.asr_state == "off" and "Voice:** off" in off.resources.admin_status()


def test_the_spoken_mark_is_not_part_of_the_question():
    history = [{"role": "user", "content": voice.mark("is it waterproof?", True)}]
    from mmsupport.app.chat import last_user_turn

    assert history[0]["content"].startswith(voice.SPOKEN)
    assert last_user_turn(history)[1] == "is it waterproof?"


# -- slow: the real speech model --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    return say("My watch button is flashing red. What does that mean?",
               tmp_path_factory.mktemp("voice") / "recording.wav")


@pytest.mark.slow
def test_a_spoken_question_with_a_photo_runs_as_if_typed_and_undo_gives_the_words_back(chat, spoken):
    message = {"text": "", "files": [str(PHOTO), str(spoken)]}
    history, box, notice, uploads = send(chat, message)
    assert not notice.visible and box.value == {"text": "", "files": []}
    said = history[-1]["content"]
    assert said.startswith(voice.SPOKEN) and "flashing red" in said.lower(), said
    assert history[0]["content"] == {"path": str(PHOTO)}  # the photo, as when typed
    *_, (shown, _cards, items, turns) = chat.respond(history, "hybrid", 5, "All", [], uploads)
    assert "A001" in [item.id for item in items] and "(#item-A001)" in shown[-1]["content"]
    asked = chat.resources.vlm.answer_calls[-1]["messages"][-1]["content"]
    asked = asked if isinstance(asked, str) else " ".join(p.get("text", "") for p in asked)
    assert "flashing red" in asked.lower() and voice.SPOKEN not in asked and "smartwatch with a red light" in asked
    question = next(i for i in range(len(shown) - 1, -1, -1) if shown[i]["role"] == "user")
    _, _, box, _, _ = chat.undo(shown, turns, SimpleNamespace(index=question))
    assert box.value["text"] == said.removeprefix(voice.SPOKEN)  # the words as heard, which differ by CPU
    assert [f["orig_name"] for f in box.value["files"]] == [PHOTO.name]
    assert chat.resources.asr_state == "ready" and "Voice:** speech model" in chat.resources.admin_status()


@pytest.mark.slow
def test_silence_gets_i_didnt_catch_that_and_nothing_is_searched(chat, tmp_path):
    quiet = write_wav(tmp_path / "quiet.wav", [0.0] * 48000, 16000)
    before = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]
    calls = len(chat.resources.vlm.calls)
    shown, box, notice, _uploads = send(chat, {"text": "", "files": [str(PHOTO), str(quiet)]}, before)
    assert shown is gr.skip() or shown == gr.skip()
    assert "I didn&#x27;t catch that" in notice.value or "I didn't catch that" in notice.value
    assert [f["orig_name"] for f in box.value["files"]] == [PHOTO.name]  # the photo stays, the silence goes
    assert len(chat.resources.vlm.calls) == calls


@pytest.mark.slow
def test_a_speech_model_that_cannot_load_is_reported_and_typing_still_works(sample_catalog_settings, tmp_path,
                                                                           spoken):
    settings = dataclasses.replace(load_settings(db_dir=sample_catalog_settings.db_dir),
                                   asr_model=str(tmp_path / "no-such-model"))
    broken = make_chat(settings, tmp_path)
    _shown, _box, notice, _uploads = send(broken, {"text": "", "files": [str(spoken)]})
    assert "Voice messages are not available right now. Please type your question." in notice.value
    assert broken.resources.asr_state == "unavailable" and broken.resources.state == "unavailable"
    assert broken.resources.shopper_status() == ("Voice messages are not available right now: please type your "
                                                 "question.")
    assert "no-such-model" in broken.resources.admin_status()
    history, _, notice, _ = send(broken, {"text": "my watch flashes red", "files": []})
    assert history[-1]["content"] == "my watch flashes red" and not notice.visible
