"""Poison files: one landing file whose content makes reading it fail never stops ingestion (issue 23).

One landing zone holds a good file of every entity beside one poison file per class. A single bronze run must land
every good row once, record each poison file as `rejected` with a reason that quotes none of its values, move its
checkpoint past it (the next run succeeds and ingests nothing), and log none of the poison files' values.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers import CLAIMS_HEADER, EVENTS_HEADER, PATIENTS_HEADER

from medallion.lakehouse import Lakehouse
from medallion.schemas import landing_columns

REST = "FEMALE,SOUTHWEST,25.5,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00"
# Values that must never appear in a log line, a summary or an ops row: each poison file holds one
SECRET_VALUES = ["Zelda`s", "Quincyx", "Yolanda", "Xavierz", "Wilhelm", "P9990001", "P9990002"]

GOOD = {
    "good/patients.csv": PATIENTS_HEADER + f"P0000001,Ann,Lee,40,{REST}\nP0000002,Bo,Lee,41,{REST}\n",
    "good/claims.csv": CLAIMS_HEADER + "C0000001,P0000001,120.5,2026-01-02,E11.9,99213,PAID\n",
    "good/medical_events.csv": EVENTS_HEADER + "E0000001,P0000001,2026-01-02,LAB_TEST,Valley Lab Services\n",
}
# class -> (file, content): every one is rejected
POISON = {
    # a real export mistake: the header is missing, so the first data row is read as one, with a backtick in it
    "data_row_as_header": ("data_row/patients.csv", f"P9990001,Zelda`s,Lee,40,FEMALE\nP9990002,Bo,Lee,41,{REST}\n"),
    "backtick_in_a_name": (
        "backtick/claims.csv",
        CLAIMS_HEADER.replace("claim_status", "claim`status")
        + "C9990001,P0000001,12.5,2026-01-02,E11.9,99213,Quincyx\n",
    ),
    "duplicate_names": (
        "duplicate/medical_events.csv",
        EVENTS_HEADER.replace("event_type", "event_id") + "E9990001,P0000001,2026-01-02,E9990002,Yolanda\n",
    ),
    "not_csv": ("binary/patients.csv", "\x89PNG\r\n\x1a\n\x00Xavierz\x00\x01\x02"),
    "thousands_of_columns": (
        "wide/claims.csv",
        ",".join(landing_columns("claims") + [f"c{i}" for i in range(3000)]) + "\nC9990002,P0000001,Wilhelm\n",
    ),
}
# a file without a header whose first line has exactly the expected width: read by position, every row kept
HEADERLESS = ("headerless/patients.csv", f"P0000003,Cy,Lee,40,{REST}\nP0000004,Di,Lee,41,{REST}\n")


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def _run_bronze() -> tuple[dict, list[str]]:
    """One bronze run through the real entry-point code; its summary and every log line it emitted."""
    import io
    from contextlib import redirect_stdout

    from medallion import bronze
    from medallion.cli import run_job

    handler, out = _Records(), io.StringIO()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with redirect_stdout(out):
            code = run_job("bronze", bronze.run, bronze.add_arguments, [])
    finally:
        root.removeHandler(handler)
    summary = json.loads([line for line in out.getvalue().splitlines() if line.startswith("{")][-1])
    assert code == 0, summary.get("reason")
    return summary, handler.lines + out.getvalue().splitlines()


@pytest.fixture(scope="module")
def poisoned(spark, tmp_path_factory):
    """One bronze run over the good and poison files, then a second run; what they left."""
    from medallion.config import load_settings

    root = tmp_path_factory.mktemp("poison") / "lakehouse"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDALLION_LAKEHOUSE", str(root))
        settings = load_settings()
        landing = Path(settings.location("landing"))
        for rel, text in [*GOOD.items(), *POISON.values(), HEADERLESS]:
            (landing / rel).parent.mkdir(parents=True, exist_ok=True)
            (landing / rel).write_bytes(text.encode("utf-8"))
        summary, lines = _run_bronze()
        again, again_lines = _run_bronze()
        lake = Lakehouse(spark, settings)
        tables = {e: lake.read(settings.table_name("bronze", e)) for e in ("patients", "claims", "medical_events")}
        ops = {r["file_path"]: r.asDict() for r in lake.read("ops_bronze_files").collect()}
        yield {
            "summary": summary,
            "again": again,
            "lines": lines + again_lines,
            "tables": tables,
            "ops": ops,
            "settings": settings,
            "lake": lake,
        }


def test_poison_files_are_rejected_alone_and_every_good_row_lands_once(poisoned):
    ops, tables = poisoned["ops"], poisoned["tables"]
    for name, (rel, _) in POISON.items():
        assert ops[rel]["status"] == "rejected" and ops[rel]["rows"] == 0 and ops[rel]["reason"], name
    # the good rows, counted from the landing files above, exactly once; nothing of a poison file
    ids = {e: sorted(r[0] for r in df.select(df.columns[0]).collect()) for e, df in tables.items()}
    assert ids == {
        "patients": ["P0000001", "P0000002", "P0000003", "P0000004"],
        "claims": ["C0000001"],
        "medical_events": ["E0000001"],
    }
    # the headerless file of the expected width: read by position, its first line a row
    assert ops[HEADERLESS[0]]["status"] == "ingested" and ops[HEADERLESS[0]]["rows"] == 2
    rejected = sorted(
        f"{e}: {f['file']}"
        for e, t in poisoned["summary"]["tables"].items()
        for f in t["files"]
        if f["status"] == "rejected"
    )
    assert sorted(poisoned["summary"]["unreadable_files"]) == rejected  # the bronze DAG's alert e-mails these
    assert len(rejected) == len(POISON)


def test_the_next_run_succeeds_and_takes_nothing_again(poisoned):
    assert poisoned["again"]["rows_ingested"] == 0 and poisoned["again"]["files_seen"] == 0


def test_no_value_of_a_poison_file_is_logged_summarized_or_recorded(poisoned):
    text = "\n".join([*poisoned["lines"], json.dumps(poisoned["summary"]), json.dumps(poisoned["ops"], default=str)])
    assert poisoned["lines"], "the run's log lines were not captured"
    for value in SECRET_VALUES:
        assert value not in text, value


def test_a_repaired_copy_under_a_new_landing_folder_is_ingested_once(poisoned):
    settings = poisoned["settings"]
    repaired = Path(settings.location("landing")) / "data_row_repaired" / "patients.csv"
    repaired.parent.mkdir(parents=True)
    repaired.write_text(PATIENTS_HEADER + f"P9990001,Zelda,Lee,40,{REST}\n", encoding="utf-8")
    first, _ = _run_bronze()
    second, _ = _run_bronze()
    assert (first["rows_ingested"], second["rows_ingested"]) == (1, 0)
    patients = poisoned["lake"].read(settings.table_name("bronze", "patients"))
    assert patients.where("patient_id = 'P9990001'").count() == 1
