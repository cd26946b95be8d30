"""`python -m mmsupport deploy`: the Space's file list, secrets kept secret, bad requests refused, and a folder
target that runs on its own. Never the network."""

import json
import os
import subprocess
import sys

import pytest

from mmsupport.__main__ import main
from mmsupport.deploy import plan


def _dry_run(capsys, *args) -> dict:
    assert main(["deploy", "--space", "acme/support", "--dry-run", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_dry_run_lists_the_app_files_and_nothing_else(capsys):
    files = set(_dry_run(capsys)["files"])
    assert {"app.py", "README.md", "requirements.txt", "mmsupport/app/layout.py", "mmsupport/prompts/agent.yaml",
            "mmsupport/taxonomy.txt", "data/products.csv", "data/articles.csv"} <= files
    assert any(name.startswith("data/images/customer/") for name in files)
    assert not [name for name in files if name.startswith(("tests/", "bench/", "notebooks/", ".")) or
                "__pycache__" in name or name.endswith(".pyc")]


def test_secrets_come_from_the_environment_and_are_never_printed(capsys, monkeypatch):
    monkeypatch.setenv("MMSUPPORT_ADMIN_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("MMSUPPORT_API_KEY", "sk-never-print")
    monkeypatch.delenv("MMSUPPORT_DESK_PASSWORD", raising=False)
    monkeypatch.delenv("MMSUPPORT_DATABASE_URL", raising=False)
    summary = _dry_run(capsys, "--set", "top_k=3")
    assert summary["secrets"] == ["MMSUPPORT_ADMIN_PASSWORD", "MMSUPPORT_API_KEY"]
    assert summary["variables"] == {"MMSUPPORT_TOP_K": "3", "MMSUPPORT_RUNTIME": "auto"}
    assert main(["deploy", "--space", "acme/support", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "MMSUPPORT_ADMIN_PASSWORD" in printed
    assert "hunter2-secret" not in printed and "sk-never-print" not in printed
    assert "hunter2-secret" not in repr(plan("acme/support"))


@pytest.mark.parametrize("space, settings, message", [
    ("support", [], "not a Space id"),
    ("acme/sup port", [], "not a Space id"),
    ("acme/support", ["admin_password=x"], "is a secret"),
    ("acme/support", ["top_k=many"], "not a valid int.*--set"),
    ("acme/support", ["colour=red"], "does not name a setting"),
])
def test_bad_requests_are_refused_before_anything_is_sent(capsys, space, settings, message):
    args = ["deploy", "--space", space, "--dry-run"] + [f"--set={s}" for s in settings]
    assert main(args) == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_on_cpu_hardware_the_space_builds_and_runs_the_llama_cpp_runtime(capsys, tmp_path):
    from packaging.requirements import Requirement

    cpu = _dry_run(capsys)
    assert [Requirement(line).name for line in cpu["extra_requirements"]] == ["llama-cpp-python", "sentencepiece"]
    assert cpu["variables"] == {"MMSUPPORT_RUNTIME": "auto"}
    for args in (["--hardware", "t4-small"], ["--no-llamacpp"]):
        assert (_dry_run(capsys, *args)["extra_requirements"], _dry_run(capsys, *args)["variables"]) == ([], {})
    assert _dry_run(capsys, "--set", "runtime=transformers")["variables"] == {"MMSUPPORT_RUNTIME": "transformers"}
    folder = tmp_path / "space"
    assert main(["deploy", "--space", "acme/support", "--to", str(folder)]) == 0
    written = (folder / "requirements.txt").read_text().splitlines()
    pins = [Requirement(line) for line in written if line.strip() and not line.startswith("#")]
    assert {"torch", "gradio", "lancedb", "llama-cpp-python", "sentencepiece"} <= {pin.name for pin in pins}
    assert len({pin.name for pin in pins}) == len(pins)  # each package once
    assert "added to requirements.txt: llama-cpp-python" in capsys.readouterr().out


def test_unknown_hardware_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["deploy", "--space", "acme/support", "--hardware", "h100-imaginary", "--dry-run"])
    assert "h100-imaginary" in capsys.readouterr().err


@pytest.mark.slow
def test_the_folder_target_is_a_working_space_on_its_own(tmp_path, capsys):
    folder = tmp_path / "space"
    assert main(["deploy", "--space", "acme/support", "--to", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written_to"] == str(folder.resolve())
    assert (folder / "README.md").read_text().startswith("---\ntitle: mmsupport")  # the Space's configuration
    probe = ("import mmsupport, mmsupport.agent, mmsupport.app.layout as layout, mmsupport.config as config;"
             "from mmsupport.labeling import Taxonomy;"
             "print(mmsupport.__file__); print(config.SAMPLE_DATA_DIR); print(len(layout.EXAMPLES), "
             "len(Taxonomy.load().categories), len(mmsupport.agent.prompts()))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    package, data_dir, counts = done.stdout.split("\n")[:3]
    assert package.startswith(str(folder)) and data_dir == str(folder / "data")
    assert all(int(n) > 0 for n in counts.split())
    assert (folder / "data" / "products.csv").is_file()
