"""The Spaces deployment files agree with each other and with the pinned requirements."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def front_matter() -> dict:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with a --- front matter block for Hugging Face Spaces"
    return yaml.safe_load(match.group(1))


def test_readme_front_matter_matches_space_yaml():
    space = yaml.safe_load((REPO / "space.yaml").read_text(encoding="utf-8"))
    assert front_matter() == space


def test_space_runs_the_app_with_the_pinned_gradio():
    space = yaml.safe_load((REPO / "space.yaml").read_text(encoding="utf-8"))
    pins = dict(re.findall(r"^([\w-]+)(?:\[[\w,-]+\])?==(\S+)", (REPO / "requirements.txt").read_text(), re.M))
    assert space["sdk"] == "gradio"
    assert space["sdk_version"] == pins["gradio"]
    assert (REPO / space["app_file"]).is_file()
    assert space["suggested_hardware"] == "cpu-basic"
    assert 0 < len(space["short_description"]) <= 60  # the Hub's limit
