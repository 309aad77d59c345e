"""Bronze: every kind of malformed landing file becomes rows or an `unreadable` record; nothing lands twice.

One landing zone holds one file per malformed kind next to a clean file; a single bronze run must ingest all of
them (one bad file never stops the others), and each test below checks what became of one kind.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medallion.config import load_settings
from medallion.lakehouse import Lakehouse
from medallion.schemas import landing_columns

HEADER = ",".join(landing_columns("patients"))
CLEAN = [
    f"P{i:07d},Ann,Lee,40,FEMALE,SOUTHWEST,25.5,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00" for i in range(1, 4)
]
LONG_NAME = "N" * 2_000_000  # a 2 MB value: one over-long line

KINDS: dict[str, bytes] = {
    "clean/patients.csv": ("\n".join([HEADER, *CLEAN]) + "\n").encode(),
    "empty/patients.csv": b"",
    "header_only/patients.csv": (HEADER + "\n").encode(),
    # a row with one field too many, and a file whose header has an extra column
    "extra_row/patients.csv": (
        f"{HEADER}\nP0000010,Ann,Lee,40,FEMALE,SOUTHWEST,25.5,false,1,9000.5,GOLD,"
        "2025-01-01,2026-11-27 05:10:00,SURPLUS\n"
    ).encode(),
    "extra_header/patients.csv": (
        f"{HEADER},loyalty_tier\nP0000011,Ann,Lee,40,FEMALE,SOUTHWEST,25.5,false,1,"
        "9000.5,GOLD,2025-01-01,2026-11-27 05:10:00,GOLD_STAR\n"
    ).encode(),
    # a row with fields missing, and a file whose header lacks columns (in another order)
    "missing_row/patients.csv": f"{HEADER}\nP0000012,Ann,Lee,40\n".encode(),
    "missing_header/patients.csv": b"age,patient_id,sex\n41,P0000013,MALE\n",
    "wrong_types/patients.csv": (
        f"{HEADER}\nP0000014,Ann,Lee,forty,FEMALE,SOUTHWEST,heavy,maybe,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
    ).encode(),
    "non_utf8/patients.csv": (
        f"{HEADER}\n".encode() + b"P0000015,Jos\xe9,Lee,40,FEMALE,SOUTHWEST,25.5,false,1,"
        b"9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
    ),
    "crlf/patients.csv": (
        f"{HEADER}\r\nP0000016,Ann,Lee,40,FEMALE,SOUTHWEST,25.5,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\r\n"
    ).encode(),
    "quoted/patients.csv": (
        f'{HEADER}\nP0000017,"Ann, Jr.","Lee\nSmith",40,FEMALE,SOUTHWEST,25.5,false,1,'
        "9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
    ).encode(),
    # RFC 4180: a quote inside a quoted field is doubled
    "escaped_quotes/patients.csv": (
        f'{HEADER}\nP0000020,"Robert ""Bob""",Lee,40,FEMALE,SOUTHWEST,25.5,false,1,9000.5,GOLD,2025-01-01,'
        '2026-11-27 05:10:00\nP0000021,"Al ""Jr"", II","O\'Neil",41,MALE,SOUTHWEST,25.5,false,1,9000.5,GOLD,'
        "2025-01-01,2026-11-27 05:10:00\n"
    ).encode(),
    # header names in another case and with spaces around them: the same columns (Auto Loader, readerCaseSensitive=false)
    "header_case/patients.csv": (
        ",".join(f" {c.upper()} " if i % 2 else c.title() for i, c in enumerate(HEADER.split(",")))
        + "\n"
        + CLEAN[0].replace("P0000001", "P0000022")
        + "\n"
    ).encode(),
    "header_case_order/patients.csv": b" AGE ,Patient_ID,Sex\n42,P0000023,FEMALE\n",
    "long_line/patients.csv": (
        f"{HEADER}\nP0000018,{LONG_NAME},Lee,40,FEMALE,SOUTHWEST,25.5,false,1,9000.5,"
        "GOLD,2025-01-01,2026-11-27 05:10:00\n"
    ).encode(),
    "gzip/patients.csv.gz": gzip.compress(("\n".join([HEADER, "P0000019" + CLEAN[0][8:]]) + "\n").encode()),
    "unreadable/patients.csv.gz": gzip.compress((HEADER + "\n" + "\n".join(CLEAN) + "\n").encode())[:25],
}


