"""The llama.cpp runtime: a tiny random SmolVLM (Idefics3) converted to GGUF and run through the app's chat path, and
the per-host choice falling back to transformers."""

import json
import sys

import pytest
from PIL import Image

from mmsupport.config import REPO_DIR, load_settings
from mmsupport.errors import ModelUnavailable
from mmsupport.gguf import pre_tokenizer_name, weights_digest

pytestmark = pytest.mark.slow  # converts and loads models, runs subprocesses

PHOTO = REPO_DIR / "data" / "images" / "customer" / "sneaker_angle.png"


def llama_cpp_version() -> str:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed "
                                                        "(pip install -r requirements-llamacpp.txt)")
    return llama_cpp.__version__


@pytest.fixture(scope="session")
def converter(request):
    """llama.cpp's converter, fetched once per machine into pytest's cache the way the app fetches it."""
    from mmsupport.gguf import fetch_converter

    version = llama_cpp_version()
    source = request.config.cache.mkdir("llamacpp") / f"llama.cpp-{version}"
    return source if (source / "convert_hf_to_gguf.py").is_file() else fetch_converter(version, source)


@pytest.fixture(scope="session")
def gguf_settings(tiny_vlm_dir, converter, tmp_path_factory):
    return load_settings(model=str(tiny_vlm_dir), runtime="llamacpp", llamacpp_source=converter,
                         cache_dir=tmp_path_factory.mktemp("cache"), max_new_tokens=8)


@pytest.fixture(scope="session")
def gguf_vlm(gguf_settings):
    from mmsupport.vlm import load_vlm

    return load_vlm(gguf_settings)


def test_a_tokenizer_trained_here_is_read_as_gpt2_byte_level_and_others_are_refused(tiny_vlm_dir):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    assert pre_tokenizer_name(AutoTokenizer.from_pretrained(tiny_vlm_dir)) == "gpt-2"
    words = Tokenizer(models.BPE())
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    assert pre_tokenizer_name(PreTrainedTokenizerFast(tokenizer_object=words)) is None
    words.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False)])
    assert pre_tokenizer_name(PreTrainedTokenizerFast(tokenizer_object=words)) == "smollm"


def test_the_model_is_converted_once_into_the_cache_under_the_hash_of_its_weights(gguf_vlm, gguf_settings):
    from mmsupport.gguf import convert

    folder = gguf_settings.cache_dir / "gguf" / weights_digest(gguf_settings.model)[:20]
    text, mmproj = folder / "text-q8_0.gguf", folder / "mmproj-f16.gguf"
    assert gguf_vlm.runtime == "llamacpp" and gguf_vlm.name == gguf_settings.model
    assert text.stat().st_size > 0 and mmproj.stat().st_size > 0
    written = text.stat().st_mtime_ns, mmproj.stat().st_mtime_ns
    assert convert(gguf_settings.model, gguf_settings) == (text, mmproj)
    assert (text.stat().st_mtime_ns, mmproj.stat().st_mtime_ns) == written  # not converted again
    metadata = gguf_vlm.llama.metadata
    assert metadata["general.architecture"] == "llama" and metadata["tokenizer.ggml.pre"] == "gpt-2"


def test_streams_an_answer_about_a_photo_and_measures_it(gguf_vlm):
    message = {"role": "user", "content": [{"type": "image", "image": Image.open(PHOTO)},
                                           {"type": "text", "text": "What is this?"}]}
    pieces = list(gguf_vlm.stream([message], max_new_tokens=6))
    stats = gguf_vlm.last_stats
    assert 1 <= stats["decode_tokens"] <= 6 and stats["ttft_s"] > 0
    assert "".join(pieces) == gguf_vlm.generate([message], max_new_tokens=6)  # greedy: the same answer again


