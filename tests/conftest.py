"""Shared fixtures, the offline environment and the check that keeps the quick loop quick.

Heavier fixtures (tiny models, sample catalog, the app server) are session-scoped and built once. A test without
one of :data:`HEAVY_MARKERS` may not start a subprocess or a server, nor build or load a vision-language model or
load a speech model; if it does, it fails and says which marker it needs (README, "Tests").
"""

import os
import sys

#: Nothing may be downloaded from a model hub, on a developer's machine or in CI, whatever the shell exports.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
os.environ.update(OFFLINE)

import pytest  # noqa: E402

pytest_plugins = ["pytester"]

#: Markers of the tests allowed to do heavy work; the others are the quick loop.
HEAVY_MARKERS = ("slow", "browser", "notebook")
_HEAVY_WORK = pytest.StashKey[list]()


class HeavyWork(RuntimeError):
    """A test without a heavy marker started a subprocess or a server, or built or loaded a vision-language model."""


#: Modules whose own subprocesses are fine: libraries look up shared libraries and the platform while importing.
_LOOKUP_MODULES = ("ctypes.util", "platform", "uuid")


def _heavy_calls(item) -> list[tuple[object, str, str]]:
    """``(owner, attribute, what calling it does)`` for each call a quick test may not make."""
    import multiprocessing.process
    import socket
    import subprocess

    import tiny_models

    from mmsupport import finetune, speech, vlm

    calls = [(subprocess.Popen, "__init__", "starts a subprocess"),
             (multiprocessing.process.BaseProcess, "start", "starts a process"),
             (socket.socket, "listen", "starts a server"),
             (vlm.TransformersVLM, "_load", "loads a vision-language model"),
             (finetune, "_load_model", "loads a vision-language model"),
             (speech.WhisperASR, "__init__", "loads a speech model"),
             (tiny_models, "build_tiny_vlm", "builds a tiny vision-language model")]
    if getattr(item.module, "build_tiny_vlm", None) is tiny_models.build_tiny_vlm:
        calls.append((item.module, "build_tiny_vlm", "builds a tiny vision-language model"))
    return calls


def _refuse(found: list, what: str, original):
    def refuse(*args, **kwargs):
        if sys._getframe(1).f_globals.get("__name__") in _LOOKUP_MODULES:
            return original(*args, **kwargs)
        found.append(what)
        raise HeavyWork(f"this test {what}: mark it {' or '.join(HEAVY_MARKERS)} (README, 'Tests')")
    return refuse


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Run a test without a heavy marker with the heavy calls replaced by ones that fail it."""
    if any(item.get_closest_marker(name) for name in HEAVY_MARKERS):
        yield
        return
    found = item.stash[_HEAVY_WORK] = []
    with pytest.MonkeyPatch.context() as patch:
        for owner, name, what in _heavy_calls(item):
            patch.setattr(owner, name, _refuse(found, what, getattr(owner, name)))
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Fail the phase in which a quick test tried heavy work, even when the code under test caught the error."""
    outcome = yield
    report = outcome.get_result()
    found = item.stash.get(_HEAVY_WORK, [])
    if found:
        if report.passed:
            report.outcome = "failed"
            report.longrepr = f"this test {found[0]} but has no {'/'.join(HEAVY_MARKERS)} marker (README, 'Tests')"
        found.clear()


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory):
    """Folder of a tiny random SmolVLM-architecture (Idefics3) model + processor; see tests/tiny_models.py."""
    from tiny_models import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"), "idefics3")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """Folder of a tiny random CLIP (model + processor), loadable like openai/clip-vit-base-patch32."""
    from tiny_models import build_tiny_image_model

    return build_tiny_image_model(tmp_path_factory.mktemp("tiny_clip"), "clip")


@pytest.fixture(scope="session")
def image_catalog_settings(tmp_path_factory, tiny_clip_dir):
    """Settings whose table is the sample catalog with image vectors from the tiny CLIP, built once per session."""
    from mmsupport.catalog import ensure_sample_catalog
    from mmsupport.config import SAMPLE_DATA_DIR, load_settings

    if not (SAMPLE_DATA_DIR / "products.csv").is_file():
        pytest.skip("the sample catalog is not generated yet: run python data/generate_sample.py")
    settings = load_settings(db_dir=tmp_path_factory.mktemp("image_db"), table="catalog",
                             image_embedding_model=str(tiny_clip_dir))
    ensure_sample_catalog(settings)
    return settings


@pytest.fixture(scope="session")
def sample_catalog_settings(tmp_path_factory):
    """Settings whose table is the bundled sample catalog (data/), built once per session in a temp LanceDB folder."""
    from mmsupport.catalog import ensure_sample_catalog
    from mmsupport.config import SAMPLE_DATA_DIR, load_settings

    if not (SAMPLE_DATA_DIR / "products.csv").is_file():
        pytest.skip("the sample catalog is not generated yet: run python data/generate_sample.py")
    settings = load_settings(db_dir=tmp_path_factory.mktemp("sample_db"), table="catalog")
    ensure_sample_catalog(settings)
    return settings


def _answer_from_data(messages) -> str:
    """A scripted shop assistant's reply: the first two catalog items it was given, cited (or an apology)."""
    from mmsupport.safety import data_items

    content = messages[-1]["content"]
    text = content if isinstance(content, str) else " ".join(part.get("text", "") for part in content)
    found = data_items(text)
    if not found:
        return "I could not find that in our catalog."
    first, *rest = found
    also = f" You might also like [{rest[0]['id']}]." if rest else ""
    return f"The best match is {first['title'].strip()} [{first['id']}].{also}"


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory, sample_catalog_settings):
    """The real app on 127.0.0.1 for UI, API, security and browser tests.

    Its own copy of the sample catalog (admin tests write to it), a scripted VLM that cites the first items it is
    given and streams at a model's pace, admin password ``ui_server.admin_password``, a 2 MB upload limit.
    Attributes: ``url``, ``settings``, ``root`` (a scratch folder), ``demo``, ``catalog()``.
    """
    import shutil
    import socket
    import time
    from types import SimpleNamespace

    from fakes import ScriptedVLM

    from mmsupport.config import load_settings
    from mmsupport.app import build_demo

    class PacedVLM(ScriptedVLM):
        def stream(self, messages, **kwargs):
            for piece in super().stream(messages, **kwargs):
                time.sleep(0.03)
                yield piece

    root = tmp_path_factory.mktemp("ui_server")
    shutil.copytree(sample_catalog_settings.db_dir, root / "db")
    settings = load_settings(db_dir=root / "db", admin_password="open-sesame",
                             max_upload_mb=2)
    demo = build_demo(settings, vlm=PacedVLM(default=_answer_from_data, description="a running shoe", chunk=4))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", settings=settings, root=root, demo=demo,
                          admin_password=settings.admin_password, catalog=demo.resources.wait_for_catalog)
    demo.close()


_POSTGRES_SERVERS = []


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL 15 server on 127.0.0.1 for the whole run (tests/postgres.py); tests using it are slow.

    It is stopped at the end of the run (:func:`pytest_sessionfinish`), not in a fixture teardown, which would run
    inside whichever test came last, quick ones included.
    """
    import postgres

    reason = postgres.missing()
    if reason:
        pytest.skip(reason)
    server = postgres.PostgresServer()
    _POSTGRES_SERVERS.append(server)
    server.start()
    return server


def pytest_sessionfinish(session):
    while _POSTGRES_SERVERS:
        server = _POSTGRES_SERVERS.pop()
        server.stop()
        server.remove()