@pytest.fixture(scope="module")
def landed(spark, tmp_path_factory):
    """One bronze run over a landing zone holding every malformed kind; (summary, rows by file, ops records)."""
    root = tmp_path_factory.mktemp("bronze") / "lakehouse"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDALLION_LAKEHOUSE", str(root))
        settings = load_settings()
        _land(settings, KINDS)
        summary = _run_bronze(["--entities", "patients", "--run-id", "bronze-kinds"])
        lake = Lakehouse(spark, settings)
        rows: dict[str, list] = {}
        for r in lake.read("bronze_patients").collect():
            rows.setdefault(r["_source_file"].split("/landing/")[1], []).append(r)
        ops = {r["file_path"]: r for r in lake.read("ops_bronze_files").collect()}
        again = _run_bronze(["--entities", "patients"])
        yield {
            "summary": summary["tables"]["patients"],
            "rows": rows,
            "ops": ops,
            "again": again,
            "lake": lake,
            "settings": settings,
        }


def _land(settings, files: dict[str, bytes]) -> None:
    """Write landing files (path under the landing folder -> bytes)."""
    for rel, data in files.items():
        path = Path(settings.location("landing")) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _run_bronze(argv: list[str]) -> dict:
    import io
    from contextlib import redirect_stdout

    from medallion import bronze
    from medallion.cli import run_job

    out = io.StringIO()
    with redirect_stdout(out):
        code = run_job("bronze", bronze.run, bronze.add_arguments, argv)
    summary = json.loads([l for l in out.getvalue().splitlines() if l.startswith("{")][-1])
    assert code == 0, summary
    return summary


def _file(landed, rel):
    return next(f for f in landed["summary"]["files"] if f["file"] == rel)


def test_every_file_is_accounted_for_in_the_summary_and_the_ops_table(landed):
    s = landed["summary"]
    assert s["files_seen"] == len(KINDS)
    assert {f["file"] for f in s["files"]} == set(KINDS) == set(landed["ops"])
    assert s["rows_ingested"] == sum(len(v) for v in landed["rows"].values()) == 17
    for rel, rec in landed["ops"].items():
        f = _file(landed, rel)
        assert (rec["status"], rec["rows"], rec["rescued_rows"]) == (f["status"], f["rows"], f["rescued_rows"])
        assert rec["rows"] == len(landed["rows"].get(rel, []))
        assert rec["rescued_rows"] == sum(r["_rescued_data"] is not None for r in landed["rows"].get(rel, []))
        assert rec["run_id"] == "bronze-kinds" and rec["file_modified_at"] is not None
    assert s["files_by_status"] == {"ingested": 14, "empty": 1, "header_only": 1, "unreadable": 1}


def test_clean_rows_keep_their_values_and_carry_lineage(landed):
    rows = sorted(landed["rows"]["clean/patients.csv"], key=lambda r: r["patient_id"])
    assert [r["patient_id"] for r in rows] == ["P0000001", "P0000002", "P0000003"]
    r = rows[0]
    assert (r["age"], r["bmi"], r["smoker"], r["charges"], r["timestamp"]) == (
        40,
        25.5,
        False,
        9000.5,
        "2026-11-27 05:10:00",
    )
    assert r["_rescued_data"] is None and r["_pipeline_env"] == "local" and r["_run_id"] == "bronze-kinds"
    assert r["_source_file"].endswith("/landing/clean/patients.csv") and r["_source_modified_at"] is not None
    assert r["_ingest_date"] == r["_ingested_at"].date()


def test_empty_file_is_recorded_with_no_rows(landed):
    assert _file(landed, "empty/patients.csv") == {
        "file": "empty/patients.csv",
        "status": "empty",
        "rows": 0,
        "rescued_rows": 0,
    }


def test_header_only_file_is_recorded_with_no_rows(landed):
    assert _file(landed, "header_only/patients.csv")["status"] == "header_only"
    assert "header_only/patients.csv" not in landed["rows"]


