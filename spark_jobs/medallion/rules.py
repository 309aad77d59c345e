"""The rule catalog, compiled from include/pipeline.yaml into Spark SQL expressions (no rule is written in Python).

Why compiled: every silver column has a contract (`quality.contracts`: type, nullability, range, outlier band,
vocabulary, pattern, time window), and a rule that is derived from a contract cannot be forgotten for a column or
written twice. Each contract yields, by its keys:

- `valid_<column>` (quarantine): present if required; and, when present, its pattern / vocabulary / range / window;
- `finite_<column>` (quarantine, doubles): not NaN, not +-Infinity -- Spark orders NaN above every number, so a
  range or `> 0` alone lets it through, and one NaN turns every sum it reaches in gold into NaN;
- `typical_<column>` (warn): inside the outlier band.

Then the cross-column / row rules of `quality.rules` (a string is a quarantine rule; `{expr, severity}` sets one).
Severities are Delta Live Tables': warn (kept, counted, flagged), quarantine, fail (the run stops). A contract
naming a code set adds `known_<column>` (quarantine): a well-formed code that is not in the set -- format and existence
are different reasons. Membership itself comes from a join against the set's reference table (`codesets.py`), which
sets the `_known_<column>` flag the rule reads.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from .config import ConfigError

SEVERITIES = ("warn", "quarantine", "fail")
TYPES = ("int", "double", "string", "boolean", "date", "timestamp")
_PLACEHOLDER = re.compile(r"\{([\w.]+)\}")


@dataclass(frozen=True)
class Rule:
    name: str
    expr: str  # Spark SQL; TRUE means the row passes (NULL counts as a failure)
    severity: str  # warn | quarantine | fail
    column: str | None = None  # the contract's column; None for a row rule


def _sql_string(value: str) -> str:
    """A SQL string literal (backslashes and quotes escaped)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _section(quality: dict, section: str, name: str, what: str):
    try:
        return quality[section][name]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{what} refers to {name!r}, which is not in quality.{section}") from exc


def _fill(expr: str, quality: dict, env: str | None = None) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name == "env":  # left as written where no job runs (the catalog's text, its version)
            return "{env}" if env is None else env.replace("'", "''")
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


def finite(col: str) -> str:
    return f"NOT isnan({col}) AND abs({col}) != double('Infinity')"


def contract_rules(quality: dict, entity: str) -> list[Rule]:
    """The rules one entity's column contracts imply, in contract order."""
    contracts = (quality.get("contracts") or {}).get(entity) or {}
    skew = int(quality.get("clock_skew_minutes", 0))
    out: list[Rule] = []
    for col, c in contracts.items():
        what = f"contract {entity}.{col}"
        typ = c.get("type")
        if typ not in TYPES:
            raise ConfigError(f"{what}: type {typ!r} is not one of {', '.join(TYPES)}")
        checks = []
        if "pattern" in c:
            checks.append(f"{col} RLIKE {_sql_string(_section(quality, 'patterns', c['pattern'], what))}")
        if "vocabulary" in c:
            vocab = _section(quality, "vocabularies", c["vocabulary"], what)
            checks.append(f"{col} IN (" + ", ".join("'" + str(v).replace("'", "''") + "'" for v in vocab) + ")")
        if "range" in c:
            rng = _section(quality, "ranges", c["range"], what)
            checks.append(f"{col} BETWEEN {rng['min']} AND {rng['max']}")
        if "window" in c:
            floor = _section(quality, "floors", c["window"]["floor"], what)
            if typ == "date":
                checks.append(
                    f"{col} >= DATE'{floor}' AND {col} <= CAST(current_timestamp() + INTERVAL {skew} MINUTES AS DATE)"
                )
            elif typ == "timestamp":
                checks.append(
                    f"{col} >= TIMESTAMP'{floor} 00:00:00' AND {col} <= current_timestamp() + INTERVAL {skew} MINUTES"
                )
            else:
                raise ConfigError(f"{what}: a window needs a date or timestamp column")
        body = " AND ".join(checks)
        if typ == "double" and body:  # NaN / Infinity are finite_<col>'s reason, not the range's
            body = f"NOT ({finite(col)}) OR ({body})"
        if c.get("required"):
            if not body:
                expr = f"{col} IS NOT NULL"
            elif len(checks) == 1 and typ != "double":
                expr = f"{col} IS NOT NULL AND {body}"
            else:
                expr = f"{col} IS NOT NULL AND ({body})"
        elif body:
            expr = f"{col} IS NULL OR ({body})"
        else:
            expr = None
        if expr:
            out.append(Rule(c.get("rule", f"valid_{col}"), expr, "quarantine", col))
        if typ == "double":
            out.append(Rule(f"finite_{col}", f"{col} IS NULL OR ({finite(col)})", "quarantine", col))
        if "code_set" in c:  # existence, apart from the format: only a well-formed code is looked up
            fmt = f" OR NOT ({col} RLIKE {_sql_string(quality['patterns'][c['pattern']])})" if "pattern" in c else ""
            out.append(
                Rule(f"known_{col}", f"{col} IS NULL{fmt} OR {membership_flag(col)} IS NOT NULL", "quarantine", col)
            )
        if "typical" in c:
            band = c["typical"]
            out.append(
                Rule(f"typical_{col}", f"{col} IS NULL OR {col} BETWEEN {band['min']} AND {band['max']}", "warn", col)
            )
    return out


