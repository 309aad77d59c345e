"""Detection quality against the generator's ground truth: recall and precision of the quarantine.

Reads every batch manifest (outside the landing folder) and the quarantine tables, matches them by
(batch, file, key) — defects whose key is empty are matched by count within their batch — and reports per entity:
expected defects caught by the expected rule (true positives), defects missed (false negatives) and quarantined
rows that no defect explains (false positives, i.e. clean rows wrongly quarantined). Rows held for a patient that
has not arrived count as caught by `patient_exists` (they become quarantine rows when their grace period ends). Exact duplicates are counted
by silver, not quarantined, and are reported separately.
"""

from __future__ import annotations

import json
import os

from pyspark.sql import functions as F

from .config import ENTITIES, Settings
from .lakehouse import Lakehouse
from .schemas import KEYS


def load_manifests(settings: Settings) -> list[dict]:
    root = settings.location("manifests")
    out = []
    for tag in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, tag, "manifest.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                out.append({"tag": tag, **json.load(fh)})
    return out


def evaluate(spark, settings: Settings) -> dict:
    lake = Lakehouse(spark, settings)
    manifests = load_manifests(settings)
    expected_rows = [
        (m["tag"], d["file"], d["key"] or "", d["expected_rule"], d["kind"])
        for m in manifests
        for d in m["defects"]
        if d["expected_rule"] != "duplicate"
    ]
    duplicates = sum(1 for m in manifests for d in m["defects"] if d["expected_rule"] == "duplicate")
    expected = spark.createDataFrame(expected_rows, "tag string, file string, key string, rule string, kind string")
    result = {"duplicates_injected": duplicates, "entities": {}}
    tp_all = fn_all = fp_all = 0
    for entity in ENTITIES:
        file = settings.landing_file(entity)
        exp = (
            expected.filter(F.col("file") == file)
            .groupBy("tag", "key")
            .agg(F.count("*").alias("n_exp"), F.collect_set("rule").alias("rules"))
        )
        # rows held for a missing patient are detected orphans too (quarantined once the grace period ends)
        caught_tables = [
            lake.read(settings.table_name("quarantine", entity))
            if lake.exists(settings.table_name("quarantine", entity))
            else None
        ]
        if entity != "patients" and lake.exists(settings.table_name("held", entity)):
            caught_tables.append(
                lake.read(settings.table_name("held", entity)).withColumn(
                    "_failed_rules", F.array(F.lit("patient_exists"))
                )
            )
        caught_tables = [
            t.select(KEYS[entity], "_source_file", "_failed_rules") for t in caught_tables if t is not None
        ]
        if caught_tables:
            q = caught_tables[0] if len(caught_tables) == 1 else caught_tables[0].unionByName(caught_tables[1])
            q = (
                q.withColumn("tag", F.element_at(F.split("_source_file", "/"), -2))
                .withColumn("key", F.coalesce(F.col(KEYS[entity]), F.lit("")))
                .groupBy("tag", "key")
                .agg(
                    F.count("*").alias("n_q"),
                    F.array_distinct(F.flatten(F.collect_list("_failed_rules"))).alias("failed"),
                )
            )
        else:
            q = spark.createDataFrame([], "tag string, key string, n_q long, failed array<string>")
        joined = exp.join(q, ["tag", "key"], "full_outer").fillna(0, ["n_exp", "n_q"])
        caught = F.when(
            F.col("failed").isNotNull() & F.col("rules").isNotNull() & (F.size(F.array_except("rules", "failed")) == 0),
            F.least("n_exp", "n_q"),
        ).otherwise(0)
        row = joined.select(
            F.sum(caught).alias("tp"), F.sum("n_exp").alias("expected"), F.sum("n_q").alias("quarantined")
        ).first()
        tp, n_exp, n_q = int(row["tp"] or 0), int(row["expected"] or 0), int(row["quarantined"] or 0)
        fn, fp = n_exp - tp, n_q - tp
        tp_all, fn_all, fp_all = tp_all + tp, fn_all + fn, fp_all + fp
        result["entities"][entity] = {
            "expected": n_exp,
            "quarantined_or_held": n_q,
            "true_positives": tp,
            "missed": fn,
            "false_positives": fp,
            "recall": round(tp / n_exp, 6) if n_exp else None,
            "precision": round(tp / n_q, 6) if n_q else None,
        }
    result.update(
        {
            "true_positives": tp_all,
            "missed": fn_all,
            "false_positives": fp_all,
            "recall": round(tp_all / (tp_all + fn_all), 6) if tp_all + fn_all else None,
            "precision": round(tp_all / (tp_all + fp_all), 6) if tp_all + fp_all else None,
        }
    )
    return result
