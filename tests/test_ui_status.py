"""The status line: the catalog and the model load in the background and say why when they cannot."""

import dataclasses
import time

import pytest

from mmsupport.config import load_settings
from mmsupport.errors import MMSupportError
from mmsupport.app.resources import Resources


def wait_loaded(resources: Resources) -> None:
    deadline = time.monotonic() + 300
    while resources.loading and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_missing_model_leaves_the_catalog_usable_and_says_why(sample_catalog_settings, tmp_path):
    settings = dataclasses.replace(sample_catalog_settings, model=str(tmp_path / "no-such-model"))
    resources = Resources(settings)
    wait_loaded(resources)
    assert resources.catalog_state == "ready" and resources.wait_for_catalog().get("P0001") is not None
    assert resources.model_state == "unavailable" and resources.state == "unavailable"
    status = resources.admin_status()
    assert "Model unavailable" in status and "no-such-model" in status and "best-matching catalog items" in status
    shopper = resources.shopper_status()  # plain words: no model path, no settings, no fix-it detail
    assert shopper == "Answers are shorter than usual right now."


def test_an_unusable_catalog_folder_is_reported(tmp_path):
    not_a_folder = tmp_path / "db"
    not_a_folder.write_text("a file where the catalog folder should be")
    resources = Resources(load_settings(db_dir=not_a_folder, model=str(tmp_path / "no-model")))
    wait_loaded(resources)
    assert resources.catalog_state == "unavailable"
    assert "Catalog unavailable" in resources.admin_status()
    assert "MMSUPPORT" not in resources.shopper_status() and "not available" in resources.shopper_status()
    with pytest.raises(MMSupportError):
        resources.wait_for_catalog()
