"""Property-based tests (hypothesis): arbitrary landing rows thrown at bronze -> silver through the jobs' real code.

Rows mix plausible values with arbitrary text (quotes, commas, newlines, any Unicode), numbers (NaN, +-Infinity, huge,
negative zero), dates far off and bytes that are not UTF-8. Two properties, whatever the rows:

1. every landed record ends in exactly one place: one bronze row per CSV record, and each in silver, quarantine,
   held or counted as a duplicate (the run's figures reconcile, and the tables hold what the figures say);
2. no silver row violates any column contract -- checked by an oracle written here in plain Python from the
   contracts' *data* (not by the rule compiler under test) and the committed CMS code list.

The jobs run with ANSI mode on, as Databricks serverless runs them: there a value that does not convert fails the
query unless every parse is a `try_` one, so no arbitrary value may fail a run. Each example is a whole bronze +
silver run on a fresh lakehouse, so examples are few and the test is `slow`.
"""

from __future__ import annotations

import csv
import io
import math
import re
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis import strategies as st

from medallion.codesets import file_path, read_codes
from medallion.config import load_settings
from medallion.schemas import landing_columns

SETTINGS = load_settings()
QUALITY = SETTINGS.quality
CODES = set(read_codes(file_path(SETTINGS, "icd10cm")))

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["NaN", "Inf", "-Inf", "Infinity", "-0.0", "1e308", "-1", "0", " 40 ", "1e-9"]),
    st.integers(-(10**12), 10**12).map(str),
)
dates = st.dates(date(1800, 1, 1), date(2200, 12, 31)).map(date.isoformat)


def vocab(name: str):
    words = QUALITY["vocabularies"][name]
    return st.sampled_from(words).flatmap(lambda w: st.sampled_from([w, w.lower(), f" {w.title()} "]))


def field(plausible):
    """Mostly plausible values, sometimes anything."""
    return st.one_of(plausible, plausible, text, numbers, st.just(""))


patient = st.fixed_dictionaries(
    {
        "patient_id": field(st.integers(1, 40).map(lambda i: f"P{i:07d}")),
        "first_name": field(st.sampled_from(["Ann", 'Robert "Bob"', "Test", "Lee, Jr."])),
        "last_name": field(st.sampled_from(["Lee", "O'Neil", "Smith\nJones"])),
        "age": field(st.integers(0, 120).map(str)),
        "sex": field(vocab("sex")),
        "region": field(vocab("region")),
        "bmi": field(st.floats(10, 60).map(lambda v: f"{v:.1f}")),
        "smoker": field(st.sampled_from(["true", "false", "yes", "0"])),
        "children": field(st.integers(-2, 25).map(str)),
        "charges": field(st.floats(-10, 2e6).map(lambda v: f"{v:.2f}")),
        "insurance_plan": field(vocab("insurance_plan")),
        "coverage_start_date": field(dates),
        "timestamp": field(
            st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)).map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S"))
        ),
    }
)
claim = st.fixed_dictionaries(
    {
        "claim_id": field(st.integers(1, 60).map(lambda i: f"C{i:07d}")),
        "patient_id": field(st.integers(1, 40).map(lambda i: f"P{i:07d}")),
        "claim_amount": field(st.floats(-10, 2e6).map(lambda v: f"{v:.2f}")),
        "claim_date": field(dates),
        "diagnosis_code": field(st.sampled_from(["E11.9", "E119", "i10", "E11", "E11.99", "QA00101", "1ZZ"])),
        "procedure_code": field(st.sampled_from(["99213", "J1100", "0001U", "1234F", "W1234", "9921"])),
        "claim_status": field(vocab("claim_status")),
    }
)


def landing_bytes(entity: str, rows: list[dict], latin1: list[bool]) -> bytes:
    """RFC 4180 CSV (Python's csv module, independent of bronze): some records encoded as Latin-1, not UTF-8. A
    record with a carriage return is written with every field quoted: with `\\n` line ends, Python's minimal quoting
    leaves a bare CR, which RFC 4180 forbids and which Spark's reader (Auto Loader's too) takes as a line break."""
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(landing_columns(entity))
    out = head.getvalue().encode()
    for row, l1 in zip(rows, latin1):
        buf = io.StringIO()
        values = [row[c] for c in landing_columns(entity)]
        quoting = csv.QUOTE_ALL if any("\r" in v for v in values) else csv.QUOTE_MINIMAL
        csv.writer(buf, lineterminator="\n", quoting=quoting).writerow(values)
        out += buf.getvalue().encode("latin-1", "replace") if l1 else buf.getvalue().encode("utf-8", "surrogatepass")
    return out


