"""The llama.cpp runtime: a tiny random SmolVLM (Idefics3) converted to GGUF and run through the app's chat path, and
the per-host choice falling back to transformers."""

import json
import sys

import pytest
from PIL import Image

from mmsupport.config import REPO_DIR, load_settings
from mmsupport.errors import ModelUnavailable
from mmsupport.gguf import pre_tokenizer_name, weights_digest
from mmsupport.host import cpu_signature

pytestmark = pytest.mark.slow  # converts and loads models, runs subprocesses

PHOTO = REPO_DIR / "data" / "images" / "customer" / "sneaker_angle.png"
IMAGE_TOKENS = 4  # per image in the tiny model (tests/tiny_models.py: image_seq_len=4, no splitting)


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
    from mmsupport.llamacpp import build_tuning

    text_type = build_tuning()[0]
    folder = gguf_settings.cache_dir / "gguf" / weights_digest(gguf_settings.model)[:20]
    text, mmproj = folder / f"text-{text_type}.gguf", folder / "mmproj-f16.gguf"
    assert gguf_vlm.runtime == "llamacpp" and gguf_vlm.name == gguf_settings.model
    assert gguf_vlm.vision is not None  # a transformers model: its own vision encoder, one pass per image
    assert text.stat().st_size > 0 and mmproj.stat().st_size > 0
    written = text.stat().st_mtime_ns, mmproj.stat().st_mtime_ns
    assert convert(gguf_settings.model, gguf_settings, text_type=text_type) == (text, mmproj)
    assert (text.stat().st_mtime_ns, mmproj.stat().st_mtime_ns) == written  # not converted again
    metadata = gguf_vlm.llama.metadata
    assert metadata["general.architecture"] == "llama" and metadata["tokenizer.ggml.pre"] == "gpt-2"
    choices = json.loads((gguf_settings.cache_dir / "runtime-choices.json").read_text())
    (flash,) = [verdict["chosen"] for choice, verdict in choices.items() if choice.startswith("llama.cpp flash")]
    assert bool(gguf_vlm.llama.context_params.flash_attn_type) == (flash == "on")  # as timed on this CPU


def test_flash_attention_is_timed_once_per_cpu_and_model_and_the_verdict_kept(gguf_vlm, tmp_path):
    from mmsupport.llamacpp import flash_attention

    text = gguf_vlm.llama.model_path
    first = flash_attention(text, tmp_path)
    record = tmp_path / "runtime-choices.json"
    ((choice, verdict),) = json.loads(record.read_text()).items()
    assert verdict["chosen"] == ("on" if first else "off") and set(verdict["seconds"]) == {"on", "off"}
    record.write_text(json.dumps({choice: {**verdict, "chosen": "off" if first else "on"}}))
    assert flash_attention(text, tmp_path) is not first  # read back, not timed again


def test_bf16_weights_and_flash_attention_where_the_build_has_avx512_bf16_kernels_without_amx():
    from mmsupport.llamacpp import build_tuning

    avx2 = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
    assert build_tuning(avx2) == ("q8_0", False)
    assert build_tuning(avx2.replace("AVX2 = 1", "AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1")) == ("q8_0", False)
    assert build_tuning(avx2.replace("AVX2 = 1", "AVX2 = 1 | AVX512 = 1 | AVX512_BF16 = 1")) == ("bf16", True)
    amx = avx2.replace("AVX2 = 1", "AVX2 = 1 | AVX512 = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1")
    assert build_tuning(amx) == ("q8_0", False)  # its bf16 decodes at half q8_0's speed


