"""Reference code sets (ICD-10-CM), versioned by fiscal year, held as reference Delta tables and checked by a join.

Why: a code can be well formed and still not exist (`E11.99`), or exist as a heading no claim may carry (`E11`); only
the official list tells. The list is the public-domain CMS / NCHS file, committed as a codes-only extract under
include/reference/ with its fiscal year and provenance (`quality.code_sets`). Silver loads it once per version into a
reference table (`ref_<name>`), then checks membership with a broadcast join against it: 75k codes are a ~1 MB hash
table on each executor, where an IN-list of 75k literals would be compiled into every plan.

Codes are compared in one form: dotted (`E119` -> `E11.9`), the form silver stores whatever form a claim sent
(X12 837 transmits them without the dot).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from .config import ConfigError, Settings

REF_SCHEMA = StructType([StructField("code", StringType(), False), StructField("version", StringType(), False)])


def code_sets(quality: dict) -> dict[str, dict]:
    return quality.get("code_sets") or {}


def versions(quality: dict) -> dict[str, str]:
    """name -> version of every configured code set (part of the rule catalog's version)."""
    return {name: str(spec["version"]) for name, spec in code_sets(quality).items()}


def spec_of(quality: dict, name: str) -> dict:
    try:
        return code_sets(quality)[name]
    except KeyError as exc:
        raise ConfigError(f"code set {name!r} is not in quality.code_sets") from exc


def read_codes(path: Path) -> list[str]:
    """The codes of a reference file: one per line, `#` comments and blank lines skipped."""
    if not path.is_file():
        raise ConfigError(f"code set file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith("#")]


def file_path(settings: Settings, name: str) -> Path:
    return settings.project_file(spec_of(settings.quality, name)["file"])


def dotted_icd10(col: Column, quality: dict) -> Column:
    """An ICD-10-CM code in its dotted form: upper-cased, spaces removed, the dot after the third character
    (`e119` -> `E11.9`, `E11.9` stays, `I10` stays). Anything else is left as it is, for the format rule to judge.
    What counts as an undotted code is `quality.patterns.icd10_undotted`."""
    code = F.upper(F.regexp_replace(col, r"\s", ""))
    undotted = code.rlike(quality["patterns"]["icd10_undotted"])
    return F.when(undotted, F.concat(F.substring(code, 1, 3), F.lit("."), F.substring(code, 4, 4))).otherwise(code)


def ensure_reference(lake, settings: Settings, name: str) -> str:
    """The reference table of a code set, (re)loaded from its file when it does not hold the configured version."""
    spec = spec_of(settings.quality, name)
    table, version = spec["table"], str(spec["version"])
    lake.ensure(table, REF_SCHEMA, "silver")
    held = [r[0] for r in lake.read(table).select("version").distinct().collect()]
    if held != [version]:
        codes = read_codes(file_path(settings, name))
        # a pandas frame goes over Arrow (one batch, Spark Connect too), not row by row
        import pandas as pd

        frame = lake.spark.createDataFrame(pd.DataFrame({"code": codes, "version": version}), REF_SCHEMA)
        lake.overwrite_where(frame, table, "true")
    return table


def with_membership(df: DataFrame, column: str, reference: DataFrame, flag: str) -> DataFrame:
    """`flag` is TRUE where `column` is in the reference set, NULL where not (a broadcast left join)."""
    ref = reference.select(F.col("code").alias(column), F.lit(True).alias(flag))
    return df.join(F.broadcast(ref), column, "left")


def extract(out: str) -> int:  # pragma: no cover - run by hand when a new fiscal year's file is committed
    """Write the billable ICD-10-CM codes of the installed simple-icd-10-cm release to `out` (codes only)."""
    import simple_icd_10_cm as cm

    codes = sorted({c for c in cm.get_all_codes(with_dots=True) if cm.is_leaf(c) and cm.is_category_or_subcategory(c)})
    header = [line for line in Path(out).read_text().splitlines() if line.startswith("#")] if Path(out).exists() else []
    Path(out).write_text("\n".join(header + codes) + "\n", encoding="utf-8")
    return len(codes)


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) == 3 and sys.argv[1] == "extract":
        print(extract(sys.argv[2]))
    else:
        sys.exit("usage: python -m medallion.codesets extract <file>")
