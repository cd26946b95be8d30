"""A/B variants: the YAML file, its errors, sticky weighted assignment, and what a variant changes in a turn."""

import secrets
from collections import Counter

import pytest

from mmsupport.config import load_settings
from mmsupport.errors import InvalidInput
from mmsupport.experiments import Experiments, load_variants


def write(tmp_path, text, name="variants.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_issue_format_loads_and_a_variant_changes_only_its_settings(tmp_path):
    path = write(tmp_path, "variants:\n  control: {weight: 1}\n  fts: {weight: 1, search_mode: fts, top_k: 3}\n")
    experiments = Experiments.from_settings(load_settings({}, variants=path))
    assert [v.name for v in experiments.variants] == ["control", "fts"]
    base = load_settings({}, top_k=7)
    changed = experiments.get("fts").apply(base)
    assert (changed.search_mode, changed.top_k, changed.model) == ("fts", 3, base.model)
    assert experiments.get("control").apply(base) == base


def test_without_a_file_everyone_is_in_control():
    experiments = Experiments.from_settings(load_settings({}))
    assert {experiments.assign(secrets.token_hex(16)).name for _ in range(50)} == {"control"}


def test_the_control_is_the_variant_named_control_or_else_the_first(tmp_path):
    named = write(tmp_path, "variants:\n  b: {weight: 1}\n  control: {weight: 1}\n")
    first = write(tmp_path, "variants:\n  a: {weight: 2}\n  b: {weight: 1}\n", "other.yaml")
    assert Experiments(load_variants(named)).control.name == "control"
    assert Experiments(load_variants(first)).control.name == "a"


def test_assignment_is_sticky_and_follows_the_weights_over_2000_ids(tmp_path):
    path = write(tmp_path, "variants:\n  control: {weight: 3}\n  fts: {weight: 1, search_mode: fts}\n")
    ids = [secrets.token_hex(16) for _ in range(2000)]
    first = [Experiments(load_variants(path)).assign(key).name for key in ids]
    again = Experiments(load_variants(path))  # as after a restart
    assert [again.assign(key).name for key in ids] == first
    share = Counter(first)["fts"] / len(ids)
    # 25% expected; the binomial standard deviation over 2,000 ids is about 1 point, so 4 points is 4 sigma
    assert abs(share - 0.25) < 0.04, share


@pytest.mark.parametrize(("text", "line", "words"), [
    ("variants:\n  control: {weight: 1}\n  b:\n    weight: 1\n    serch_mode: fts\n", 5, "unknown key 'serch_mode'"),
    ("variants:\n  control: {weight: 1}\n  b: {weight: 1, search_mode: semantic}\n", 3, "search_mode must be one of"),
    ("variants:\n  control: {weight: 1}\n  b:\n    top_k: 3\n", 3, "variant 'b' has no weight"),
    ("variants:\n  control: {weight: 0}\n", 2, "weight must be a number above 0"),
    ("variants:\n  control: {weight: 1}\n  b: {weight: 1, top_k: 0}\n", 3, "top_k must be a whole number"),
    ("variants:\n  a: {weight: 1, no_match_threshold: 2}\n", 2, "no_match_threshold must be a number from 0 to 1"),
    ("variant:\n  control: {weight: 1}\n", 1, "one key, 'variants'"),
    ("variants:\n  control: {weight: 1\n  b: {weight: 1}\n", 3, "not valid YAML"),
    ("variants:\n  a: {weight: 1}\n  a: {weight: 2}\n", 3, "listed twice"),
    ("variants:\n  a: {weight: 1, prompt_file: missing.yaml}\n", 2, "prompt_file: Cannot read the prompt file"),
])
def test_a_broken_file_is_refused_with_its_line_and_key(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput) as caught:
        load_variants(path)
    assert f"{path}, line {line}: " in str(caught.value) and words in str(caught.value)


def test_a_prompt_file_naming_an_unknown_template_is_refused(tmp_path):
    write(tmp_path, "no_mach: Sorry!\n", "prompts.yaml")
    path = write(tmp_path, "variants:\n  a: {weight: 1}\n  b: {weight: 1, prompt_file: prompts.yaml}\n")
    with pytest.raises(InvalidInput, match=r"line 3: .*unknown templates: no_mach"):
        load_variants(path)


def test_the_app_does_not_start_with_a_broken_variants_file(tmp_path):
    from mmsupport.app import build_demo

    path = write(tmp_path, "variants:\n  control: {weight: 1, top_k: many}\n")
    with pytest.raises(InvalidInput, match="line 2: .*top_k must be a whole number"):
        build_demo(load_settings({}, db_dir=tmp_path / "db", variants=path), vlm=None, catalog=object())


def test_a_variant_prompt_file_and_threshold_change_the_agents_answer(tmp_path, sample_catalog_settings):
    from mmsupport.agent import Agent
    from mmsupport.catalog import Catalog

    write(tmp_path, "no_match: Nothing like that here, sorry. Shall I ask a colleague?\n", "prompts.yaml")
    path = write(tmp_path, "variants:\n  control: {weight: 1}\n"
                           "  strict: {weight: 1, prompt_file: prompts.yaml, no_match_threshold: 0.99}\n")
    experiments = Experiments(load_variants(path))
    catalog = Catalog.open(sample_catalog_settings)
    question = "What is your return policy?"  # names no product type, so only the similarity decides
    control = Agent(None, catalog, experiments.get("control").apply(sample_catalog_settings)).run_turn(question)
    strict = Agent(None, catalog, experiments.get("strict").apply(sample_catalog_settings)).run_turn(question)
    assert not control.no_match and control.top_score is not None and control.top_score < 0.99
    assert strict.no_match and strict.answer == "Nothing like that here, sorry. Shall I ask a colleague?"


@pytest.mark.slow  # loads a tiny vision-language model
def test_a_variant_with_its_own_model_loads_it_on_its_first_turn_and_keeps_it(tmp_path, tiny_vlm_dir):
    from fakes import ScriptedVLM

    from mmsupport.app.resources import Resources

    path = write(tmp_path, f"variants:\n  control: {{weight: 1}}\n  tiny: {{weight: 1, model: '{tiny_vlm_dir}'}}\n"
                           "  broken: {weight: 1, model: /no/such/model}\n")
    experiments = Experiments(load_variants(path))
    settings = load_settings({}, db_dir=tmp_path / "db", quantization="none")
    default = ScriptedVLM()
    resources = Resources(settings, vlm=default, catalog=object())
    assert resources.vlm_for(experiments.get("control").apply(settings)) is default
    tiny = resources.vlm_for(experiments.get("tiny").apply(settings))
    assert tiny is not default and tiny.name == str(tiny_vlm_dir)
    assert resources.vlm_for(experiments.get("tiny").apply(settings)) is tiny
    assert resources.vlm_for(experiments.get("broken").apply(settings)) is None  # its turns answer from retrieval
