"""Hugging Face model folders to GGUF for llama.cpp, converted once into the cache and keyed by a hash of the weights.

A VLM becomes two files: the text model (``q8_0`` by default) and the vision projector (``mmproj``, ``f16``), written by
llama.cpp's own converter (``convert_hf_to_gguf.py`` with its ``gguf-py``), which runs in a subprocess. The converter
is taken from ``settings.llamacpp_source`` or fetched once from the source package of the installed llama-cpp-python
(``pip download``), so the converter and the runtime always come from the same llama.cpp.

Two things the converter needs that a folder written by ``save_pretrained`` may lack are settled honestly here:

- **The text model's class.** The converter picks it from ``text_config.architectures``, which ``save_pretrained``
  does not write for Idefics3/SmolVLM; the staged copy of ``config.json`` names the class the published SmolVLM
  configs name (``VLlama3ForCausalLM``, a Llama decoder).
- **The pre-tokenizer.** The converter knows pre-tokenizers by a hash of how they split a test text, so a tokenizer
  trained for a new model is refused although llama.cpp implements its splitting. When the hash is unknown, the
  tokenizer's own definition (``tokenizer.json``) is read instead: GPT-2's byte-level split is ``gpt-2``, and digits
  split one by one before it is ``smollm``. Any other definition is still refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from mmsupport.errors import ModelUnavailable

logger = logging.getLogger(__name__)

#: Text model class per VLM ``model_type`` when ``text_config.architectures`` is missing (as the Hub configs name it).
TEXT_ARCHITECTURES = {"idefics3": "VLlama3ForCausalLM", "smolvlm": "VLlama3ForCausalLM"}
#: Files whose bytes make a model what it is (weights, configs, tokenizer, image processor, chat template).
_MODEL_FILES = ("*.safetensors", "*.bin", "*.json", "*.jinja", "*.model", "*.txt")
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def weights_digest(folder: Path) -> str:
    """SHA-256 over the names and bytes of the model's files: a changed weight or tokenizer is a new conversion."""
    digest = hashlib.sha256()
    files = sorted({path for pattern in _MODEL_FILES for path in Path(folder).glob(pattern)})
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version; raises :class:`ModelUnavailable` when it is not installed."""
    try:
        import llama_cpp
    except ImportError as error:
        raise ModelUnavailable(f"llama.cpp is not installed ({error}).",
                               hint="pip install -r requirements-llamacpp.txt (a source build of about 7 minutes), "
                                    "or set MMSUPPORT_RUNTIME=transformers.") from None
    return llama_cpp.__version__


def converter_source(settings) -> Path:
    """A llama.cpp source folder with ``convert_hf_to_gguf.py``: ``settings.llamacpp_source``, or the one fetched once
    into ``settings.cache_dir`` from the installed version's source package."""
    if settings.llamacpp_source is not None:
        source = Path(settings.llamacpp_source)
        if not (source / "convert_hf_to_gguf.py").is_file():
            raise ModelUnavailable(f"{source} has no convert_hf_to_gguf.py.",
                                   hint="Set MMSUPPORT_LLAMACPP_SOURCE to a llama.cpp source folder, or unset it.")
        return source
    version = llama_cpp_version()
    source = Path(settings.cache_dir) / f"llama.cpp-{version}"
    if not (source / "convert_hf_to_gguf.py").is_file():
        fetch_converter(version, source)
    return source


def fetch_converter(version: str, destination: Path) -> Path:
    """Unpack llama.cpp's converter and ``gguf-py`` from PyPI's llama-cpp-python ``version`` source package."""
    logger.info("Fetching llama.cpp's GGUF converter (llama-cpp-python %s source package, once)", version)
    with tempfile.TemporaryDirectory() as download:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                               f"llama-cpp-python=={version}", "--dest", download], capture_output=True, text=True)
        archives = list(Path(download).glob("*.tar.gz"))
        if done.returncode or not archives:
            raise ModelUnavailable(f"Could not fetch llama-cpp-python {version}'s source package: "
                                   f"{(done.stderr or done.stdout).strip()[-300:]}",
                                   hint="Set MMSUPPORT_LLAMACPP_SOURCE to a llama.cpp source folder.")
        staging = destination.with_name(destination.name + ".partial")
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                _, _, inner = member.name.partition("/vendor/llama.cpp/")
                if inner.startswith(_CONVERTER_PARTS) and (member.isfile() or member.isdir()):
                    member.name = inner
                    archive.extract(member, staging, filter="data")
    staging.replace(destination)
    return destination