def test_closing_the_stream_stops_generation_and_frees_the_model(gguf_vlm):
    message = {"role": "user", "content": "Describe the red sneaker."}
    stream = gguf_vlm.stream([message], max_new_tokens=64)
    next(stream)
    stream.close()
    assert gguf_vlm.last_stats["decode_tokens"] < 64
    assert gguf_vlm.generate([message], max_new_tokens=3) is not None  # the lock was released


def test_a_photo_turn_runs_through_the_app_chat_with_one_vision_pass(gguf_vlm, sample_catalog_settings, tmp_path,
                                                                    monkeypatch):
    from mmsupport.app.chat import Chat
    from mmsupport.app.resources import Resources
    from mmsupport.catalog import Catalog
    from mmsupport.store import ConversationStore

    settings = load_settings(db_dir=sample_catalog_settings.db_dir, max_new_tokens=8)
    resources = Resources(settings, vlm=gguf_vlm, catalog=Catalog.open(settings))
    chat = Chat(settings, resources, ConversationStore(f"sqlite:///{tmp_path / 'conversations.db'}"))
    converted, images = gguf_vlm._messages, []

    def counting(messages):  # what llama.cpp is handed: count the images in each call
        sent = converted(messages)
        images.append(sum(part.get("type") == "image_url" for m in sent for part in m["content"]))
        return sent

    monkeypatch.setattr(gguf_vlm, "_messages", counting)
    message = {"text": "Do you sell these?", "files": [str(PHOTO)]}
    _, checked, _ = chat.attach(message, {})
    history, _, _, uploads = chat.add_message(message, [], checked)
    *_, (shown, cards, items, turns) = chat.respond(history, "hybrid", 5, "All", [], uploads)
    assert shown[-1]["role"] == "assistant" and shown[-1]["content"].strip()
    assert images == [1, 0]  # the describe call saw the photo, the answering call its description
    assert "on llamacpp" in resources.admin_status()


def test_auto_falls_back_to_transformers_when_llama_cpp_is_missing(tiny_vlm_dir, tmp_path, monkeypatch, caplog):
    from mmsupport.vlm import load_vlm

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if it were not installed: import fails
    with caplog.at_level("INFO", logger="mmsupport.vlm"):
        vlm = load_vlm(load_settings(model=str(tiny_vlm_dir), runtime="auto", cache_dir=tmp_path))
    assert vlm.runtime == "transformers"
    assert "llama.cpp is not installed" in vlm.runtime_note and "requirements-llamacpp.txt" in vlm.runtime_note
    assert "MMSUPPORT_RUNTIME=auto" in caplog.text
    with pytest.raises(ModelUnavailable, match="not installed"):
        load_vlm(load_settings(model=str(tiny_vlm_dir), runtime="llamacpp", cache_dir=tmp_path))


def test_auto_probes_once_per_cpu_and_falls_back_when_the_probe_crashes(gguf_settings, gguf_vlm, tmp_path):
    from mmsupport import llamacpp

    settings = load_settings(model=gguf_settings.model, runtime="auto", llamacpp_source=gguf_settings.llamacpp_source,
                             cache_dir=gguf_settings.cache_dir)
    record = settings.cache_dir / "runtime-probe.json"
    record.unlink(missing_ok=True)
    vlm, why = llamacpp.choose_runtime(settings, "cpu")
    assert vlm is not None and vlm.runtime == "llamacpp" and "tokens/s in its probe" in why
    verdict = json.loads(record.read_text())[llamacpp.cpu_signature()]
    assert verdict["ok"] and verdict["decode_tok_s"] > 0
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)  # a header and nothing else: llama.cpp refuses it in the subprocess
    failed = llamacpp.probe(broken, None)
    assert failed["ok"] is False and "probe crashed" in failed["reason"]
    record.write_text(json.dumps({llamacpp.cpu_signature(): failed}))
    vlm, why = llamacpp.choose_runtime(settings, "cpu")
    assert vlm is None and "probe crashed" in why and "cached for this CPU" in why
    assert llamacpp.choose_runtime(settings, "cuda") == (None, "transformers on cuda")
