"""PyTorch encoders exported once to ONNX Runtime, the faster CPU runtime for the catalog's embedders.

An export is a file in the cache named by a hash of the weights (the same weights, wherever they were loaded from,
give the same file), written atomically so that two processes starting together cannot read half a graph. A
transformer's export is traced with plain-operator attention and then rewritten by ONNX Runtime's transformer
optimizer into its fused operators (attention, layer norm with the residual add, GELU): on a 2-core AVX2 host that
takes a sixth off a MiniLM query (6.3 to 5.2 ms in ONNX Runtime) and leaves a ViT-B/32 photo as fast as it was.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

logger = logging.getLogger(__name__)


#: Part of every cached export's name, raised when the graphs this module writes change (operators, rewrites), so
#: that a cache written before is exported again instead of run as it was.
GRAPH_FORMAT = 2


def weights_hash(module) -> str:
    """Names a module's cached export: a hash of its class, the torch version, :data:`GRAPH_FORMAT` and every
    weight."""
    import torch

    digest = hashlib.sha256(f"{type(module).__name__} {torch.__version__} {GRAPH_FORMAT}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def export(module, example: tuple, path: Path, *, input_names: list[str], output_names: list[str],
           dynamic_axes: dict, transformer, fuse_as: str = "bert") -> None:
    """Trace ``module`` on ``example`` into the ONNX graph ``path`` (atomically), then fuse the attention and layer
    norms of ``transformer`` (the Hugging Face model inside ``module``) as ONNX Runtime's optimizer does for its
    model type ``fuse_as`` (``bert``, ``clip``); a graph it cannot fuse is kept as traced."""
    import torch

    with _writing(path) as partial, torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on branches that are constant for an encoder
        with _eager_attention(transformer), _patches_as_products(module):
            torch.onnx.export(module.eval(), example, str(partial), input_names=input_names,
                              output_names=output_names, opset_version=17, dynamo=False, dynamic_axes=dynamic_axes)
        _fuse(partial, fuse_as, transformer.config)


def quantize_int8(source: Path, path: Path) -> None:
    """Write ``source`` with int8 matrix products (int8 weights, activations quantized per call: ONNX Runtime's
    dynamic quantization) to ``path`` (atomically). Convolutions stay fp32: ONNX Runtime's int8 convolution takes
    twice as long as its fp32 one (a ViT's patch embedding is exported as a matrix product instead)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _writing(path) as partial:
        quantize_dynamic(str(source), str(partial), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"DefaultTensorType": 1})  # float: fused operators have no type inference


