"""The local transformers backend on tiny random VLMs of three architectures, through the user code path."""

import pytest
from PIL import Image

from mmsupport.config import load_settings
from mmsupport.errors import ModelUnavailable
from mmsupport.vlm import TransformersVLM, load_vlm
from tiny_models import ARCHS, build_tiny_vlm


@pytest.fixture(scope="module", params=ARCHS)
def tiny_dir(request, tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def vlm(tiny_dir):
    return load_vlm(load_settings({}, model=str(tiny_dir), quantization="none", max_new_tokens=12))


def _ask(text, colour="red", size=(64, 48)):
    return {"role": "user", "content": [{"type": "image", "image": Image.new("RGB", size, colour)},
                                        {"type": "text", "text": text}]}


class _CountCalls:
    """Wraps ``model.generate`` to count calls and record prompts and output lengths; generation is untouched."""

    def __init__(self, model):
        self.model, self.real, self.new_tokens, self.prompts = model, model.generate, [], []

    def __call__(self, **kwargs):
        output = self.real(**kwargs)
        self.prompts.append(kwargs["input_ids"])
        self.new_tokens.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    def __enter__(self):
        self.model.generate = self
        return self

    def __exit__(self, *exc):
        del self.model.generate


@pytest.mark.slow
def test_load_vlm_loads_once_per_process(tiny_dir, vlm):
    again = load_vlm(load_settings({}, model=str(tiny_dir), quantization="none", max_new_tokens=12))
    assert again is vlm
    assert isinstance(vlm, TransformersVLM) and vlm.name == str(tiny_dir) and vlm.supports_tools


@pytest.mark.slow
def test_describe_runs_the_model_once_per_image_and_prompt(vlm):
    photo = Image.new("RGB", (300, 200), (10, 120, 30))
    with _CountCalls(vlm.model) as calls:
        first = vlm.describe(photo)
        assert isinstance(first, str) and first
        assert vlm.describe(photo.copy()) == first  # same pixels: cached
        vlm.describe(photo, prompt="What colour is it?")  # new prompt: runs
        vlm.describe(Image.new("RGB", (300, 200), "blue"))  # new image: runs
    assert len(calls.new_tokens) == 3


@pytest.mark.slow
def test_chat_with_history_and_streaming_match(vlm):
    messages = [
        _ask("Is this shoe waterproof?"),
        {"role": "assistant", "content": "It looks like a canvas sneaker."},
        {"role": "user", "content": "And the price?"},
    ]
    pieces = list(vlm.stream(messages))
    assert len(pieces) >= 1
    assert "".join(pieces) == vlm.generate(messages)


@pytest.mark.slow
def test_closing_the_stream_stops_generation(vlm, monkeypatch):
    # No end-of-sequence token: a random model would otherwise stop at its own EOS, as soon as a cancelled run would
    monkeypatch.setattr(vlm.model.generation_config, "eos_token_id", None)
    with _CountCalls(vlm.model) as calls:
        full = vlm.generate([_ask("Tell me everything.")], max_new_tokens=400)
        stream = vlm.stream([_ask("Tell me everything.")], max_new_tokens=400)
        first = next(stream)
        stream.close()
    assert full.startswith(first)
    finished, cancelled = calls.new_tokens
    assert cancelled < finished


@pytest.mark.slow
def test_batch_matches_one_by_one(vlm):
    conversations = [[_ask("what is it?", "red")], [_ask("a much longer question about the product", "blue")],
                     [{"role": "user", "content": "text only, no image"}]]
    with _CountCalls(vlm.model) as calls:
        batch = vlm.generate_batch(conversations)
    assert len(calls.new_tokens) == 1  # one generate call for the whole batch
    assert batch == [vlm.generate(messages).strip() for messages in conversations]


@pytest.mark.slow
def test_tools_render_through_the_chat_template(vlm):
    tool = {"type": "function", "function": {"name": "search_catalog", "description": "Search products",
                                             "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}
    with _CountCalls(vlm.model) as calls:
        vlm.generate([_ask("find similar")], tools=[tool])
        vlm.generate([_ask("find similar")])
    with_tools, without = (vlm.tokenizer.decode(ids[0]) for ids in calls.prompts)
    assert '"name": "search_catalog"' in with_tools and '"description": "Search products"' in with_tools
    assert "search_catalog" not in without and "find similar" in without


@pytest.mark.slow
def test_int8_dynamic_quantization(tiny_dir):
    import torch

    from mmsupport.int8 import Int8Linear

    vlm = TransformersVLM(tiny_dir, quantization="int8-dynamic", max_new_tokens=6)
    assert any(isinstance(m, Int8Linear) for m in vlm.model.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in vlm.model.modules())
    with _CountCalls(vlm.model) as calls:
        text = vlm.describe(Image.new("RGB", (64, 64), "red"))
    assert calls.new_tokens[0] > 0 and text.strip()


@pytest.mark.slow
def test_4bit_bitsandbytes_load_on_cpu(tiny_dir):
    import copy

    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    vlm = TransformersVLM(tiny_dir, quantization="4bit", device="cpu", max_new_tokens=6)
    layers = [m for m in vlm.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers
    # What Linear4bit.forward does first on AVX-512-BF16 hosts, run here on any CPU: every layer must pack.
    for layer in layers:
        _convert_weight_packed_for_cpu(layer.weight.data.clone(), copy.deepcopy(layer.weight.quant_state))
    with _CountCalls(vlm.model) as calls:
        text = vlm.generate([_ask("what is it?")])
    assert calls.new_tokens[0] > 0 and text.strip()


@pytest.mark.slow
def test_4bit_refuses_layers_bitsandbytes_cannot_pack_on_cpu(tmp_path):
    narrow = build_tiny_vlm(tmp_path, "llava", width=32)
    with pytest.raises(ModelUnavailable, match=r"not a multiple of 64 inputs by 32 outputs.*int8-dynamic"):
        TransformersVLM(narrow, quantization="4bit", device="cpu")


@pytest.mark.slow
def test_lora_adapter_is_attached_at_load(tiny_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    lora = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")

    plain = TransformersVLM(tiny_dir, quantization="none")
    tuned = TransformersVLM(tiny_dir, adapter=tmp_path / "adapter", quantization="none")
    assert tuned.adapter == str(tmp_path / "adapter")
    inputs = plain.processor.apply_chat_template([_ask("hi")], add_generation_prompt=True, tokenize=True,
                                                 return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        assert not torch.allclose(plain.model(**inputs).logits, tuned.model(**inputs).logits)


def test_missing_model_says_how_to_fix(tmp_path):
    settings = load_settings({}, model=str(tmp_path / "no-such-model"))
    with pytest.raises(ModelUnavailable, match="MMSUPPORT_MODEL.*MMSUPPORT_BASE_URL"):
        load_vlm(settings)
    with pytest.raises(ModelUnavailable, match="MMSUPPORT_BASE_URL"):
        load_vlm(load_settings({}, backend="openai"))


@pytest.fixture
def unreachable_hub(monkeypatch):
    """The Hub endpoint refuses connections (a just-closed local port), as on a machine without network."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # (the test session sets it): the probe decides here
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return constants


@pytest.mark.slow
def test_hub_reachable_opens_a_connection_to_the_endpoint(unreachable_hub, monkeypatch):
    import socket

    from mmsupport.vlm import hub_reachable

    assert not hub_reachable()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(unreachable_hub, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable()
        monkeypatch.setattr(unreachable_hub, "HF_HUB_OFFLINE", True)
        assert not hub_reachable()


@pytest.mark.slow
def test_without_the_hub_a_model_id_loads_from_the_cache_or_fails_at_once(unreachable_hub, tmp_path, monkeypatch):
    with pytest.raises(ModelUnavailable, match="not in the local Hugging Face cache.*MMSUPPORT_MODEL"):
        TransformersVLM("mmsupport-tests/not-cached", quantization="none")
    repo = tmp_path / "hub" / "models--mmsupport-tests--tiny"
    snapshot = build_tiny_vlm(repo / "snapshots" / ("0" * 40), "llava")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(unreachable_hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    vlm = TransformersVLM("mmsupport-tests/tiny", quantization="none", max_new_tokens=4)
    folder = TransformersVLM(str(snapshot), quantization="none", max_new_tokens=4)
    assert vlm.generate([_ask("what is it?")]) == folder.generate([_ask("what is it?")])  # the cached weights


@pytest.mark.slow
def test_concurrent_first_use_loads_one_model(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    folder = build_tiny_vlm(tmp_path / "fresh", "llava")
    settings = load_settings({}, model=str(folder), quantization="none")
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: load_vlm(settings), range(4)))
    assert all(model is models[0] for model in models)


@pytest.mark.slow
def test_openai_style_image_parts_work_locally(vlm):
    from mmsupport.images import to_data_url

    url = to_data_url(Image.new("RGB", (64, 48), "red"))
    message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                           {"type": "text", "text": "What is this?"}]}
    assert vlm.generate([message]) == vlm.generate([_ask("What is this?")])


def test_auto_placement_on_cpu_and_bad_dtype():
    import torch

    from mmsupport.errors import InvalidInput
    from mmsupport.vlm import resolve_placement

    assert resolve_placement("cpu", "auto", "auto") == ("cpu", torch.float32, "int8-dynamic")
    assert resolve_placement("cpu", "bfloat16", "int8-dynamic") == ("cpu", torch.float32, "int8-dynamic")
    assert resolve_placement("cpu", "bfloat16", "none") == ("cpu", torch.bfloat16, "none")
    with pytest.raises(InvalidInput, match="MMSUPPORT_DTYPE"):
        resolve_placement("cpu", "float99", "none")