def test_a_build_with_amx_int8_kernels_loads_weights_off_them_and_still_answers(gguf_vlm, monkeypatch):
    import llama_cpp

    import mmsupport.llamacpp as llamacpp

    amx = llamacpp.build_features() + " AMX_INT8 = 1 |"  # as a build for an AMX CPU lists its kernels
    monkeypatch.setattr(llamacpp, "build_features", lambda: amx)
    vlm = llamacpp.LlamaCppVLM(gguf_vlm.llama.model_path, None, context_tokens=512)
    assert vlm.llama.model_params.use_extra_bufts is False
    vlm.generate([{"role": "user", "content": "Is this jacket waterproof?"}], max_new_tokens=4)
    assert vlm.last_stats["decode_tokens"] >= 1
    assert llama_cpp.llama_model_default_params().use_extra_bufts  # only that load was changed
    assert gguf_vlm.llama.model_params.use_extra_bufts  # the build without them keeps its repacked weights


def test_streams_an_answer_about_a_photo_and_measures_it(gguf_vlm):
    message = {"role": "user", "content": [{"type": "image", "image": Image.open(PHOTO)},
                                           {"type": "text", "text": "What is this?"}]}
    pieces = list(gguf_vlm.stream([message], max_new_tokens=6))
    stats = gguf_vlm.last_stats
    assert 1 <= stats["decode_tokens"] <= 6 and stats["ttft_s"] > 0
    assert "".join(pieces) == gguf_vlm.generate([message], max_new_tokens=6)  # greedy: the same answer again


def test_llama_cpps_own_projector_path_answers_and_its_failures_are_clear(gguf_settings):
    import dataclasses

    from mmsupport.vlm import load_vlm

    vlm = load_vlm(dataclasses.replace(gguf_settings, llamacpp_vision="mtmd"))
    assert vlm.vision is None and vlm.sees_images
    assert list(vlm.stream([{"role": "user", "content": "What is this?"}], max_new_tokens=4))
    assert vlm.last_stats["decode_tokens"] >= 1
    # llama.cpp's Idefics3 image markup needs a "\n\n" token, which the tiny tokenizer never learnt: a clear error
    message = {"role": "user", "content": [{"type": "image", "image": Image.open(PHOTO)},
                                           {"type": "text", "text": "What is this?"}]}
    with pytest.raises(ModelUnavailable, match="llama.cpp failed while answering"):
        list(vlm.stream([message], max_new_tokens=4))


@pytest.mark.parametrize("text_type, flash_attn, tolerance", [("f16", False, 0.02), ("bf16", True, 0.05)])
def test_the_image_embeddings_land_where_transformers_puts_them(gguf_settings, text_type, flash_attn, tolerance):
    """f16 (or bf16 with flash attention) GGUF + the fp32 PyTorch vision encoder: the next-token logits after a photo
    prompt are transformers' fp32 logits within the weights' rounding."""
    import numpy as np
    import torch

    from mmsupport.gguf import convert
    from mmsupport.llamacpp import LlamaCppVLM
    from mmsupport.llamacpp_vision import TorchVision, eval_with_embeddings
    from mmsupport.vlm import TransformersVLM

    text, mmproj = convert(gguf_settings.model, gguf_settings, text_type=text_type)
    vision = TorchVision(gguf_settings.model, precision="float32")
    vlm = LlamaCppVLM(text, mmproj, vision=vision, context_tokens=1024, flash_attn=flash_attn)
    message = [{"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "image", "image": PHOTO},
                                            {"type": "text", "text": "What colour is the sole?"}]}]
    ids, rows = vision.prompt(message, None)
    assert ids.count(vision.image_token_id) == len(rows) > 0
    eval_with_embeddings(vlm.llama, ids, vision.image_token_id, rows)
    ours = np.ctypeslib.as_array(vlm.llama._ctx.get_logits(), shape=(vlm.llama.n_vocab(),)).copy()
    reference = TransformersVLM(gguf_settings.model, quantization="none")
    inputs = reference._inputs([message], None)
    assert inputs["input_ids"][0].tolist() == ids  # the same prompt, tokens and image placeholders alike
    with torch.inference_mode():
        expected = reference.model(**inputs).logits[0, -1].numpy()
    error = np.abs(ours[:len(expected)] - expected).max()
    assert error < tolerance * (expected.max() - expected.min())
    text_only = [i for i in ids if i != vision.image_token_id]  # without the photo the logits are further off
    eval_with_embeddings(vlm.llama, text_only, vision.image_token_id, None)
    blind = np.ctypeslib.as_array(vlm.llama._ctx.get_logits(), shape=(vlm.llama.n_vocab(),))
    assert np.abs(blind[:len(expected)] - expected).max() > 3 * error