def _pattern(name: str) -> re.Pattern:
    return re.compile(QUALITY["patterns"][name].replace(r"\p{Cntrl}", r"\x00-\x1f\x7f"))


def violations(entity: str, row) -> list[str]:
    """The contracts a silver row breaks, judged in plain Python from the contracts' data."""
    now = datetime.now() + timedelta(minutes=int(QUALITY["clock_skew_minutes"]))
    out = []
    for col, c in QUALITY["contracts"][entity].items():
        v = row[col]
        if v is None:
            if c["required"]:
                out.append(f"{col}: null")
            continue
        if c["type"] == "double" and (math.isnan(v) or math.isinf(v)):
            out.append(f"{col}: not finite")
            continue
        if "range" in c:
            rng = QUALITY["ranges"][c["range"]]
            if not rng["min"] <= v <= rng["max"]:
                out.append(f"{col}: out of range")
        if "vocabulary" in c and v not in QUALITY["vocabularies"][c["vocabulary"]]:
            out.append(f"{col}: not in vocabulary")
        if "pattern" in c and not _pattern(c["pattern"]).search(v):
            out.append(f"{col}: pattern")
        if "code_set" in c and v not in CODES:
            out.append(f"{col}: not in the code set")
        if "window" in c:
            floor = date.fromisoformat(QUALITY["floors"][c["window"]["floor"]])
            low, high = (
                (floor, now.date()) if c["type"] == "date" else (datetime.combine(floor, datetime.min.time()), now)
            )
            if not low <= v <= high:
                out.append(f"{col}: outside its window")
    return out


@pytest.mark.slow
# quiet: a falsifying example is made-up rows, but it would still print names and identifiers into the log
@settings(
    max_examples=2, deadline=None, database=None, suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet
)
@given(
    patients=st.lists(patient, min_size=1, max_size=30),
    claims=st.lists(claim, max_size=30),
    encodings=st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_every_landed_row_ends_in_one_place_and_silver_keeps_every_contract(
    run_job, spark, monkeypatch, tmp_path, patients, claims, encodings
):
    from helpers import table

    root = Path(tempfile.mkdtemp(prefix="example-", dir=tmp_path)) / "lakehouse"  # one per example, under pytest's
    monkeypatch.setenv("MEDALLION_LAKEHOUSE", str(root))
    lake_settings = load_settings()
    landed = {"patients": patients, "claims": claims}
    folder = Path(lake_settings.location("landing")) / "2026-11-27T0500Z"
    folder.mkdir(parents=True)
    for i, (entity, rows) in enumerate(landed.items()):
        flags = [encodings[(i * 30 + j) % 60] and j % 5 == 0 for j in range(len(rows))]
        (folder / lake_settings.landing_file(entity)).write_bytes(landing_bytes(entity, rows, flags))
    spark.conf.set("spark.sql.ansi.enabled", "true")  # as on Databricks serverless: a bad cast fails the query
    try:
        bronze = run_job("bronze", "--entities", "patients,claims")["tables"]
        silver = run_job("silver", "--entities", "patients,claims")["entities"]
    finally:
        spark.conf.unset("spark.sql.ansi.enabled")
    for entity, rows in landed.items():
        assert bronze[entity]["rows_ingested"] == len(rows), entity  # one bronze row per CSV record
        s = silver[entity]
        assert s["rows_in"] == len(rows)
        assert s["rows_in"] == s["valid"] + s["quarantined"] + s["exact_duplicates"] + s["held"], entity
        q = table(spark, lake_settings, "quarantine", entity).count()
        assert q == s["quarantined"], entity
        if entity != "patients":
            assert table(spark, lake_settings, "held", entity).count() == s["held"]
        kept = table(spark, lake_settings, "silver", entity).collect()
        assert len(kept) == s["valid"] - s["superseded_in_batch"], entity
        broken = {r[0]: violations(entity, r) for r in kept if violations(entity, r)}
        assert not broken, (
            f"{entity}: {len(broken)} silver row(s) break a contract: {sorted(set(sum(broken.values(), [])))}"
        )
