"""int8 dynamic quantization, the CPU default (:data:`mmsupport.vlm.CPU_AUTO_QUANTIZATION`).

Every ``nn.Linear`` gets int8 weights (one scale per output row) and quantizes its input on the fly, per call, with
the fbgemm kernel behind ``torch.ao``'s dynamic quantization. Decoding one token at a time calls each layer with a
single row, so per-call costs decide the speed, and this module keeps them low:

- layers that read the same input (an attention's q/k/v projections, an MLP's gate/up projections) are fused into
  one product whose output they split, so SmolVLM-256M makes 4 int8 calls per decoder layer instead of 7;
- the kernel is called directly rather than through ``torch.ao``'s module, whose Python wrapper costs about as much
  as a small layer's arithmetic;
- RMSNorm layers run as torch's fused ``rms_norm`` (one call instead of several), where that gives the same output.

bench/vlm.py measures the result against plain fp32 and checks its greedy tokens against fp32's.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

#: Sibling layers fused when all are plain ``nn.Linear`` with the same input size (the names transformers uses).
SHARED_INPUT_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def available() -> bool:
    """Whether this torch build has the fbgemm kernels :class:`Int8Linear` runs on (x86 builds do)."""
    return bool({"fbgemm", "x86"} & set(torch.backends.quantized.supported_engines))


def quantize_int8_dynamic(model: nn.Module) -> nn.Module:
    """Replace, in place, every ``nn.Linear`` of ``model`` with an :class:`Int8Linear` (shared-input layers fused
    into one) and its RMSNorm layers with :class:`FusedRMSNorm`; returns ``model``. CPU only."""
    for module in list(model.modules()):
        for names in SHARED_INPUT_GROUPS:
            linears = [module._modules.get(name) for name in names]
            if all(type(linear) is nn.Linear for linear in linears) and len({li.in_features for li in linears}) == 1:
                fused = Int8Linear.fuse(linears)
                module.add_module("fused_" + "_".join(name.removesuffix("_proj") for name in names), fused)
                shared = _SharedProduct(fused)
                for index, name in enumerate(names):
                    delattr(module, name)  # a plain attribute from here on: calling it skips nn.Module's machinery
                    setattr(module, name, _Slice(shared, index))
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, name, Int8Linear(child.weight, child.bias))
            elif type(child).__name__.endswith("RMSNorm") and FusedRMSNorm.matches(child):
                setattr(module, name, FusedRMSNorm(child.weight, _rms_eps(child)))
    return model


class Int8Linear(nn.Module):
    """A linear layer with int8 weights, per-row scales, and its fp32 input quantized per call."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight = weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks its quantized tensors deprecated, without a successor
            qweight = torch.quantize_per_channel(weight, scales, torch.zeros_like(scales, dtype=torch.long), 0,
                                                 torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())
        self.out_features, self.in_features = weight.shape
        self.sizes: list[int] = [self.out_features]

    @classmethod
    def fuse(cls, linears: list[nn.Linear]) -> Int8Linear:
        """One layer computing all of ``linears`` (same input size) at once, their outputs side by side."""
        weight = torch.cat([linear.weight for linear in linears])
        biases = [linear.bias if linear.bias is not None else weight.new_zeros(linear.out_features)
                  for linear in linears]
        fused = cls(weight, torch.cat(biases) if any(linear.bias is not None for linear in linears) else None)
        fused.sizes = [linear.out_features for linear in linears]
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear_dynamic(x, self.packed, True)  # reduce_range: 7-bit inputs, as fbgemm needs on AVX2

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features} ({'+'.join(map(str, self.sizes))})"


_linear_dynamic = torch.ops.quantized.linear_dynamic.default


class FusedRMSNorm(nn.Module):
    """``weight * x / rms(x)`` in one call of torch's ``rms_norm``."""

    def __init__(self, weight: nn.Parameter, eps: float):
        super().__init__()
        self.weight, self.eps, self.shape = weight, eps, (weight.shape[0],)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.rms_norm(x, self.shape, self.weight, self.eps)

    @classmethod
    def matches(cls, norm: nn.Module) -> bool:
        """Whether ``norm`` computes exactly this (variants such as Gemma's ``1 + weight`` scaling do not)."""
        weight, eps = getattr(norm, "weight", None), _rms_eps(norm)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 1 or eps is None:
            return False
        probe = torch.randn(2, weight.shape[0], dtype=weight.dtype, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            return torch.allclose(norm(probe), cls(weight, eps)(probe), rtol=1e-5, atol=1e-6)


def _rms_eps(norm: nn.Module) -> float | None:
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    return eps if isinstance(eps, float) else None


class _SharedProduct:
    """The fused product of one input, handed out slice by slice. The first slice called with an input computes it;
    the others take their part. An input seen again, or a different input, is computed afresh, so results never
    depend on call order; the product is released once every slice has been taken."""

    def __init__(self, fused: Int8Linear):
        self.fused = fused
        self.pending: tuple[torch.Tensor, list] | None = None

    def take(self, x: torch.Tensor, index: int) -> torch.Tensor:
        pending = self.pending
        if pending is None or pending[0] is not x or pending[1][index] is None:
            pending = self.pending = (x, list(self.fused(x).split(self.fused.sizes, dim=-1)))
        parts = pending[1]
        out, parts[index] = parts[index], None
        if all(part is None for part in parts):
            self.pending = None
        return out


class _Slice:
    """A fused layer's stand-in in its module: its slice of the shared product."""

    def __init__(self, shared: _SharedProduct, index: int):
        self.shared, self.index = shared, index

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared.take(x, self.index)
