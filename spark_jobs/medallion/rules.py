"""The row-rule catalog from include/pipeline.yaml, compiled into Spark expressions (no rule is written in Python)."""

from __future__ import annotations

import re

from pyspark.sql import Column
from pyspark.sql import functions as F

from .config import ConfigError

_PLACEHOLDER = re.compile(r"\{([\w.]+)\}")


def _fill(expr: str, quality: dict) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if "." in name:
            rng, bound = name.split(".", 1)
            try:
                return str(quality["ranges"][rng][bound])
            except KeyError as exc:
                raise ConfigError(f"rule placeholder {{{name}}} has no range in quality.ranges") from exc
        pattern = quality.get("patterns", {}).get(name)
        if pattern is not None:  # goes inside a SQL string literal: escape backslashes and quotes
            return str(pattern).replace("\\", "\\\\").replace("'", "\\'")
        vocab = quality.get("vocabularies", {}).get(name)
        if vocab is None:
            raise ConfigError(
                f"rule placeholder {{{name}}} has no vocabulary in quality.vocabularies nor pattern in quality.patterns"
            )
        return ", ".join("'" + str(v).replace("'", "''") + "'" for v in vocab)

    return _PLACEHOLDER.sub(value, expr)


def rule_expressions(quality: dict, entity: str) -> dict[str, str]:
    """name -> SQL boolean expression (TRUE means the row passes) for one entity."""
    rules = quality.get("rules", {}).get(entity)
    if not rules:
        raise ConfigError(f"no quality rules configured for {entity}")
    return {name: _fill(expr, quality) for name, expr in rules.items()}


def failed_rules(quality: dict, entity: str) -> Column:
    """An array<string> column with the names of every rule the row fails (NULL results count as failures)."""
    checks = [
        F.when(~F.coalesce(F.expr(expr), F.lit(False)), F.lit(name))
        for name, expr in rule_expressions(quality, entity).items()
    ]
    return F.filter(F.array(*checks), lambda x: x.isNotNull())
