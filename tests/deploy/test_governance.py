"""Governance: PHI columns are tagged from config, every tagged column exists, analysts get gold only, each
Databricks environment names its own secret scope."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medallion import gold, governance, schemas, silver
from medallion.config import ConfigError, load_raw, load_settings

# Columns that identify a patient or tie health data to one: wherever they appear they must be tagged.
MUST_TAG = {
    "patient_id",
    "first_name",
    "last_name",
    "first_name_token",
    "last_name_token",
    "claim_date",
    "event_date",
    "coverage_start_date",
    "diagnosis_code",
    "procedure_code",
    "record_ts",
    "timestamp",
    "patient_key",
}
BRONZE_META = {
    "_ingested_at",
    "_pipeline_env",
    "_source_file",
    "_source_modified_at",
    "_run_id",
    "_ingest_date",
    "_rescued_data",
}


def known_columns(table_key: str) -> set[str] | None:
    """The columns a table gets from the job code, for the tables whose columns are fixed by constants."""
    layer, entity = table_key.split(".")
    if layer == "bronze":
        return {f.name for f in schemas.BRONZE_SCHEMAS[entity].fields} | BRONZE_META
    if layer == "silver":
        return set(silver.SILVER_COLUMNS[entity]) | set(silver.LINEAGE) | {"_processed_at"}
    if layer in ("quarantine", "held"):
        return set(silver.Q_COLUMNS[entity]) | {"_row_hash", "_quarantined_at", "_held_since"}
    if table_key == "gold.patients":
        return {
            "patient_key",
            "patient_id",
            *gold.TRACKED,
            "effective_from",
            "effective_to",
            "is_current",
            "row_hash",
            "_updated_at",
        }
    return None


@pytest.fixture
def cfg():
    return load_raw(env={})


def test_every_table_holding_patient_data_has_its_phi_columns_listed(cfg):
    configured = set(cfg["governance"]["phi_columns"])
    expected = {f"{layer}.{entity}" for layer, names in cfg["tables"].items() if layer != "ops" for entity in names}
    assert configured == expected


def test_every_listed_phi_column_exists_and_no_identifying_column_is_left_untagged(cfg):
    gold_source = Path(gold.__file__).read_text()
    for key in cfg["governance"]["phi_columns"]:
        phi = governance.phi_columns(cfg, key)
        columns = known_columns(key)
        if columns is None:  # gold facts: columns built in gold.claim_facts / event_facts
            missing = [c for c in phi if f'"{c}"' not in gold_source]
            assert not missing, (key, missing)
            continue
        assert set(phi) <= columns, (key, set(phi) - columns)
        assert MUST_TAG & columns <= set(phi), (key, (MUST_TAG & columns) - set(phi))


def test_phi_statements_tag_and_comment_each_column_on_unity_catalog(monkeypatch):
    monkeypatch.setenv("MEDALLION_USER", "juan")
    settings = load_settings("dev")
    ref = "`dev_juan`.`data_eng`.`silver_patients`"
    statements = governance.phi_statements(settings, "silver.patients", ref)
    phi = governance.phi_columns(settings, "silver.patients")
    assert len(statements) == 2 * len(phi)
    for column, kind in phi.items():
        assert (
            f"ALTER TABLE {ref} ALTER COLUMN `{column}` SET TAGS ('phi' = 'true', 'phi_kind' = '{kind}')" in statements
        )
        (comment,) = [s for s in statements if s.startswith(f"ALTER TABLE {ref} ALTER COLUMN `{column}` COMMENT ")]
        assert re.fullmatch(rf"ALTER TABLE .+ COMMENT 'PHI \({kind}\): [^']+'", comment), comment
    # the table's configured name works as well as its key (what Lakehouse.ensure has at hand)
    assert governance.phi_statements(settings, "silver_patients", ref) == statements
    assert governance.phi_statements(settings, "dim_patients", "`t`") == governance.phi_statements(
        settings, "gold.patients", "`t`"
    )


def test_locally_only_comments_are_written_and_ops_tables_have_no_phi():
    settings = load_settings("local")
    statements = governance.phi_statements(settings, "bronze.claims", "delta.`/tmp/x`")
    assert statements and all(" COMMENT 'PHI (" in s for s in statements)
    assert not any("SET TAGS" in s for s in statements)
    assert governance.phi_statements(settings, "ops_table_counts", "delta.`/tmp/y`") == []
    assert governance.grant_statements(settings, "gold.claims", "delta.`/tmp/z`") == []


def test_analysts_get_select_on_gold_tables_only(monkeypatch):
    monkeypatch.setenv("MEDALLION_ANALYSTS_GROUP", "claims-analysts")
    settings = load_settings("prod")
    for name in settings.raw["tables"]["gold"].values():
        assert governance.grant_statements(settings, name, f"`c`.`s`.`{name}`") == [
            f"GRANT SELECT ON TABLE `c`.`s`.`{name}` TO `claims-analysts`"
        ]
    for layer in ("bronze", "silver", "quarantine", "held", "ops"):
        for name in settings.raw["tables"][layer].values():
            assert governance.grant_statements(settings, name, "`c`.`s`.`t`") == [], name
    table = governance.unity_catalog_statements(settings, "gold.claims", "`c`.`s`.`fact_claims`")
    assert table[-1].startswith("GRANT SELECT") and sum("SET TAGS" in s for s in table) >= 5


def test_identifiers_and_strings_are_quoted(cfg):
    cfg = dict(
        cfg,
        governance={
            **cfg["governance"],
            "phi_kinds": {"odd": "it's `odd`"},
            "phi_columns": {"bronze.patients": {"we`ird": "odd"}},
        },
    )
    (tag, comment) = governance.phi_statements(cfg, "bronze.patients", "`t`")
    assert "ALTER COLUMN `we``ird` SET TAGS" in tag
    assert comment.endswith("COMMENT 'PHI (odd): it\\'s `odd`'")


def test_unknown_tables_and_kinds_are_config_errors(cfg):
    with pytest.raises(ConfigError, match="not in the tables section"):
        governance.phi_statements(cfg, "no_such_table", "`t`")
    bad = dict(cfg, governance={**cfg["governance"], "phi_columns": {"bronze.claims": {"claim_id": "secretish"}}})
    with pytest.raises(ConfigError, match="unknown PHI kinds"):
        governance.phi_statements(bad, "bronze.claims", "`t`")


def test_each_databricks_environment_names_its_own_scope_and_keys(cfg):
    for env, env_cfg in cfg["environments"].items():
        if env_cfg["target"] != "databricks":
            continue
        # dev: one scope per developer (MEDALLION_USER, "user" when unset), so no developer reads another's salt
        assert env_cfg["secret_scope"] == (f"medallion-{env}" if env != "dev" else "medallion-dev-user")
        assert set(env_cfg["secret_keys"]) == {"hash_salt", "smtp_password"}


def test_gold_metric_views_are_unity_catalog_views_analysts_may_read(monkeypatch):
    from medallion import views
    from medallion.lakehouse import Lakehouse

    monkeypatch.setenv("MEDALLION_ANALYSTS_GROUP", "claims-analysts")
    settings = load_settings("prod")
    lake = Lakehouse(None, settings)  # statements only: no session needed
    statements = views.statements(lake)
    fact = f"`{settings.catalog}`.`{settings.schema}`.`{settings.table_name('gold', 'claims')}`"
    for name in views.VIEWS:
        ref = f"`{settings.catalog}`.`{settings.schema}`.`{name}`"
        (create,) = [s for s in statements if s.startswith(f"CREATE OR REPLACE VIEW {ref} AS SELECT")]
        assert "delta.`" not in create and "{" not in create  # every source resolved to its Unity Catalog name
        assert f"GRANT SELECT ON TABLE {ref} TO `claims-analysts`" in statements
    assert sum(fact in s for s in statements) == 3  # every claims view reads fact_claims by its catalog name
    local = views.statements(Lakehouse(None, load_settings("local")))
    assert all(s.startswith("CREATE OR REPLACE TEMPORARY VIEW gold_") for s in local) and len(local) == len(views.VIEWS)
