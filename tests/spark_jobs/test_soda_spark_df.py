"""Soda's spark_df data source without soda-core-spark-df (as on Databricks, where that package would bring
open-source pyspark): medallion.soda_spark_df must give the silver checks exactly the results the package gives."""

from __future__ import annotations

import importlib.abc
import sys

from test_soda import CLEAN, claim, few_rows_are_fine, lake, write_silver  # noqa: F401  (lake is a fixture)

from medallion import soda_checks, soda_spark_df
from medallion.config import ENTITIES


class _NoSparkDfPackage(importlib.abc.MetaPathFinder):
    """Makes `import soda.data_sources.spark_df_*` fail, as where soda-core-spark-df is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.startswith("soda.data_sources.spark_df"):
            raise ModuleNotFoundError(name)
        return None


def test_the_silver_checks_give_the_same_results_without_soda_core_spark_df(spark, lake, settings, monkeypatch):  # noqa: F811
    few_rows_are_fine(settings)
    data = dict(CLEAN, claims=CLEAN["claims"] + [claim("C-20001", "P-10001")])  # a duplicate key: a failing check
    write_silver(spark, lake, settings, data)
    with_package = soda_checks.run_scans(spark, lake, settings, "run-package", ENTITIES)
    assert type(sys.modules[soda_spark_df.MODULE]).__name__ == "module"
    assert sys.modules[soda_spark_df.MODULE].__file__.endswith("soda/data_sources/spark_df_data_source.py")

    for name in [m for m in sys.modules if m.startswith("soda.data_sources.spark_df")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoSparkDfPackage(), *sys.meta_path])
    without = soda_checks.run_scans(spark, lake, settings, "run-ours", ENTITIES)
    module = sys.modules[soda_spark_df.MODULE]
    assert module.SparkDfCursor is soda_spark_df.SparkDfCursor  # ours was used
    assert without == with_package
    assert without["failed"] >= 1 and without["checks"] > 10 and not without["soda_errors"]
