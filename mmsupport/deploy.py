"""Deploying the app to a Hugging Face Space: which files go, which settings become secrets, and the upload.

A Space runs ``app.py`` from a copy of the repository's app files (:data:`SPACE_FILES`: the app, the package, the
sample catalog, the pinned requirements and the README whose front matter configures the Space). Settings that are
secrets (the fields of :class:`~mmsupport.config.Settings` hidden from ``repr``: passwords, API key, database URL)
are copied from this shell's ``MMSUPPORT_*`` environment into Space secrets; other settings given with ``--set``
become Space variables. Nothing secret is ever printed. On CPU hardware the Space also builds the llama.cpp runtime
and chooses it per host (``MMSUPPORT_RUNTIME=auto``).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from mmsupport.config import PREFIX, REPO_DIR, Settings, load_settings
from mmsupport.errors import InvalidInput, MMSupportError

#: What a Space needs, as glob patterns relative to the repository.
SPACE_FILES = ("app.py", "README.md", "requirements.txt", "space.yaml", "mmsupport/**/*.py", "mmsupport/prompts/*.yaml",
               "mmsupport/taxonomy.txt", "data/*.csv", "data/*.jsonl", "data/README.md", "data/images/**/*.png")
#: Space hardware names the Hub accepts (``huggingface_hub.SpaceHardware``), cheapest first.
HARDWARE = ("cpu-basic", "cpu-upgrade", "zero-a10g", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "a10g-small",
            "a10g-large", "a100-large")
#: Hardware without a GPU: there the Space also builds the llama.cpp runtime (the lines of
#: :data:`LLAMACPP_REQUIREMENTS`, added to its requirements) and runs ``MMSUPPORT_RUNTIME=auto``, the fast CPU path.
CPU_HARDWARE = ("cpu-basic", "cpu-upgrade")
LLAMACPP_REQUIREMENTS = "requirements-llamacpp.txt"
#: Settings whose values are secrets: those ``Settings`` keeps out of its ``repr``.
SECRET_SETTINGS = tuple(f.name for f in dataclasses.fields(Settings) if not f.repr)

_SPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


@dataclass
class DeployPlan:
    """Everything one deploy does; ``secrets`` maps environment names to values and is never shown."""

    space: str
    files: list[str]
    hardware: str = "cpu-basic"
    private: bool = False
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    variables: dict[str, str] = field(default_factory=dict)
    #: Lines added to the Space's ``requirements.txt`` (the llama.cpp runtime on CPU hardware).
    extra_requirements: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """What :meth:`push` would do, printable: secret names without their values."""
        return {"space": self.space, "url": f"https://huggingface.co/spaces/{self.space}", "hardware": self.hardware,
                "private": self.private, "files": self.files, "secrets": sorted(self.secrets),
                "variables": self.variables, "extra_requirements": self.extra_requirements}


def space_files(repo: Path = REPO_DIR) -> list[str]:
    """The repository's files a Space needs (:data:`SPACE_FILES`), sorted, as POSIX paths relative to ``repo``."""
    found = {path.relative_to(repo).as_posix() for pattern in SPACE_FILES for path in repo.glob(pattern)
             if path.is_file() and "__pycache__" not in path.parts}
    missing = [name for name in ("app.py", "README.md", "requirements.txt") if name not in found]
    if missing:
        raise MMSupportError(f"{repo} has no {', '.join(missing)}.", hint="Deploy from a checkout of mmsupport.")
    return sorted(found)