def membership_flag(col: str) -> str:
    """The column silver's code-set join sets (TRUE: the code is in the set)."""
    return f"_known_{col}"


def code_set_columns(quality: dict, entity: str) -> dict[str, str]:
    """column -> code set, for the entity's columns whose contract names one."""
    contracts = (quality.get("contracts") or {}).get(entity) or {}
    return {col: c["code_set"] for col, c in contracts.items() if "code_set" in c}


def row_rules(quality: dict, entity: str, env: str | None = None) -> list[Rule]:
    """The cross-column and row rules of `quality.rules` (placeholders filled)."""
    out = []
    for name, spec in ((quality.get("rules") or {}).get(entity) or {}).items():
        expr, severity = (spec, "quarantine") if isinstance(spec, str) else (spec.get("expr"), spec.get("severity"))
        if severity not in SEVERITIES:
            raise ConfigError(f"rule {entity}.{name}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        out.append(Rule(name, _fill(expr, quality, env), severity))
    return out


def catalog(quality: dict, entity: str, env: str | None = None) -> list[Rule]:
    """Every rule of one entity: the contracts' rules, then the row rules."""
    rules = contract_rules(quality, entity) + row_rules(quality, entity, env)
    if not rules:
        raise ConfigError(f"no quality rules configured for {entity}")
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ConfigError(f"{entity}: rule names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    return rules


def rule_expressions(quality: dict, entity: str, env: str | None = None) -> dict[str, str]:
    """name -> SQL boolean expression (TRUE means the row passes) for one entity, every severity."""
    return {r.name: r.expr for r in catalog(quality, entity, env)}


def failing(rules: list[Rule]) -> Column:
    """An array<string> column with the names of the given rules the row fails (NULL results count as failures)."""
    checks = [F.when(~F.coalesce(F.expr(r.expr), F.lit(False)), F.lit(r.name)) for r in rules]
    if not checks:
        return F.array().cast("array<string>")
    return F.filter(F.array(*checks), lambda x: x.isNotNull())


def failed_rules(quality: dict, entity: str, env: str, severity: str = "quarantine") -> Column:
    """The names of every rule of one severity the row fails."""
    return failing([r for r in catalog(quality, entity, env) if r.severity == severity])


def catalog_version(quality: dict) -> str:
    """A short content hash of everything that decides where a row goes: every entity's compiled rules with their
    severities and the code-set versions. It changes exactly when a judgement can."""
    content = {
        e: [(r.name, r.expr, r.severity) for r in catalog(quality, e)] for e in sorted(quality.get("contracts") or {})
    }
    content["_code_sets"] = {n: str(c.get("version")) for n, c in sorted((quality.get("code_sets") or {}).items())}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return digest[:12]