def test_the_vision_encoder_runs_in_the_precision_fastest_here_each_seeing_what_fp32_sees(gguf_settings, tmp_path):
    import numpy as np

    from mmsupport.llamacpp_vision import PRECISIONS, TorchVision, fastest_vision

    chosen = fastest_vision(gguf_settings.model, image_max_side=512, cache_dir=tmp_path)
    record = tmp_path / "runtime-choices.json"
    ((choice, verdict),) = json.loads(record.read_text()).items()
    assert chosen.precision == verdict["chosen"] and set(verdict["seconds"]) == set(PRECISIONS)
    other = next(p for p in PRECISIONS if p != chosen.precision)
    record.write_text(json.dumps({choice: {**verdict, "chosen": other}}))
    assert fastest_vision(gguf_settings.model, image_max_side=512, cache_dir=tmp_path).precision == other  # kept
    message = [{"role": "user", "content": [{"type": "image", "image": PHOTO}, {"type": "text", "text": "Hi"}]}]
    exact = TorchVision(gguf_settings.model, precision="float32").prompt(message, None)[1]
    for precision in PRECISIONS:
        rows = TorchVision(gguf_settings.model, precision=precision).prompt(message, None)[1]
        cosines = (rows * exact).sum(1) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(exact, axis=1))
        assert rows.dtype == np.float32 and cosines.min() > 0.99, (precision, cosines)


def test_a_beginning_that_prompts_share_is_evaluated_once_and_changes_no_logit(gguf_settings, monkeypatch):
    """The system prompt every answering call starts with: kept after the second prompt that shares it, restored for
    the third and fourth (with a photo after it, too), each prompt's logits the same as evaluated from scratch."""
    import llama_cpp
    import numpy as np

    from mmsupport.gguf import convert
    from mmsupport.llamacpp import LlamaCppVLM
    from mmsupport.llamacpp_vision import MIN_SHARED_TOKENS, PrefixCache, TorchVision, eval_with_embeddings

    vision = TorchVision(gguf_settings.model)
    vlm = LlamaCppVLM(*convert(gguf_settings.model, gguf_settings), vision=vision, context_tokens=2048)
    system = {"role": "system", "content": "You help the customers of a shop with their orders and returns. " * 30}
    prefixes = PrefixCache()
    decoded = []  # tokens and image embeddings that went through llama.cpp's decoder
    decode = llama_cpp.llama_decode

    def counting(ctx, batch):
        decoded.append(batch.n_tokens)
        return decode(ctx, batch)

    for module in (llama_cpp, llama_cpp.llama_cpp):  # the package (image embeddings) and its bindings (Llama.eval)
        monkeypatch.setattr(module, "llama_decode", counting)

    def evaluate(question: str, photo: bool, cache: PrefixCache | None):
        content = [{"type": "image", "image": PHOTO}] if photo else []
        ids, rows = vision.prompt([system, {"role": "user", "content": [*content, {"type": "text", "text": question}]}],
                                  None)
        decoded.clear()
        eval_with_embeddings(vlm.llama, ids, vision.image_token_id, rows, cache)
        logits = np.ctypeslib.as_array(vlm.llama._ctx.get_logits(), shape=(vlm.llama.n_vocab(),)).copy()
        return logits, sum(decoded), len(ids)

    shared = None
    for turn, (question, photo) in enumerate([("Do you sell red sneakers?", False), ("Where is my parcel?", False),
                                              ("Can I return these?", True), ("How long is the warranty?", False)]):
        logits, evaluated, length = evaluate(question, photo, prefixes)
        fresh, evaluated_fresh, _ = evaluate(question, photo, None)
        np.testing.assert_array_equal(logits, fresh)
        assert evaluated_fresh == length
        if turn < 2:
            assert evaluated == length  # the first prompt has nothing to share; the second keeps what it shares
        else:
            assert evaluated == length - shared, turn
        if turn == 1:
            shared = len(next(iter(prefixes.states)))
            assert shared >= MIN_SHARED_TOKENS