def test_extra_fields_are_rescued(landed):
    [row] = landed["rows"]["extra_row/patients.csv"]
    assert row["patient_id"] == "P0000010" and "SURPLUS" in row["_rescued_data"]
    [row] = landed["rows"]["extra_header/patients.csv"]  # matched by name: every known column typed
    assert (row["patient_id"], row["age"], row["timestamp"]) == ("P0000011", 40, "2026-11-27 05:10:00")
    assert json.loads(row["_rescued_data"]) == {"loyalty_tier": "GOLD_STAR"}


def test_missing_fields_are_null_and_matched_by_name(landed):
    [row] = landed["rows"]["missing_row/patients.csv"]
    assert (row["patient_id"], row["age"], row["sex"]) == ("P0000012", 40, None)
    assert row["_rescued_data"] == "P0000012,Ann,Lee,40"  # too few fields: the line is kept whole
    [row] = landed["rows"]["missing_header/patients.csv"]  # another header order: values follow their names
    assert (row["patient_id"], row["age"], row["sex"], row["first_name"]) == ("P0000013", 41, "MALE", None)
    assert row["_rescued_data"] is None


def test_values_of_the_wrong_type_are_null_and_kept_in_the_rescued_column(landed):
    [row] = landed["rows"]["wrong_types/patients.csv"]
    assert (row["age"], row["bmi"], row["smoker"]) == (None, None, None)
    assert row["patient_id"] == "P0000014" and "forty" in row["_rescued_data"] and "heavy" in row["_rescued_data"]


def test_non_utf8_bytes_are_flagged_not_passed_on(landed):
    [row] = landed["rows"]["non_utf8/patients.csv"]
    assert row["patient_id"] == "P0000015" and row["age"] == 40
    assert json.loads(row["_rescued_data"])["_encoding_error"] == "invalid UTF-8 bytes"


def test_crlf_line_endings_leave_no_carriage_return(landed):
    [row] = landed["rows"]["crlf/patients.csv"]
    assert row["timestamp"] == "2026-11-27 05:10:00" and row["_rescued_data"] is None


def test_quoted_commas_and_newlines_stay_inside_their_field(landed):
    [row] = landed["rows"]["quoted/patients.csv"]
    assert (row["first_name"], row["last_name"], row["age"]) == ("Ann, Jr.", "Lee\nSmith", 40)
    assert row["_rescued_data"] is None


def test_doubled_quotes_inside_quoted_fields_are_one_quote(landed):
    rows = sorted(landed["rows"]["escaped_quotes/patients.csv"], key=lambda r: r["patient_id"])
    got = [(r["first_name"], r["last_name"], r["age"], r["_rescued_data"]) for r in rows]
    assert got == [('Robert "Bob"', "Lee", 40, None), ('Al "Jr", II', "O'Neil", 41, None)]


def test_header_names_match_whatever_their_case_and_surrounding_spaces(landed):
    [row] = landed["rows"]["header_case/patients.csv"]
    assert (row["patient_id"], row["first_name"], row["age"], row["bmi"], row["timestamp"]) == (
        "P0000022",
        "Ann",
        40,
        25.5,
        "2026-11-27 05:10:00",
    )
    assert row["_rescued_data"] is None
    [row] = landed["rows"]["header_case_order/patients.csv"]  # another order too: values follow their names
    assert (row["patient_id"], row["age"], row["sex"], row["_rescued_data"]) == ("P0000023", 42, "FEMALE", None)


def test_an_over_long_line_is_one_whole_row(landed):
    [row] = landed["rows"]["long_line/patients.csv"]
    assert row["first_name"] == LONG_NAME and row["age"] == 40 and row["_rescued_data"] is None


