"""Fine-tuning: chat-format data with answer-only loss, LoRA and QLoRA on a tiny VLM, adapter reloaded by the app."""

import json

import pytest
from PIL import Image

from mmsupport.config import load_settings
from mmsupport.errors import InvalidInput
from mmsupport.finetune import REPORT_FILE, Example, FinetuneConfig, encode_example, finetune, load_examples


@pytest.fixture
def qa_file(tmp_path):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (40, 40), "red").save(tmp_path / "photos" / "watch.png")
    rows = [{"question": "My smartwatch shows a red light.", "answer": "Charge it for 30 days.", "image": "watch.png"},
            {"question": "Return policy?", "answer": "Returns within 30 days with the receipt.", "image": ""},
            {"question": "", "answer": "a row without a question is skipped", "image": ""},
            {"question": "Do you ship abroad?", "answer": "Yes, to 30 countries."}]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_load_examples_reads_jsonl_and_bitext_style_csv(qa_file, tmp_path):
    examples = load_examples(qa_file, tmp_path / "photos")
    assert [example.question for example in examples] == ["My smartwatch shows a red light.", "Return policy?",
                                                          "Do you ship abroad?"]
    assert examples[2].image is None
    assert examples[0].image == str((tmp_path / "photos" / "watch.png").resolve()) and examples[1].image is None
    csv = tmp_path / "bitext.csv"
    csv.write_text("instruction,intent,response\nwhere is my order,track_order,Check the tracking link.\n")
    assert load_examples(csv) == [Example("where is my order", "Check the tracking link.")]
    with pytest.raises(InvalidInput, match="not found in"):
        load_examples(qa_file)  # images are looked up next to the data file by default
    csv.write_text("text,label\nhello,greeting\n")
    with pytest.raises(InvalidInput, match="needs a question and an answer column"):
        load_examples(csv)


@pytest.mark.slow
def test_loss_covers_the_answer_tokens_only(tiny_vlm_dir, qa_file, tmp_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm_dir)
    for example in load_examples(qa_file, tmp_path / "photos"):
        inputs = encode_example(processor, example)
        labels = inputs["labels"][0]
        answer_ids = labels[labels != -100]
        assert processor.tokenizer.decode(answer_ids).strip() == example.answer + "<|im_end|>"
        assert ("pixel_values" in inputs) == (example.image is not None)


@pytest.mark.slow
@pytest.mark.parametrize("qlora", [False, True], ids=["lora", "qlora"])
def test_finetune_overfits_and_the_adapter_loads_in_the_app(tiny_vlm_dir, qa_file, tmp_path, qlora):
    import torch

    from mmsupport.vlm import load_vlm

    examples = load_examples(qa_file, tmp_path / "photos")
    config = FinetuneConfig(max_steps=20, grad_accum=1, lr=1e-2, lora_dropout=0.0, qlora=qlora, compare=1,
                            max_new_tokens=8)
    out = tmp_path / "adapter"
    result = finetune(str(tiny_vlm_dir), examples, out, config, eval_examples=examples, progress=False)

    losses = [step["loss"] for step in result.steps]
    assert len(losses) == 20 and sum(losses[-5:]) < sum(losses[:5])
    assert result.eval_loss_after < result.eval_loss_before - 0.2  # random init: about 6.0 (log of the vocab size)
    assert result.comparisons[0]["question"] == examples[0].question and "after" in result.comparisons[0]
    assert (out / "adapter_config.json").is_file()
    assert json.loads((out / REPORT_FILE).read_text())["eval_loss_after"] == result.eval_loss_after

    base = load_vlm(load_settings(model=str(tiny_vlm_dir), quantization="none"))
    tuned = load_vlm(load_settings(model=str(tiny_vlm_dir), quantization="none", adapter=str(out)))
    assert tuned.adapter == str(out)
    name = next(name for name, _ in base.model.named_parameters() if "text_model" in name and "q_proj" in name)
    assert not torch.equal(dict(base.model.named_parameters())[name], dict(tuned.model.named_parameters())[name])
    assert isinstance(tuned.generate([{"role": "user", "content": "Return policy?"}], max_new_tokens=4), str)


@pytest.mark.slow
def test_finetune_cli_trains_and_reports(tiny_vlm_dir, qa_file, tmp_path, capsys):
    from mmsupport.__main__ import main

    out = tmp_path / "adapter"
    argv = ["finetune", "--data", str(qa_file), "--images", str(tmp_path / "photos"), "--out", str(out),
            "--model", str(tiny_vlm_dir), "--max-steps", "2", "--grad-accum", "1", "--eval-fraction", "0.5", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["train_examples"], result["eval_examples"], len(result["steps"])) == (1, 2, 2)
    assert (out / "adapter_config.json").is_file()
    assert main(["finetune", "--data", str(tmp_path / "missing.csv"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
