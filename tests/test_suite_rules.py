"""The suite's own rules (tests/conftest.py): offline whatever the shell exports, and quick tests stay quick."""

import os
import runpy
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def test_the_suite_is_offline_even_when_the_shell_says_otherwise(monkeypatch):
    for name in OFFLINE_VARIABLES:
        monkeypatch.setenv(name, "0")
    runpy.run_path(str(TESTS / "conftest.py"))
    assert [os.environ[name] for name in OFFLINE_VARIABLES] == ["1"] * len(OFFLINE_VARIABLES)


INNER_TESTS = """
import socket, subprocess, sys
import pytest

def test_spawns():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_serves():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

def test_swallows_the_error():
    try:
        subprocess.run([sys.executable, "-c", "pass"])
    except Exception:
        pass

def test_plain():
    assert sum([1, 2]) == 3

@pytest.mark.slow
def test_marked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
"""


@pytest.mark.slow  # runs pytest in a subprocess
def test_a_quick_test_that_starts_a_subprocess_or_a_server_fails_naming_the_markers(pytester, monkeypatch):
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_inner=INNER_TESTS)
    pytester.makeini("[pytest]\nmarkers =\n    slow: heavy\n    browser: browser\n    notebook: notebook\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines_random(["FAILED test_inner.py::test_spawns*", "FAILED test_inner.py::test_serves*",
                                        "FAILED test_inner.py::test_swallows_the_error*"])
    out = result.stdout.str()
    assert "HeavyWork: this test starts a subprocess: mark it slow or browser or notebook" in out
    assert "HeavyWork: this test starts a server: mark it slow or browser or notebook" in out
    assert "this test starts a subprocess but has no slow/browser/notebook marker" in out  # caught, still failed
