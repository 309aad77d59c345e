"""Governance on Unity Catalog: PHI column tags and who may read which layer (secrets: `medallion.secrets`).

Everything comes from `include/pipeline.yaml` → `governance`; nothing here touches data, so nothing here can log a
patient value.

- `phi_statements(settings, table_key, table_ref)`: the SQL that marks a table's PHI columns — on Databricks
  `ALTER TABLE … ALTER COLUMN … SET TAGS ('phi' = 'true', 'phi_kind' = '<kind>')` plus a column COMMENT; on the
  local target only the COMMENT (open-source Delta has no tags). Idempotent: run it after creating a table.
- `grant_statements(settings, table_key, table_ref)`: `GRANT SELECT` to the analysts group on the layers analysts
  may read (gold only); nothing for other layers. Unity Catalog only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import ConfigError, Settings


def _raw(settings_or_cfg: Settings | Mapping[str, Any]) -> Mapping[str, Any]:
    return settings_or_cfg.raw if isinstance(settings_or_cfg, Settings) else settings_or_cfg


def _is_local(settings_or_cfg: Settings | Mapping[str, Any]) -> bool:
    """No Unity Catalog (tags, grants): the local target, and open-source Spark (the emulated workspace)."""
    return isinstance(settings_or_cfg, Settings) and not settings_or_cfg.unity_catalog


def table_key_of(settings_or_cfg: Settings | Mapping[str, Any], table: str) -> str:
    """`<layer>.<entity>` for a table given as that key or by its configured name (e.g. `dim_patients`)."""
    tables = _raw(settings_or_cfg)["tables"]
    if "." in table:
        layer, entity = table.split(".", 1)
        if entity in tables.get(layer, {}):
            return table
        raise ConfigError(f"no table configured for {table}")
    for layer, names in tables.items():
        for entity, name in names.items():
            if name == table:
                return f"{layer}.{entity}"
    raise ConfigError(f"table {table!r} is not in the tables section of the config")


def is_configured(settings_or_cfg: Settings | Mapping[str, Any], table: str) -> bool:
    """Whether a table is one of the pipeline's (`tables` section); scratch tables carry no governance."""
    try:
        table_key_of(settings_or_cfg, table)
    except ConfigError:
        return False
    return True


def phi_columns(settings_or_cfg: Settings | Mapping[str, Any], table_key: str) -> dict[str, str]:
    """Column -> kind of PHI for one table (empty for tables without PHI, such as ops tables)."""
    gov = _raw(settings_or_cfg).get("governance", {})
    key = table_key_of(settings_or_cfg, table_key)
    columns = dict(gov.get("phi_columns", {}).get(key) or {})
    kinds = gov.get("phi_kinds", {})
    unknown = sorted({k for k in columns.values() if k not in kinds})
    if unknown:
        raise ConfigError(f"governance.phi_columns.{key}: unknown PHI kinds {unknown}; known: {sorted(kinds)}")
    return columns


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def phi_statements(settings_or_cfg: Settings | Mapping[str, Any], table_key: str, table_ref: str) -> list[str]:
    """SQL statements tagging (Unity Catalog) and commenting every PHI column of one table.

    `table_key` is `<layer>.<entity>` or the table's configured name; `table_ref` is the SQL reference of the
    table as the caller uses it (Lakehouse.ref(table): `` `catalog`.`schema`.`table` `` or `` delta.`/path` ``).
    """
    gov = _raw(settings_or_cfg).get("governance", {})
    tag = gov.get("phi_tag", "phi")
    kind_tag = gov.get("phi_kind_tag")
    kinds = gov.get("phi_kinds", {})
    statements = []
    for column, kind in phi_columns(settings_or_cfg, table_key).items():
        col = quote_identifier(column)
        if not _is_local(settings_or_cfg):
            tags = [f"{quote_string(tag)} = 'true'"]
            if kind_tag:
                tags.append(f"{quote_string(kind_tag)} = {quote_string(kind)}")
            statements.append(f"ALTER TABLE {table_ref} ALTER COLUMN {col} SET TAGS ({', '.join(tags)})")
        comment = f"PHI ({kind}): {kinds.get(kind, kind)}"
        statements.append(f"ALTER TABLE {table_ref} ALTER COLUMN {col} COMMENT {quote_string(comment)}")
    return statements


def phi_comments(settings_or_cfg: Settings | Mapping[str, Any], table_key: str) -> dict[str, str]:
    """Column -> comment for a table's PHI columns; set as column metadata when the table is created."""
    kinds = _raw(settings_or_cfg).get("governance", {}).get("phi_kinds", {})
    return {
        column: f"PHI ({kind}): {kinds.get(kind, kind)}"
        for column, kind in phi_columns(settings_or_cfg, table_key).items()
    }


def unity_catalog_statements(settings: Settings, table_key: str, table_ref: str) -> list[str]:
    """What Unity Catalog needs after a table is created (comments already travel with the schema): PHI tags and
    grants. Nothing on the local target."""
    if not settings.unity_catalog:
        return []
    return [s for s in phi_statements(settings, table_key, table_ref) if " SET TAGS " in s] + grant_statements(
        settings, table_key, table_ref
    )


def grant_statements(settings_or_cfg: Settings | Mapping[str, Any], table_key: str, table_ref: str) -> list[str]:
    """`GRANT SELECT` to the analysts group when the table's layer is one analysts may read (Unity Catalog only)."""
    if _is_local(settings_or_cfg):
        return []
    gov = _raw(settings_or_cfg).get("governance", {})
    layer = table_key_of(settings_or_cfg, table_key).split(".", 1)[0]
    group = gov.get("analysts_group")
    if not group or layer not in gov.get("analysts_read_layers", []):
        return []
    return [f"GRANT SELECT ON TABLE {table_ref} TO {quote_identifier(group)}"]
