"""The ICD-10-CM code set: the committed CMS extract, one dotted form, and format vs existence as separate reasons.
Expected codes are written by hand from the CMS FY2026 tabular list, not derived from the code under test."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import functions as F

from medallion.codesets import dotted_icd10, file_path, read_codes, versions, with_membership
from medallion.config import load_settings
from medallion.rules import catalog, failing, membership_flag

SETTINGS = load_settings()
QUALITY = SETTINGS.quality


def test_the_committed_extract_is_the_fy2026_billable_list_with_its_provenance():
    path = file_path(SETTINGS, "icd10cm")
    head = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert "fiscal year 2026" in head[0] and any("public domain" in line for line in head)
    assert versions(QUALITY) == {"icd10cm": "FY2026"}
    codes = read_codes(path)
    assert len(codes) == 74_719 == len(set(codes))  # the April 1, 2026 release
    known = set(codes)
    # billable codes, incl. 7-character injury codes and a 2020 emergency code
    # ... and the April 2026 category QA0, whose second character is a letter
    assert {"I10", "E11.9", "Z00.00", "M54.50", "S72.001A", "T38.3X6A", "U07.1", "E11.A", "QA0.0101"} <= known
    # headings (a claim must carry the most specific code) and codes deleted before FY2026 are absent
    assert not {"E11", "A00", "S72.001", "M54.5", "G35", "E78.0"} & known
    fmt = QUALITY["patterns"]["icd10"]
    assert pd.Series(codes).str.match(fmt).all()  # every real code is well formed


def test_codes_are_normalized_to_the_dotted_form(spark):
    raw = ["e119", " I10 ", "E11.9", "S72001A", "s72.001a", "QA00101", "E1", "123.45", "E 11 9", None]
    want = ["E11.9", "I10", "E11.9", "S72.001A", "S72.001A", "QA0.0101", "E1", "123.45", "E11.9", None]
    df = spark.createDataFrame([(r,) for r in raw], "c string")
    assert [r[0] for r in df.select(dotted_icd10(F.col("c"), QUALITY)).collect()] == want


def test_format_and_existence_are_different_reasons(spark):
    ref = spark.createDataFrame(pd.DataFrame({"code": read_codes(file_path(SETTINGS, "icd10cm")), "version": "FY2026"}))
    codes = ["E11.9", "E11", "E11.99", "I10.1", "E1", "1ZZ", "U07.1"]
    want = [[], ["known_diagnosis_code"], ["known_diagnosis_code"], ["known_diagnosis_code"]]
    want += [["valid_diagnosis_code"], ["valid_diagnosis_code"], []]
    df = spark.createDataFrame([(i, c) for i, c in enumerate(codes)], "i int, diagnosis_code string")
    df = with_membership(df, "diagnosis_code", ref, membership_flag("diagnosis_code"))
    rules = [r for r in catalog(QUALITY, "claims", "local") if r.column == "diagnosis_code"]
    got = df.orderBy("i").select(failing(rules).alias("f")).collect()
    assert [sorted(r.f) for r in got] == want
