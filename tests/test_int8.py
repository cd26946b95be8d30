"""The CPU default setting: int8 layers, fused shared-input products and fused RMSNorm against plain fp32."""

import copy

import pytest
import torch
from torch import nn

from mmsupport.int8 import FusedRMSNorm, Int8Linear, quantize_int8_dynamic
from tiny_models import ARCHS, build_tiny_vlm


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return ((approx - exact).norm() / exact.norm()).item()


@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_matches_fp32_within_quantization_error(bias):
    torch.manual_seed(0)
    linear, x = nn.Linear(64, 48, bias=bias), torch.randn(3, 5, 64)
    assert _relative_error(Int8Linear(linear.weight, linear.bias)(x), linear(x)) < 0.02


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(32, 32), nn.Linear(32, 16, bias=False), nn.Linear(32, 16)


def test_fused_projections_give_each_layer_its_own_output_in_any_call_order():
    torch.manual_seed(0)
    plain = _Attention()
    fused = quantize_int8_dynamic(copy.deepcopy(plain))
    assert not any(isinstance(m, nn.Linear) for m in fused.modules())
    x, y = torch.randn(2, 32), torch.randn(2, 32)
    calls = [("k_proj", x), ("q_proj", x), ("q_proj", y), ("v_proj", x), ("q_proj", x), ("k_proj", y)]
    for name, inputs in calls:
        assert _relative_error(getattr(fused, name)(inputs), getattr(plain, name)(inputs)) < 0.02, name


def test_rms_norm_is_fused_only_where_the_output_is_the_same():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    class GemmaStyleRMSNorm(nn.Module):  # scales by 1 + weight: must be left alone
        def __init__(self):
            super().__init__()
            self.weight, self.eps = nn.Parameter(torch.randn(16)), 1e-6

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1 + self.weight)

    model = nn.ModuleDict({"llama": LlamaRMSNorm(16), "gemma": GemmaStyleRMSNorm()})
    nn.init.normal_(model["llama"].weight)
    x = torch.randn(4, 16)
    expected = {name: norm(x) for name, norm in model.items()}
    quantize_int8_dynamic(model)
    assert isinstance(model["llama"], FusedRMSNorm) and isinstance(model["gemma"], GemmaStyleRMSNorm)
    torch.testing.assert_close(model["llama"](x), expected["llama"])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_int8_model_keeps_the_fp32_model_logits(tmp_path, arch):
    """The whole converted model (vision encoder and decoder) against fp32 on the same image and prompt."""
    from PIL import Image

    from mmsupport.vlm import TransformersVLM

    folder = build_tiny_vlm(tmp_path / arch, arch)
    fp32 = TransformersVLM(folder, quantization="none", device="cpu")
    int8 = TransformersVLM(folder, quantization="int8-dynamic", device="cpu")
    messages = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (64, 48), "teal")},
                                             {"type": "text", "text": "what is this?"}]}]
    inputs = fp32._inputs([messages], None)
    with torch.inference_mode():
        expected, got = fp32.model(**inputs).logits, int8.model(**inputs).logits
    assert _relative_error(got, expected) < 0.05
