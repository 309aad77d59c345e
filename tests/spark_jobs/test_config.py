"""The config loader: pipeline.yaml + environment + flags, and the rule catalog compiled from it."""

from __future__ import annotations

import pytest

from medallion.config import ConfigError, load_raw, load_settings
from medallion.rules import rule_expressions


def test_local_environment_is_the_default_and_lives_under_the_lakehouse_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDALLION_LAKEHOUSE", str(tmp_path / "lh"))
    monkeypatch.delenv("MEDALLION_ENV", raising=False)
    s = load_settings()
    assert (s.env, s.target, s.is_local) == ("local", "local", True)
    assert s.location("landing") == str(tmp_path / "lh" / "landing")
    assert s.location("checkpoints") == str(tmp_path / "lh" / "_checkpoints")
    assert s.table_name("silver", "claims") == "silver_claims"


def test_relative_lakehouse_root_is_relative_to_the_project(monkeypatch):
    monkeypatch.setenv("MEDALLION_LAKEHOUSE", "some/rel")
    s = load_settings()
    assert s.location("warehouse") == str((s.root / "some" / "rel" / "warehouse").resolve())


def test_placeholders_take_the_type_of_their_value(monkeypatch):
    monkeypatch.setenv("MEDALLION_PATIENTS_PER_BATCH", "250")
    assert load_raw()["generator"]["patients_per_batch"] == 250
    monkeypatch.delenv("MEDALLION_PATIENTS_PER_BATCH")
    assert load_raw()["generator"]["patients_per_batch"] == 1000


def test_a_placeholder_with_a_bare_dash_default_can_be_switched_off_with_an_empty_value(tmp_path):
    """`${VAR:-x}` falls back when VAR is unset or empty; `${VAR-x}` only when unset, so VAR="" means "off"."""
    config = tmp_path / "include" / "pipeline.yaml"
    config.parent.mkdir()
    config.write_text("environments: {local: {}}\na: ${V:-x}\nb: ${V-x}\nc: ${V-}\n")
    assert [load_raw(config, env)["b"] for env in ({}, {"V": ""}, {"V": "y"})] == ["x", "", "y"]
    assert [load_raw(config, env)["a"] for env in ({}, {"V": ""}, {"V": "y"})] == ["x", "x", "y"]
    assert load_raw(config, {})["c"] == ""


def test_env_flag_selects_a_databricks_environment(monkeypatch):
    monkeypatch.setenv("MEDALLION_USER", "juan")
    s = load_settings("dev")
    assert s.target == "databricks" and not s.is_local
    assert s.catalog == "dev_juan"
    assert s.location("landing") == "/Volumes/dev_juan/data_eng/landing"


def test_unknown_environment_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        load_settings("qa")


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="pipeline config not found"):
        load_settings(config_path=tmp_path / "nope.yaml")


def test_rule_placeholders_are_filled_from_ranges_and_vocabularies():
    quality = load_raw()["quality"]
    rules = rule_expressions(quality, "patients")
    assert rules["valid_age"] == "age IS NOT NULL AND age BETWEEN 18 AND 85"
    assert rules["valid_sex"] == "sex IS NOT NULL AND sex IN ('MALE', 'FEMALE')"
    bad = {"rules": {"patients": {"r": "x IN ({nope})"}}}
    with pytest.raises(ConfigError, match="no vocabulary"):
        rule_expressions(bad, "patients")