def test_closing_the_stream_stops_generation_and_frees_the_model(gguf_vlm):
    message = {"role": "user", "content": "Describe the red sneaker."}
    stream = gguf_vlm.stream([message], max_new_tokens=64)
    next(stream)
    stream.close()
    assert gguf_vlm.last_stats["decode_tokens"] < 64
    assert gguf_vlm.generate([message], max_new_tokens=3) is not None  # the lock was released


def test_a_process_holding_the_model_until_it_exits_ends_without_a_traceback(gguf_settings):
    import subprocess

    from mmsupport.gguf import convert

    text_gguf, mmproj = convert(gguf_settings.model, gguf_settings)
    # held by a module imported before llama_cpp, as a serving process's model cache is: cleared after llama_cpp's
    # globals at exit, when llama-cpp-python's own finaliser can no longer free the model
    script = ("import json; from mmsupport.llamacpp import LlamaCppVLM; "
              f"json.kept = LlamaCppVLM({str(text_gguf)!r}, {str(mmproj)!r}, context_tokens=512)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def test_a_photo_turn_runs_through_the_app_chat_with_one_vision_pass(gguf_vlm, sample_catalog_settings, tmp_path,
                                                                    monkeypatch):
    from mmsupport.app.chat import Chat
    from mmsupport.app.resources import Resources
    from mmsupport.catalog import Catalog
    from mmsupport.store import ConversationStore

    settings = load_settings(db_dir=sample_catalog_settings.db_dir, max_new_tokens=8)
    resources = Resources(settings, vlm=gguf_vlm, catalog=Catalog.open(settings))
    chat = Chat(settings, resources, ConversationStore(f"sqlite:///{tmp_path / 'conversations.db'}"))
    encode, images = gguf_vlm.vision.prompt, []

    def counting(messages, tools):  # what the vision encoder is handed: the images of each call
        ids, rows = encode(messages, tools)
        images.append(ids.count(gguf_vlm.vision.image_token_id) // IMAGE_TOKENS)
        return ids, rows

    monkeypatch.setattr(gguf_vlm.vision, "prompt", counting)
    message = {"text": "Do you sell sneakers like these?", "files": [str(PHOTO)]}  # names a catalog type
    _, checked, _ = chat.attach(message, {})
    history, _, _, uploads = chat.add_message(message, [], checked)
    *_, (shown, cards, items, turns) = chat.respond(history, "hybrid", 5, "All", [], uploads)
    assert shown[-1]["role"] == "assistant" and shown[-1]["content"].strip()
    assert images[0] == 1 and len(images) > 1 and not any(images[1:])  # described once, then answered from that
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
    verdict = json.loads(record.read_text())[cpu_signature(llama_cpp_version(), llamacpp.build_features())]
    assert verdict["ok"] and verdict["decode_tok_s"] > 0
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)  # a header and nothing else: llama.cpp refuses it in the subprocess
    failed = llamacpp.probe(broken, None)
    assert failed["ok"] is False and "probe crashed" in failed["reason"]
    record.write_text(json.dumps({cpu_signature(llama_cpp_version(), llamacpp.build_features()): failed}))
    vlm, why = llamacpp.choose_runtime(settings, "cpu")
    assert vlm is None and "probe crashed" in why and "cached for this CPU" in why
    assert llamacpp.choose_runtime(settings, "cuda") == (None, "transformers on cuda")
