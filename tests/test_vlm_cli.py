"""`python -m mmsupport describe` end to end on a tiny local model."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from mmsupport.__main__ import main
from mmsupport.config import load_settings
from mmsupport.images import load_image
from mmsupport.vlm import load_vlm

pytestmark = pytest.mark.slow  # loads a tiny model; the second test runs the command in a subprocess


def test_describe_json(tiny_vlm_dir, tmp_path, capsys):
    photo = tmp_path / "shoe.jpg"
    Image.new("RGB", (200, 120), "red").save(photo)
    code = main(["describe", str(photo), "--model", str(tiny_vlm_dir), "--max-new-tokens", "5",
                 "--prompt", "What colour?", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"text", "model", "adapter", "runtime", "timings"}
    assert result["model"] == str(tiny_vlm_dir) and result["adapter"] is None and result["runtime"] == "transformers"
    timings = result["timings"]
    assert timings["generate_s"] > 0  # measured, not left at zero
    assert 1 <= timings["decode_tokens"] <= 5 and 0 < timings["ttft_s"] < timings["generate_s"]
    assert timings["decode_tok_s"] > 0
    vlm = load_vlm(load_settings(model=str(tiny_vlm_dir), max_new_tokens=5))  # the model the command loaded
    asked = {"role": "user", "content": [{"type": "image", "image": load_image(photo, max_side=vlm.image_max_side)},
                                         {"type": "text", "text": "What colour?"}]}
    assert result["text"] == vlm.generate([asked], max_new_tokens=5).strip()  # uncached: the model's own answer to that prompt


def test_describe_bad_image_is_one_line_without_traceback(tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is not a photo")
    done = subprocess.run([sys.executable, "-m", "mmsupport", "describe", str(fake)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "not an image" in done.stderr and "Traceback" not in done.stderr