def quantize_blocks_int8(source: Path, path: Path, block_size: int = 128) -> None:
    """Write ``source`` with its matrix products' weights in 8 bits, one scale per ``block_size`` inputs of each
    output, computed in integers with the input quantized per block too (ONNX Runtime's ``MatMulNBits`` at accuracy
    level 4), to ``path`` (atomically). A transformer's activations have a few outlier features, so one scale per
    whole input vector (:func:`quantize_int8`) moves a MiniLM query's vector to a cosine of about 0.96 with float32's;
    by blocks it stays above 0.999."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)  # a line a layer
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=8, block_size=block_size, is_symmetric=True,
                                     accuracy_level=4)
    quantizer.process()
    with _writing(path) as partial:
        quantizer.model.save_model_to_file(str(partial), use_external_data_format=False)


def session(path: Path | bytes, *, spin: bool = False, initializers: dict | None = None):
    """An ONNX Runtime CPU session of the graph ``path`` (or its bytes), on as many threads as PyTorch uses
    (``torch.set_num_threads`` sets both). Its threads sleep when idle, leaving the cores to LanceDB and the model,
    unless ``spin``: then they busy-wait between a call's operators, which a large graph needs to use two cores, and
    stop when the call returns instead of taking a core from what follows (LanceDB, the next photo's resize).
    ``initializers`` (name -> numpy array) replace the graph's weights of those names and are read in place, not
    copied."""
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    values = {name: onnxruntime.OrtValue.ortvalue_from_numpy(array) for name, array in (initializers or {}).items()}
    for name, value in values.items():
        options.add_initializer(name, value)
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    graph = path if isinstance(path, bytes) else str(path)
    runner = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"],
                                          disabled_optimizers=["SkipLayerNormFusion"])  # see _split_skip_layer_norms
    runner.initializers = values  # the session reads their memory: they must live as long
    return runner


class QuantizedRows:
    """``rows @ query`` for one float32 query at a time, from an 8-bit copy of ``rows`` (one scale per row, the
    query quantized per call: ONNX Runtime's ``DynamicQuantizeMatMul``), off by at most 3e-3 on MiniLM vectors. As
    fast as fbgemm's int8 product (1.6-1.9 ms at 100k rows of 384 on two AVX2 cores) but with threads that sleep as
    soon as it returns, where PyTorch's keep spinning and slow the next query's embedding by about 0.8 ms. The rows
    are unsigned bytes around 128: signed ones lose up to 4e-2 on MiniLM vectors to the AVX2 kernel's saturating
    16-bit sums."""

    def __init__(self, rows, block: int = 65_536):
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        count, width = rows.shape
        scales = np.empty(count, dtype=np.float32)
        quantized = np.empty((width, count), dtype=np.uint8)  # the graph's weight is width x rows
        for start in range(0, count, block):  # a block at a time: no float32 copy of all the rows
            codes, scales[start:start + block] = quantize_rows(rows[start:start + block])
            quantized[:, start:start + block] = codes.T
        product = helper.make_node("DynamicQuantizeMatMul", ["query", "rows", "scales", "zero_points"], ["scores"],
                                   domain="com.microsoft")
        graph = helper.make_graph(
            [product], "quantized_rows", [helper.make_tensor_value_info("query", TensorProto.FLOAT, [1, width])],
            [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, count])],
            initializer=[numpy_helper.from_array(quantized, "rows"), numpy_helper.from_array(scales, "scales"),
                         numpy_helper.from_array(np.full(count, 128, dtype=np.uint8), "zero_points")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        with tempfile.TemporaryDirectory() as folder:  # from bytes, the session would keep a second copy of them
            onnx.save(model, Path(folder) / "rows.onnx")
            self._session = session(Path(folder) / "rows.onnx")

    def __call__(self, query):
        """The scores of the rows for ``query`` (shape ``(width,)``, float32), as float32."""
        return self._session.run(None, {"query": query.reshape(1, -1)})[0][0]


class QuantizedSubsets:
    """``rows[positions] @ query`` for one float32 query and any of the rows, from an 8-bit copy of ``rows`` (the
    ``codes`` and ``scales`` of :func:`quantize_rows`, row by row), which ONNX Runtime reads in place: a ``Gather``
    of the rows asked for, then an integer product with the query quantized per call (``MatMulInteger``), off by
    about 3e-3 on MiniLM vectors as :class:`QuantizedRows` is, and for the same reason with unsigned bytes on both
    sides. For tables too large for a product over every row at each query: it ranks the candidates of an ANN
    index and the rows having a query's attributes."""

    def __init__(self, codes, scales):
        import numpy as np
        from onnx import TensorProto, helper, numpy_helper

        width = codes.shape[1]
        self.scales = scales
        gather = helper.make_node("Gather", ["rows", "positions"], ["chosen"], axis=0)
        product = helper.make_node("MatMulInteger", ["chosen", "query", "zero_point", "zero_point"], ["scores"])
        graph = helper.make_graph(
            [gather, product], "quantized_subsets",
            [helper.make_tensor_value_info("positions", TensorProto.INT64, ["count"]),
             helper.make_tensor_value_info("query", TensorProto.UINT8, [width, 1])],
            [helper.make_tensor_value_info("scores", TensorProto.INT32, ["count", 1])],
            initializer=[numpy_helper.from_array(codes[:1], "rows"),  # a stand-in: the session reads ``codes``
                         numpy_helper.from_array(np.array(128, dtype=np.uint8), "zero_point")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        self._session = session(model.SerializeToString(), initializers={"rows": codes})

    def __call__(self, query, positions):
        """The scores of the rows at ``positions`` (int64) for ``query`` (shape ``(width,)``, float32), as
        float32."""
        import numpy as np

        scale = max(float(np.abs(query).max()), 1e-12) / 127
        quantized = (np.rint(query / scale) + 128).astype(np.uint8).reshape(-1, 1)
        scores = self._session.run(None, {"positions": positions, "query": quantized})[0][:, 0]
        return scores * (self.scales[positions] * scale)


def quantize_rows(rows):
    """An 8-bit copy of ``rows`` (float): unsigned bytes around 128, one scale per row, as ``(codes, scales)``."""
    import numpy as np

    part = rows.astype(np.float32)
    scales = np.maximum(np.abs(part).max(axis=1), 1e-12) / 127
    return (np.rint(part / scales[:, None]) + 128).astype(np.uint8), scales.astype(np.float32)


@contextmanager
def _eager_attention(transformer) -> Iterator[None]:
    """Within the block ``transformer`` computes attention from plain operators, the pattern ONNX Runtime's
    optimizer fuses (scaled-dot-product attention traces into one it does not recognise)."""
    before = getattr(transformer.config, "_attn_implementation", None)
    try:
        transformer.set_attn_implementation("eager")
    except (AttributeError, ValueError):  # a model without a choice of attention is traced as it is
        yield
        return
    try:
        yield
    finally:
        transformer.set_attn_implementation(before)


@contextmanager
def _patches_as_products(module) -> Iterator[None]:
    """Within the block, each convolution in ``module`` that cuts its input into non-overlapping patches (a ViT's
    patch embedding) is computed as one matrix product of the patches, which int8 quantization then covers: on a
    ViT-B/32 photo that is 1.5 ms of int8 products and transposes for 3.1 ms of fp32 convolution."""
    import torch

    class Patches(torch.nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.kernel_size, self.weight, self.bias = conv.kernel_size, conv.weight, conv.bias

        def forward(self, pixels):
            (high, wide), channels = self.kernel_size, pixels.shape[1]
            rows, columns = pixels.shape[2] // high, pixels.shape[3] // wide
            if (rows * high, columns * wide) != tuple(pixels.shape[2:]):  # the convolution drops the margin
                pixels = pixels[:, :, :rows * high, :columns * wide]
            patches = (pixels.reshape(-1, channels, rows, high, columns, wide).permute(0, 2, 4, 1, 3, 5)
                       .reshape(-1, rows * columns, channels * high * wide))
            out = patches @ self.weight.reshape(self.weight.shape[0], -1).t()
            if self.bias is not None:
                out = out + self.bias
            return out.transpose(1, 2).reshape(-1, self.weight.shape[0], rows, columns)

    swapped = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if isinstance(child, torch.nn.Conv2d) and child.kernel_size == child.stride
               and child.padding in ((0, 0), "valid") and child.dilation == (1, 1) and child.groups == 1]
    for parent, name, child in swapped:
        setattr(parent, name, Patches(child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def _fuse(path: Path, model_type: str, config) -> None:
    """Rewrite the graph ``path`` with ONNX Runtime's fused transformer operators; keep it as is when that fails."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = getattr(config, "vision_config", config)  # an image–text model's exports are of its image tower
    try:
        with redirect_stdout(io.StringIO()) as printed:  # the optimizer prints what it could not infer
            fused = optimize_model(str(path), model_type=model_type, opt_level=0,
                                   num_heads=getattr(config, "num_attention_heads", 0),
                                   hidden_size=getattr(config, "hidden_size", 0))
        if printed.getvalue().strip():
            logger.info("ONNX Runtime's optimizer on the %s graph: %s", model_type, printed.getvalue().strip())
        _split_skip_layer_norms(fused.model.graph)
        fused.save_model_to_file(str(path))
    except Exception as error:  # noqa: BLE001 - an unfused graph computes the same, only slower
        logger.warning("ONNX Runtime could not fuse the %s graph (it runs unfused): %s", model_type, error)


def _split_skip_layer_norms(graph) -> None:
    """Turn each fused ``SkipLayerNormalization`` of ``graph`` back into its adds and a ``LayerNormalization``. The
    optimizer needs the fused form to find the attention around it, but ONNX Runtime's CPU kernel for it is five
    times slower than the two operators (23 of them on a ViT-B/32's 50 x 768 activations: 6.0 against 1.1 ms on
    one thread), a millisecond of a photo's forward on two."""
    from onnx import helper

    nodes = []
    for node in graph.node:
        if node.op_type != "SkipLayerNormalization" or any(node.output[1:3]):  # its mean or deviation is read
            nodes.append(node)
            continue
        given, skip, scale, shift = node.input[:4]
        bias = node.input[4] if len(node.input) > 4 else ""
        total = node.output[3] if len(node.output) > 3 and node.output[3] else f"{node.name}/sum"
        if bias:
            nodes.append(helper.make_node("Add", [given, bias], [f"{node.name}/biased"]))
            given = f"{node.name}/biased"
        epsilon = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-12)
        nodes += [helper.make_node("Add", [given, skip], [total]),
                  helper.make_node("LayerNormalization", [total, scale, shift], [node.output[0]], axis=-1,
                                   epsilon=epsilon)]
    del graph.node[:]
    graph.node.extend(nodes)


@contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """``with _writing(path) as partial``: write ``partial``, which replaces ``path`` when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{threading.get_ident()}.partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
