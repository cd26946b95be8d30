"""Tiny random vision-language models for tests, built from configs in about a second, no download.

``build_tiny_vlm(path, arch)`` writes a folder that loads through the exact user code path::

    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)

The weights are random, so the text they generate is noise: tests check plumbing (shapes, streaming, batching,
caching, adapters), never quality. The tokenizer is a byte-level BPE trained on a few sentences, with a ChatML chat
template that renders images, history and tools.
"""

from __future__ import annotations

from pathlib import Path

ARCHS = ("idefics3", "llava", "qwen2_vl")
#: Hidden size of the tiny models: the narrowest that bitsandbytes can pack for its AVX-512-BF16 CPU kernel (4-bit
#: blocks of 64 input features), so 4-bit tests take the same path on every host.
WIDTH = 64

_CORPUS = [
    "The red sneaker has a white sole and blue laces.",
    "A black leather jacket with a torn left sleeve.",
    "My smartwatch shows a red light and will not charge.",
    "Return policy: items can be returned within 30 days with the receipt.",
    "Describe the product in the photo: colour, category and any damage.",
    "You are a helpful shopping assistant. Answer from the catalog and cite items as [id].",
    '{"name": "search_catalog", "arguments": {"query": "blue running shoes"}}',
    "0123456789 .,;:!?'\"()[]{}<>/-_+=*&%$#@",
]

# Placeholder each architecture's processor expands into its image tokens.
_IMAGE_PLACEHOLDER = {
    "idefics3": "<image>",
    "llava": "<image>",
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
}

_SPECIAL_TOKENS = {
    "idefics3": ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
    + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)],
    "llava": ["<image>"],
    "qwen2_vl": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
}

_CHAT_TEMPLATE = """{%- if tools %}<|im_start|>system
You can call tools. To call one, reply with <tool_call>{"name": NAME, "arguments": {...}}</tool_call>.
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}<|im_end|>
{% endif %}
{%- for message in messages %}<|im_start|>{{ message.role }}
{% if message.content is string %}{{ message.content }}{% else %}{% for part in message.content %}
{%- if part.type == 'image' %}IMAGE_PLACEHOLDER{% elif part.type == 'text' %}{{ part.text }}{% endif %}
{%- endfor %}{% endif %}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def train_tokenizer(arch: str, corpus: list[str] = _CORPUS, vocab_size: int = 400):
    """A byte-level BPE tokenizer (any text encodes) with ChatML and the architecture's image tokens. The default is
    tiny; a large ``corpus`` and ``vocab_size`` give realistic token counts (bench/labeling.py)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *_SPECIAL_TOKENS[arch]]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        padding_side="left",
        chat_template=_CHAT_TEMPLATE.replace("IMAGE_PLACEHOLDER", _IMAGE_PLACEHOLDER[arch]),
    )


def _text_config(tokenizer, width: int) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _idefics3(tokenizer, width: int):
    from transformers import Idefics3Config, Idefics3ImageProcessor, Idefics3Processor

    vision = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)
    config = Idefics3Config(
        vision_config=vision,
        text_config={"model_type": "llama", **_text_config(tokenizer, width)},
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, do_image_splitting=False
    )
    processor = Idefics3Processor(image_processor, tokenizer, image_seq_len=4, chat_template=tokenizer.chat_template)
    return config, processor


def _llava(tokenizer, width: int):
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaProcessor

    vision = dict(model_type="clip_vision_model", hidden_size=width, intermediate_size=2 * width,
                  num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8, projection_dim=width)
    config = LlavaConfig(
        vision_config=vision,
        text_config={"model_type": "llama", **_text_config(tokenizer, width)},
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor, tokenizer, patch_size=8, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=tokenizer.chat_template)
    return config, processor


def _qwen2_vl(tokenizer, width: int):
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    text = _text_config(tokenizer, width)
    # head_dim width/2 -> width/4 rotary frequencies, split over (temporal, height, width)
    quarter = width // 4
    sections = [quarter - 2 * (quarter * 3 // 8), quarter * 3 // 8, quarter * 3 // 8]
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections}
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=dict(depth=2, embed_dim=width, hidden_size=width, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    # 56x56 pixels -> 4x4 patches -> 4 image tokens after the 2x2 merge.
    pixels = {"min_pixels": 56 * 56, "max_pixels": 56 * 56}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
        chat_template=tokenizer.chat_template,
    )
    return config, processor


def build_tiny_vlm(path: str | Path, arch: str = "idefics3", width: int = WIDTH) -> Path:
    """Save a tiny random VLM of ``arch`` (one of :data:`ARCHS`) with its processor to ``path``; return the path.

    ``width`` is the hidden size of the text and vision towers (MLPs are twice as wide)."""
    import torch
    from transformers import AutoModelForImageTextToText

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; use one of {ARCHS}")
    path = Path(path)
    tokenizer = train_tokenizer(arch)
    config, processor = {"idefics3": _idefics3, "llava": _llava, "qwen2_vl": _qwen2_vl}[arch](tokenizer, width)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


#: Image–text architectures :func:`build_tiny_image_model` builds.
IMAGE_ARCHS = ("clip", "siglip")


def build_tiny_image_model(path: Path, arch: str = "clip", *, image_size: int = 64, seed: int = 0) -> Path:
    """Write a tiny random CLIP or SigLIP (model + processor) to ``path``; it loads with ``AutoModel`` +
    ``AutoProcessor`` like ``openai/clip-vit-base-patch32``. Identical pixels still give identical vectors, so an
    exact catalog picture finds its own row whatever the weights; another ``seed`` gives another model."""
    import torch
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, SiglipConfig,
                              SiglipImageProcessor, SiglipModel, SiglipProcessor, SiglipTextConfig,
                              SiglipVisionConfig)

    torch.manual_seed(seed)
    path = Path(path)
    tokenizer = train_tokenizer("llava")
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=32, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=8)
    if arch == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        images = CLIPImageProcessor(size={"shortest_edge": image_size},
                                    crop_size={"height": image_size, "width": image_size})
        processor = CLIPProcessor(image_processor=images, tokenizer=tokenizer)
    elif arch == "siglip":
        model = SiglipModel(SiglipConfig(text_config=SiglipTextConfig(**text).to_dict(),
                                         vision_config=SiglipVisionConfig(**vision).to_dict()))
        images = SiglipImageProcessor(size={"height": image_size, "width": image_size})
        processor = SiglipProcessor(image_processor=images, tokenizer=tokenizer)
    else:
        raise ValueError(f"unknown image architecture {arch!r}; use one of {IMAGE_ARCHS}")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