def test_gzip_files_are_read_and_a_damaged_one_is_recorded_as_unreadable(landed):
    assert len(landed["rows"]["gzip/patients.csv.gz"]) == 1
    bad = _file(landed, "unreadable/patients.csv.gz")
    assert bad["status"] == "unreadable" and bad["rows"] == 0 and "EOFError" in bad["reason"]
    assert landed["summary"]["unreadable_files"] == ["unreadable/patients.csv.gz"]
    assert landed["ops"]["unreadable/patients.csv.gz"]["reason"] == bad["reason"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        # not gzip at all: gzip's own message quotes the file's first two bytes (b'P0')
        ("patients.csv.gz", b"P0099,Zelda,Quist,40\n"),
        # a gzip stream cut short, and one whose compressed bytes were overwritten
        ("patients.csv.gz", gzip.compress(b"patient_id\nP0099,Zelda,Quist\n" * 50)[:40]),
        ("patients.csv.gz", gzip.compress(b"patient_id\nP0099,Zelda,Quist\n")[:10] + b"P0099,Zelda" * 8),
    ],
    ids=["not_gzip", "truncated", "damaged"],
)
def test_an_unreadable_file_is_recorded_by_its_kind_of_damage_without_any_of_its_bytes(tmp_path, name, content):
    from medallion.bronze import probe, verify_compressed

    path = tmp_path / name
    path.write_bytes(content)
    status, reason = probe(str(path))
    damaged = verify_compressed(str(path))
    assert status == "unreadable" and damaged
    assert damaged.split(":")[0] in {"BadGzipFile", "EOFError", "error"}, damaged
    for text in (reason, damaged):
        for value in ("P0", "Zelda", "Quist", "b'"):
            assert value not in text, text


def test_a_second_run_ingests_nothing_and_records_nothing(landed):
    again = landed["again"]
    assert again["rows_ingested"] == 0 and again["files_seen"] == 0
    lake = landed["lake"]
    assert lake.read("bronze_patients").count() == 17 and lake.read("ops_bronze_files").count() == len(KINDS)


def test_tables_are_append_only_with_change_feed_and_layer_property(landed):
    lake = landed["lake"]
    for table, quality in (("bronze_patients", "bronze"), ("ops_bronze_files", "ops")):
        props = lake.detail(table)["properties"]
        assert props["delta.appendOnly"] == "true" and props["delta.enableChangeDataFeed"] == "true"
        assert props["quality"] == quality
    # file statistics only on the columns bronze is looked up by (bronze.stats_columns + the key): the write stays cheap
    stats = lake.detail("bronze_patients")["properties"]["delta.dataSkippingStatsColumns"]
    assert stats == "patient_id,_ingested_at,_source_file"
    fields = {f.name: f.metadata for f in lake.read("bronze_patients").schema.fields}
    assert fields["first_name"]["comment"].startswith("PHI (name)")  # governance: PHI columns say so
    assert fields["_rescued_data"]["comment"].startswith("PHI (raw)") and "comment" not in fields["_source_file"]
    with pytest.raises(Exception, match="(?i)append"):
        lake.delete("bronze_patients", "age = 40")


# ---- exactly once across crashes --------------------------------------------------------------------------

H = [
    ("2026-11-27T05:00:00Z", "2026-11-27T06:00:00Z"),
    ("2026-11-27T06:00:00Z", "2026-11-27T07:00:00Z"),
    ("2026-11-27T07:00:00Z", "2026-11-27T08:00:00Z"),
]


def _generate(run_job, patients: int) -> dict[str, int]:
    totals: dict[str, int] = {}
    for start, end in H:
        gen = run_job("generate", "--interval-start", start, "--interval-end", end, "--patients", str(patients))
        for entity, n in gen["rows"].items():
            totals[entity] = totals.get(entity, 0) + n
    return totals


def _assert_exact(spark, settings, totals):
    lake = Lakehouse(spark, settings)
    for entity, n in totals.items():
        df = lake.read(settings.table_name("bronze", entity))
        assert df.count() == n, entity
        # every file's rows landed once: per-file counts match the ops records of ingested files
        per_file = {
            r["_source_file"].split("/landing/")[1]: r["count"] for r in df.groupBy("_source_file").count().collect()
        }
        ops = lake.read("ops_bronze_files").where(f"table_name = 'data_eng.bronze_{entity}'").collect()
        assert sorted((r["file_path"], r["rows"]) for r in ops) == sorted(per_file.items())