def _variables(assignments: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` settings (``top_k=3`` or ``MMSUPPORT_TOP_K=3``) as ``MMSUPPORT_*`` variables, each checked."""
    variables = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        name = key.strip().upper().removeprefix(PREFIX).lower()
        if not sep or name not in {f.name for f in dataclasses.fields(Settings)}:
            raise InvalidInput(f"--set {assignment!r} does not name a setting.",
                               hint="Use SETTING=VALUE with a setting from the README's tables, e.g. --set top_k=3.")
        if name in SECRET_SETTINGS:
            raise InvalidInput(f"{PREFIX}{name.upper()} is a secret and cannot be a public variable.",
                               hint=f"Export {PREFIX}{name.upper()} in this shell instead: it is sent as a secret.")
        variables[PREFIX + name.upper()] = value
    try:
        load_settings(variables)  # a wrong value fails here, before anything is uploaded
    except InvalidInput as error:
        raise InvalidInput(error.message, hint="Fix that --set value.") from None
    return variables


def plan(space: str, *, hardware: str = "cpu-basic", private: bool = False, settings: list[str] = (),
         llamacpp: bool | None = None, env: Mapping[str, str] | None = None, repo: Path = REPO_DIR) -> DeployPlan:
    """Check the request and list what a deploy of ``repo`` to ``space`` (``USER/NAME``) would send.

    Secrets are the :data:`SECRET_SETTINGS` set in ``env`` (default: this process's environment). ``llamacpp``
    (default: on :data:`CPU_HARDWARE`) adds the llama.cpp runtime to the Space's requirements and sets
    ``MMSUPPORT_RUNTIME=auto`` unless ``settings`` name a runtime.
    """
    import os

    if not _SPACE_ID.fullmatch(space or ""):
        raise InvalidInput(f"{space!r} is not a Space id.", hint="Use USER/NAME, e.g. --space acme/support.")
    if hardware not in HARDWARE:
        raise InvalidInput(f"Unknown Space hardware {hardware!r}.", hint=f"Use one of: {', '.join(HARDWARE)}.")
    env = os.environ if env is None else env
    secrets = {PREFIX + name.upper(): env[PREFIX + name.upper()] for name in SECRET_SETTINGS
               if env.get(PREFIX + name.upper())}
    variables, extra = _variables(list(settings)), []
    if (hardware in CPU_HARDWARE) if llamacpp is None else llamacpp:
        lines = (repo / LLAMACPP_REQUIREMENTS).read_text().splitlines()
        extra = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        variables.setdefault(f"{PREFIX}RUNTIME", "auto")
    return DeployPlan(space, space_files(repo), hardware, private, secrets, variables, extra)


def write_folder(deploy: DeployPlan, folder: str | Path, repo: Path = REPO_DIR) -> Path:
    """Copy the plan's files into ``folder`` (a Space checkout, or a folder to inspect); returns it."""
    folder = Path(folder)
    for name in deploy.files:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)
    if deploy.extra_requirements:
        with (folder / "requirements.txt").open("a") as requirements:
            requirements.write(f"# the llama.cpp runtime ({LLAMACPP_REQUIREMENTS}), compiled when the Space builds\n")
            requirements.write("".join(f"{line}\n" for line in deploy.extra_requirements))
    return folder


def push(deploy: DeployPlan, *, token: str | None = None, repo: Path = REPO_DIR) -> str:
    """Create (or update) the Space, set its secrets and variables, upload the files; returns the Space's URL.

    Files of an earlier deploy under ``mmsupport/`` and ``data/`` that are no longer part of the app are removed.
    """
    import tempfile

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = HfApi(token=token)
    try:
        api.create_repo(deploy.space, repo_type="space", space_sdk="gradio", private=deploy.private, exist_ok=True,
                        space_hardware=deploy.hardware)
        for key, value in deploy.secrets.items():
            api.add_space_secret(deploy.space, key, value)
        for key, value in deploy.variables.items():
            api.add_space_variable(deploy.space, key, value)
        with tempfile.TemporaryDirectory() as staging:
            api.upload_folder(repo_id=deploy.space, repo_type="space", folder_path=write_folder(deploy, staging, repo),
                              commit_message="Deploy mmsupport", delete_patterns=["mmsupport/**", "data/**"])
    except LocalTokenNotFoundError:
        raise MMSupportError("No Hugging Face token found.",
                             hint="Run `hf auth login` or set HF_TOKEN to a token with write access.") from None
    except HfHubHTTPError as error:
        raise MMSupportError(f"The Hub refused the deploy to {deploy.space}: {error}.",
                             hint="Check that the token may write to that user or organisation.") from None
    except OSError as error:
        raise MMSupportError(f"Could not reach the Hugging Face Hub: {error}.",
                             hint="Check the network, or use --dry-run / --to DIR offline.") from None
    return deploy.summary()["url"]
