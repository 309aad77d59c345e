"""A backfill through the real Airflow components leaves the same nine domain tables as the same hours run one at a
time: the pipeline is incremental, idempotent and backfill-safe whatever way the hours are grouped into runs — also
with the backfill's jobs on a Spark Connect server (ANSI on) and the hours one at a time on the classic session."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from medallion.config import ENTITIES, load_settings

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = 80
HOURS = 2  # two hours suffice to group them differently (one backfill vs one run each); each more costs ~4 min
LAYERS = ("bronze", "silver", "gold")

# Columns that legitimately differ between two executions of the same data: when and by which run a row was
# ingested / processed / updated, the file's modification time and the ingestion-date partition. `_source_file`
# is compared relative to the landing root. Everything else must be equal.
VOLATILE = {
    "bronze": {"_ingested_at", "_run_id", "_ingest_date", "_source_modified_at"},
    "silver": {"_ingested_at", "_run_id", "_processed_at"},
    "gold": {"_updated_at"},
}
KEYS = {
    "bronze": {
        "patients": ["patient_id", "timestamp"],
        "claims": ["claim_id", "claim_status"],
        "medical_events": ["event_id"],
    },
    "silver": {"patients": ["patient_id", "record_ts"], "claims": ["claim_id"], "medical_events": ["event_id"]},
    "gold": {"patients": ["patient_key"], "claims": ["claim_id"], "medical_events": ["event_id"]},
}
NAMES = {"first_name", "last_name", "first_name_token", "last_name_token"}  # never in a failure message


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _comparable(df, layer: str):
    from pyspark.sql import functions as F

    df = df.drop(*VOLATILE[layer])
    if "_source_file" in df.columns:  # <landing root>/<interval>/<file> -> <interval>/<file>
        df = df.withColumn("_source_file", F.regexp_extract("_source_file", r"([^/]+/[^/]+)$", 1))
    return df


def _differences(backfilled, sequential, layer: str, entity: str) -> dict | None:
    """None when both tables hold the same multiset of rows; otherwise what differs, without row values beyond keys
    and the differing columns (never a name)."""
    only_b, only_s = backfilled.exceptAll(sequential), sequential.exceptAll(backfilled)
    n_b, n_s = only_b.count(), only_s.count()
    if not n_b and not n_s:
        return None
    keys = KEYS[layer][entity]
    columns = [c for c in backfilled.columns if c not in keys]
    joined = only_b.alias("b").join(only_s.alias("s"), keys)
    differing: dict[str, int] = {}
    examples, matched = [], 0
    for row in joined.select(*keys, *[f"b.{c}" for c in columns], *[f"s.{c}" for c in columns]).collect():
        matched += 1
        values = list(row)
        b_vals, s_vals = values[len(keys) : len(keys) + len(columns)], values[len(keys) + len(columns) :]
        diff = [c for c, x, y in zip(columns, b_vals, s_vals) if x != y]
        for c in diff:
            differing[c] = differing.get(c, 0) + 1
        if len(examples) < 5:
            examples.append(
                {
                    **{k: values[i] for i, k in enumerate(keys)},
                    **{c: (b_vals[columns.index(c)], s_vals[columns.index(c)]) for c in diff if c not in NAMES},
                }
            )
    return {
        "table": f"{layer} {entity}",
        "only_backfill": n_b,
        "only_sequential": n_s,
        "matched_by_key": matched,
        "differing_columns": differing,
        "examples (backfill, sequential)": examples,
    }


@pytest.fixture(params=["classic", "connect"])
def airflow_engine(request, tmp_path):
    """What the backfill's jobs run on: a classic local session per job, or a Spark Connect server (ANSI on, the engine
    of serverless) every job is a client of. The reference hours always run in the tests' classic session."""
    if request.param == "classic":
        yield {}
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    import spark_servers

    server = spark_servers.start_connect(state=tmp_path / "spark-connect")
    try:
        yield {"SPARK_REMOTE": f"sc://127.0.0.1:{server.port}"}
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.extended  # ~8 minutes of make test's 30 (make test-extended runs it)
def test_backfill_through_airflow_equals_the_hours_run_one_at_a_time(
    tmp_path, monkeypatch, spark, run_job, airflow_engine
):
    # hours well in the past (beyond the generator's 24 h look-back from now), backfilled as a data engineer would
    first = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=48)
    hours = [first + timedelta(hours=i) for i in range(HOURS)]
    backfill_lake = tmp_path / "backfill_lakehouse"
    # The scheduler also creates the latest hour's generation run once medallion_generate is unpaused (and one per
    # hour boundary crossed). Its default batch size is 0 here, so it lands header-only files and no domain row; the
    # backfill passes the real batch size in the backfill's run parameters.
    env = dict(
        os.environ,
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        MEDALLION_LAKEHOUSE=str(backfill_lake),
        MEDALLION_PATIENTS_PER_BATCH="0",
        MEDALLION_AIRFLOW_PORT=str(_free_port()),
        **airflow_engine,
    )
    summary_file = tmp_path / "backfill.json"
    with open(tmp_path / "backfill.out", "w") as out:  # the child keeps its own descriptor
        airflow = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "airflow_local.py"),
                "backfill",
                "--from-date",
                _iso(hours[0]),
                "--to-date",
                _iso(hours[-1]),
                "--conf",
                json.dumps({"patients_per_batch": PATIENTS}),
                "--timeout",
                "1500",
                "--summary-json",
                str(summary_file),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # the reference while Airflow works: the same hours one at a time, generate -> bronze -> silver -> gold each
        for start in hours:
            interval = [
                f"--interval-start={start.isoformat()}",
                f"--interval-end={(start + timedelta(hours=1)).isoformat()}",
            ]
            tag = f"{start:%Y%m%dT%H}"
            generated = run_job("generate", *interval, f"--patients={PATIENTS}", f"--run-id=sequential_generate_{tag}")
            assert generated["clean_rows"]["patients"] - generated["changed_rows"]["patients"] == PATIENTS
            for job in LAYERS:
                run_job(job, *interval, f"--run-id=sequential_{job}_{tag}")
        airflow.wait(timeout=3000)
    finally:
        if airflow.poll() is None:  # SIGINT: the script stops the Airflow components it started, then exits
            airflow.send_signal(signal.SIGINT)
            try:
                airflow.wait(timeout=90)
            except subprocess.TimeoutExpired:
                airflow.kill()
                airflow.wait()
    output = (tmp_path / "backfill.out").read_text()
    assert airflow.returncode == 0, output[-4000:]
    assert "Backfill 1 of medallion_generate done" in output
    summary = json.loads(summary_file.read_text())

    # the hours were generated by backfill runs that succeeded, with the backfill's parameters, one per hour
    backfill_runs = [r for r in summary["generate"]["runs"] if r["dag_run_id"] in summary["generate"]["backfill_runs"]]
    assert summary["backfill"]["completed_at"] and summary["backfill"]["max_active_runs"] == 1
    assert [datetime.fromisoformat(r["logical_date"].replace("Z", "+00:00")) for r in backfill_runs] == hours
    for run in backfill_runs:
        assert run["run_type"] == "backfill" and run["triggered_by"] == "backfill" and run["state"] == "success"
        assert run["summary"]["clean_rows"]["patients"] - run["summary"]["changed_rows"]["patients"] == PATIENTS
    # any other generation run (the latest hour, scheduled on unpausing) landed no row
    for run in summary["generate"]["runs"]:
        if run not in backfill_runs:
            assert run["run_type"] == "scheduled" and sum(run["summary"]["rows"].values()) == 0, run
    # bronze, silver and gold followed through their assets and all succeeded
    for layer in LAYERS:
        runs = summary[layer]["dag_runs"]
        assert runs and all(r["state"] == "success" for r in runs)
        assert any(r["run_type"] == "asset_triggered" for r in runs), runs
    landed = {e: sum(r["summary"]["rows"][e] for r in backfill_runs) for e in ENTITIES}
    assert summary["bronze"]["rows_ingested"] == sum(landed.values())

    # the nine domain tables: the same multiset of rows on both sides
    tables = {}
    for side, root in (("backfill", backfill_lake), ("sequential", tmp_path / "lakehouse")):
        monkeypatch.setenv("MEDALLION_LAKEHOUSE", str(root))
        settings = load_settings()
        base = os.path.join(settings.location("warehouse"), settings.schema)
        tables[side] = {
            (layer, entity): spark.read.format("delta").load(os.path.join(base, settings.table_name(layer, entity)))
            for layer in LAYERS
            for entity in ENTITIES
        }
    problems, counts = [], {}
    for (layer, entity), backfilled in tables["backfill"].items():
        sequential = tables["sequential"][(layer, entity)]
        assert backfilled.columns == sequential.columns
        backfilled, sequential = _comparable(backfilled, layer), _comparable(sequential, layer)
        counts[settings.table_name(layer, entity)] = (backfilled.count(), sequential.count())
        problem = _differences(backfilled, sequential, layer, entity)
        if problem:
            problems.append(problem)

    # non-trivial volumes: every landed row in bronze, three hours of patients with later versions, facts for them
    name = settings.table_name
    for entity in ENTITIES:
        assert counts[name("bronze", entity)][0] == landed[entity]
    assert counts[name("bronze", "patients")][0] > HOURS * PATIENTS
    assert counts[name("silver", "patients")][0] > HOURS * PATIENTS * 0.95
    assert counts[name("gold", "patients")][0] > HOURS * PATIENTS * 0.95
    for entity in ("claims", "medical_events"):
        assert counts[name("gold", entity)][0] > 2 * HOURS * PATIENTS
    assert sum(r["summary"]["changed_rows"]["patients"] for r in backfill_runs) > 0

    runs = "; ".join(f"{layer}: {[r['dag_run_id'] for r in summary[layer]['dag_runs']]}" for layer in LAYERS)
    assert problems == [], (
        "\n".join(map(str, problems)) + f"\nrow counts (backfill, sequential): {counts}\nruns: {runs}"
    )