def test_replaying_a_batch_whose_write_committed_adds_nothing(run_job, spark, settings, monkeypatch):
    """A crash after the Delta commit but before the checkpoint commit: the replayed batch is skipped."""
    monkeypatch.setenv("MEDALLION_BRONZE_MAX_FILES_PER_TRIGGER", "1")
    totals = {"claims": _generate(run_job, 50)["claims"]}
    assert run_job("bronze", "--entities", "claims")["rows_ingested"] == totals["claims"]
    commits = Path(settings.location("checkpoints")) / "bronze_claims" / "commits"
    last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    for name in (str(last), f".{last}.crc"):  # as if the process died between the two commits
        (commits / name).unlink()
    replay = run_job("bronze", "--entities", "claims")["tables"]["claims"]
    assert (replay["batches"], replay["batches_replayed"], replay["rows_ingested"]) == (1, 1, 0)
    assert replay["files"][0]["replayed"] is True
    _assert_exact(spark, settings, totals)


@pytest.mark.slow
def test_a_bronze_job_killed_mid_write_leaves_no_duplicate_and_no_gap(run_job, spark, settings, monkeypatch):
    monkeypatch.setenv("MEDALLION_BRONZE_MAX_FILES_PER_TRIGGER", "1")
    totals = {"patients": _generate(run_job, 3000)["patients"]}
    checkpoint = Path(settings.location("checkpoints")) / "bronze_patients"
    exe = Path(sys.executable).with_name("medallion-bronze")
    proc = subprocess.Popen(
        [str(exe), "--entities", "patients", "--run-id", "killed"],
        env=dict(os.environ),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180
    # kill while batch 1 runs: its offsets are written, its commit is not
    while time.time() < deadline and proc.poll() is None:
        if (checkpoint / "offsets" / "1").exists() and not (checkpoint / "commits" / "1").exists():
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    assert not (checkpoint / "commits" / "1").exists()
    after = run_job("bronze", "--entities", "patients", "--run-id", "restarted")
    assert after["tables"]["patients"]["files_seen"] >= 2  # the interrupted batch and what came after it
    _assert_exact(spark, settings, totals)


def test_the_real_summary_drives_the_failed_file_alert_and_carries_no_patient_data(landed):
    from medallion_airflow.alerts import unreadable_files_email

    subject, body = unreadable_files_email({"tables": {"patients": landed["summary"]}}, "medallion_bronze", "r1")
    assert subject.startswith("[medallion] 1 landing file(s)") and "unreadable/patients.csv.gz" in body
    text = json.dumps(landed["summary"]) + subject + body
    for value in ("P0000001", "P0000015", "Ann", "Lee", "Jos", "GOLD_STAR", "forty"):
        assert value not in text


def test_files_without_rows_are_accounted_for_on_the_auto_loader_path_too(spark, tmp_path, monkeypatch):
    """Auto Loader hands a batch only rows, so an empty, header-only or unreadable file never reaches the sink (the
    local source's log lists it; Auto Loader keeps no such log bronze could read). Run with the sink on its
    Databricks path, the same files end with the same statuses and reasons as on the local path."""
    from medallion.bronze import BronzeSink

    files = {k: KINDS[k] for k in ("clean/patients.csv", "empty/patients.csv", "header_only/patients.csv")}
    files["unreadable/patients.csv.gz"] = KINDS["unreadable/patients.csv.gz"]

    def run(local: bool) -> dict[str, tuple]:
        root = tmp_path / ("local" if local else "auto_loader") / "lakehouse"
        monkeypatch.setenv("MEDALLION_LAKEHOUSE", str(root))
        settings = load_settings()
        _land(settings, files)
        monkeypatch.setattr(BronzeSink, "local", property(lambda self: local))
        summary = _run_bronze(["--entities", "patients", "--run-id", "swept"])["tables"]["patients"]
        ops = Lakehouse(spark, settings).read("ops_bronze_files").collect()
        assert sorted(f["file"] for f in summary["files"]) == sorted(r["file_path"] for r in ops) == sorted(files)
        assert _run_bronze(["--entities", "patients"])["tables"]["patients"]["files_seen"] == 0  # recorded once
        return {r["file_path"]: (r["status"], r["rows"], (r["reason"] or "")[:20]) for r in ops}

    auto_loader = run(local=False)
    assert auto_loader == run(local=True)
    assert {f: s[0] for f, s in auto_loader.items()} == {
        "clean/patients.csv": "ingested",
        "empty/patients.csv": "empty",
        "header_only/patients.csv": "header_only",
        "unreadable/patients.csv.gz": "unreadable",
    }
