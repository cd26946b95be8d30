"""Crash safety: a real ingest process killed mid-write leaves the previous version, and the next ingest removes the
files the interrupted write left behind. Uses a tiny random sentence-transformers model (any id must work) so the
subprocess reaches the write quickly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmsupport.catalog import Catalog
from mmsupport.config import load_settings
from test_catalog import write_csv

pytestmark = pytest.mark.slow


def build_tiny_embedder(folder: Path) -> Path:
    """A 1-layer BERT with a freshly trained WordPiece tokenizer, saved as a sentence-transformers model."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as st_modules
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(["red blue smartwatch headset running shoe canvas tote bag"] * 10,
                                  trainers.WordPieceTrainer(vocab_size=200, special_tokens=[
                                      "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    bert = folder / "bert"
    BertModel(BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(bert)
    fast.save_pretrained(bert)
    word = st_modules.Transformer(str(bert), max_seq_length=32)
    SentenceTransformer(modules=[word, st_modules.Pooling(word.get_embedding_dimension())]).save(str(folder / "st"))
    return folder / "st"


def test_killed_ingest_keeps_the_previous_version_and_the_next_ingest_cleans_up(tmp_path):
    model = build_tiny_embedder(tmp_path / "embedder")
    settings = load_settings(db_dir=tmp_path / "db", table="shop", embedding_model=str(model))
    # ~30 MB of attribute columns make the big write long enough to be caught in the middle
    header = ["id", "title", "description"] + [f"note{i}" for i in range(20)]
    catalog = Catalog.open(settings, create=True)
    catalog.ingest_csv(write_csv(tmp_path / "small.csv", [["s1", "Red smartwatch", "A red smartwatch"] + [""] * 20],
                                 header), progress=False)
    version, rows = catalog.version, len(catalog)
    big = write_csv(tmp_path / "big.csv", [[f"b{n}", "Canvas tote", "A canvas tote bag"] + [f"{n:08d}" * 9] * 20
                                           for n in range(20_000)], header)
    data_dir = tmp_path / "db" / "shop.lance" / "data"
    before = set(os.listdir(data_dir))
    proc = subprocess.Popen([sys.executable, "-m", "mmsupport", "ingest", "--csv", str(big), "--db",
                             str(tmp_path / "db"), "--table", "shop", "--embedding-model", str(model), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not set(os.listdir(data_dir)) - before:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the ingest committed before it could be killed mid-write"
    leftovers = set(os.listdir(data_dir)) - before
    assert leftovers

    reopened = Catalog.open(settings)
    assert (reopened.version, len(reopened)) == (version, rows)
    next_csv = write_csv(tmp_path / "next.csv", [["s2", "Blue headset", "A blue headset"] + [""] * 20], header)
    report = reopened.ingest_csv(next_csv, progress=False)
    assert (report.added, len(reopened)) == (1, 2)
    assert not set(os.listdir(data_dir)) & leftovers
    assert [i.id for i in reopened.search("blue headset", mode="fts", k=1)] == ["s2"]