def _staged(folder: Path, into: Path) -> Path:
    """A copy of ``folder`` (links to its files) whose ``config.json`` names the text model's class."""
    for path in folder.iterdir():
        (into / path.name).symlink_to(path.resolve())
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config")
    if isinstance(text, dict) and not text.get("architectures") and config.get("model_type") in TEXT_ARCHITECTURES:
        text["architectures"] = [TEXT_ARCHITECTURES[config["model_type"]]]
        (into / "config.json").unlink()
        (into / "config.json").write_text(json.dumps(config, indent=1))
    return into


def convert(folder: Path, settings, *, text_type: str = "q8_0", mmproj_type: str = "f16") -> tuple[Path, Path]:
    """``(text GGUF, mmproj GGUF)`` of the transformers VLM in ``folder``, converted on first use into
    ``settings.cache_dir/gguf/<hash of the weights>/``. Raises :class:`ModelUnavailable` when conversion fails."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    source = converter_source(settings)
    target = Path(settings.cache_dir) / "gguf" / weights_digest(folder)[:20]
    outputs = {"text": (target / f"text-{text_type}.gguf", text_type, []),
               "mmproj": (target / f"mmproj-{mmproj_type}.gguf", mmproj_type, ["--mmproj"])}
    missing = [name for name, (path, _, _) in outputs.items() if not path.is_file()]
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        staged = _staged(folder, Path(staging))
        for name in tqdm(missing, desc=f"converting {folder.name} to GGUF (once)", unit="file",
                         disable=not missing):
            path, outtype, extra = outputs[name]
            partial = path.with_suffix(".partial")
            done = subprocess.run([sys.executable, "-m", "mmsupport.gguf", str(source), str(staged),
                                   "--outfile", str(partial), "--outtype", outtype, *extra],
                                  capture_output=True, text=True)
            if done.returncode or not partial.is_file():
                lines = [line for line in done.stderr.splitlines() if line.strip()]
                raise ModelUnavailable(f"llama.cpp's converter could not convert {folder} ({name}): "
                                       f"{lines[-1] if lines else f'exit code {done.returncode}'}",
                                       hint="Use MMSUPPORT_RUNTIME=transformers, or give a GGUF file or repo as the "
                                            "model.")
            partial.replace(path)
    return outputs["text"][0], outputs["mmproj"][0]


def pre_tokenizer_name(tokenizer) -> str | None:
    """llama.cpp's name for the pre-tokenizer ``tokenizer.json`` defines, for the two splits it is sure of."""
    definition = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}

    def byte_level(step: dict) -> bool:
        return step.get("type") == "ByteLevel" and step.get("use_regex", True)

    if byte_level(definition):
        return "gpt-2"
    steps = definition.get("pretokenizers", []) if definition.get("type") == "Sequence" else []
    if (len(steps) == 2 and steps[0].get("type") == "Digits" and steps[0].get("individual_digits")
            and byte_level(steps[1])):
        return "smollm"
    return None


def _run_converter(source: Path, arguments: list[str]) -> None:
    """Run llama.cpp's converter in this (sub)process, reading an unknown pre-tokenizer from its definition."""
    import runpy

    sys.path[:0] = [str(source), str(source / "gguf-py")]
    from conversion.base import TextModel, logger as converter_logger

    known = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return known(self, tokenizer)
        except NotImplementedError:
            name = pre_tokenizer_name(tokenizer)
            if name is None:
                raise
            converter_logger.warning("pre-tokenizer read from tokenizer.json: %s", name)
            return name

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = [str(source / "convert_hf_to_gguf.py"), *arguments]
    runpy.run_path(str(source / "convert_hf_to_gguf.py"), run_name="__main__")


if __name__ == "__main__":
    _run_converter(Path(sys.argv[1]), sys.argv[2:])
