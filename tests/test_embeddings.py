"""The text embedder on ONNX Runtime against the same model on PyTorch (the offline MiniLM, no download)."""

from collections import Counter

import numpy as np
import onnx
import pytest

from mmsupport import embeddings
from mmsupport.config import load_settings
from mmsupport.embeddings import Embedder

TEXTS = ["red running shoe", "a", "Headset blinking blue means pairing mode", "ünïcödé 日本語 text",
         "word " * 400]  # the last one is longer than the model's 256 tokens: truncated the same way


@pytest.fixture(scope="module")
def embedders(tmp_path_factory):
    name = load_settings().embedding_model
    cache = tmp_path_factory.mktemp("cache")
    return Embedder(name, runtime="onnx", cache_dir=cache), Embedder(name, runtime="torch"), cache


def test_onnx_gives_the_vectors_pytorch_gives(embedders):
    onnx, torch, _ = embedders
    assert (onnx.runtime, torch.runtime) == ("onnx", "torch")
    batch, reference = onnx.embed(TEXTS), torch.embed(TEXTS)
    assert batch.dtype == np.float32 and batch.shape == reference.shape
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert (batch * reference).sum(axis=1).min() > 0.9999
    np.testing.assert_allclose(onnx.embed_query(TEXTS[2]), batch[2], atol=1e-5)  # alone = inside a padded batch


def test_the_export_is_cached_by_weights_and_reused(embedders):
    onnx, _, cache = embedders
    exported = list((cache / "onnx").glob("*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    again = Embedder(onnx.name, runtime="onnx", cache_dir=cache)
    assert again.runtime == "onnx" and exported[0].stat().st_mtime_ns == stamp
    assert list((cache / "onnx").iterdir()) == exported  # no partial files left behind


def test_the_export_runs_each_layers_attention_as_one_fused_operator(embedders):
    onnx_embedder, _, cache = embedders
    graph = onnx.load(str(next((cache / "onnx").glob("*.onnx"))))
    operators = Counter(node.op_type for node in graph.graph.node)
    assert operators["Attention"] == onnx_embedder.model[0].auto_model.config.num_hidden_layers
    assert "Softmax" not in operators


def test_a_broken_export_falls_back_to_pytorch(embedders, tmp_path):
    onnx, _, _ = embedders
    (tmp_path / "onnx").write_text("a file where the export folder should be")
    fallback = Embedder(onnx.name, runtime="onnx", cache_dir=tmp_path)
    assert fallback.runtime == "torch"
    assert float(fallback.embed_query("red running shoe") @ onnx.embed_query("red running shoe")) > 0.9999


QUERIES = ["red running shoes", "navy shirt for men", "my smartwatch keeps flashing a red light",
           "how do I return a jacket that tore", "Do these jeans come in a larger size?", "a",
           "handcrafted bangles with stone-studded and silk-threaded detail, slip-on closure"]


def test_the_8_bit_graph_embeds_queries_within_a_small_angle_of_float32(embedders):
    onnx_embedder, _, _ = embedders
    quantized = onnx_embedder.onnx.quantized()
    operators = Counter(node.op_type for node in onnx.load(str(quantized.path)).graph.node)
    assert operators["MatMulNBits"] == 3 * onnx_embedder.model[0].auto_model.config.num_hidden_layers
    assert operators["MatMul"] == 0  # every weight product is 8-bit
    exact, rounded = onnx_embedder.onnx.encode(QUERIES), quantized.encode(QUERIES)
    np.testing.assert_allclose(np.linalg.norm(rounded, axis=1), 1.0, atol=1e-5)
    cosines = (exact * rounded).sum(axis=1)
    assert cosines.min() > 0.998 and cosines.max() < 0.99999  # close, and truly from other weights
    assert onnx_embedder.onnx.quantized().path == quantized.path  # cached beside the float32 graph


def test_an_8_bit_graph_too_far_from_float32_is_not_offered(embedders, monkeypatch):
    onnx_embedder, _, _ = embedders
    monkeypatch.setattr(embeddings, "INT8_MIN_COSINE", 0.99999)
    assert onnx_embedder.onnx.quantized() is None
