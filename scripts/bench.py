#!/usr/bin/env python
"""`make bench`: time a full local cycle, per job and end to end, at the default hourly volume and at 10x it.

Each repetition starts from an empty lakehouse and runs the five jobs' console entry points in order, exactly as
the local Airflow target runs them (one subprocess, one local Spark session per job). Figures are medians over
--runs repetitions. With --airflow-runs N the whole cycle is also timed through the real Airflow components.
Results go to bench/results.json and bench/results.md (machine noted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "spark_jobs"))
JOBS = ["generate", "bronze", "silver", "gold", "monitor"]
INTERVAL = ["--interval-start=2026-11-27T05:00:00+00:00", "--interval-end=2026-11-27T06:00:00+00:00", "--run-id=bench"]
CYCLE_BUDGET_S = 300  # the product request's end-to-end latency bar


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(
            l.split(":", 1)[1].strip()
            for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import pyspark

    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "os": platform.platform(),
    }


def run_job(job: str, env: dict, extra: list[str]) -> tuple[float, dict]:
    exe = Path(sys.executable).parent / f"medallion-{job}"
    start = time.perf_counter()
    out = subprocess.run([str(exe), *INTERVAL, *extra], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"medallion-{job} failed: {out.stderr.strip().splitlines()[-1:]}")
    summary = json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])
    return elapsed, summary


def bench_cycle(patients: int, runs: int, workdir: Path, engine_env: dict | None = None) -> dict:
    per_job: dict[str, list[float]] = {j: [] for j in JOBS}
    totals, rows = [], None
    for i in range(runs):
        lake = workdir / f"lake-{patients}-{i}"
        shutil.rmtree(lake, ignore_errors=True)
        env = dict(os.environ, MEDALLION_LAKEHOUSE=str(lake), MEDALLION_HOME=str(ROOT), **(engine_env or {}))
        t0 = time.perf_counter()
        for job in JOBS:
            extra = [f"--patients={patients}"] if job == "generate" else []
            seconds, summary = run_job(job, env, extra)
            per_job[job].append(seconds)
            if job == "generate":
                rows = summary["rows"]
        totals.append(time.perf_counter() - t0)
        print(
            f"  {patients:>7} patients, run {i + 1}/{runs}: {totals[-1]:.1f}s "
            + " ".join(f"{j}={per_job[j][-1]:.1f}s" for j in JOBS),
            flush=True,
        )
        shutil.rmtree(lake, ignore_errors=True)
    return {
        "patients": patients,
        "rows": rows,
        "runs": runs,
        "median_s": {j: round(statistics.median(v), 2) for j, v in per_job.items()},
        "cycle_median_s": round(statistics.median(totals), 2),
        "cycle_all_s": [round(t, 2) for t in totals],
        "within_5_min": statistics.median(totals) < CYCLE_BUDGET_S,
    }


ENGINES = ("classic", "connect", "cluster")


def bench_engines(patients: int, runs: int, workdir: Path) -> list[dict]:
    """The same cycle on each engine the jobs run on: a classic local session per job; a Spark Connect server the
    jobs are clients of (Databricks serverless's engine; ANSI on, no cache); a standalone cluster (one master and a
    2-core worker) each job drives, as a job cluster. The servers run for all repetitions, as a warm pool would."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import spark_servers

    figures = []
    for engine in ENGINES:
        print(f"  engine {engine}:", flush=True)
        servers, env = [], {}
        try:
            if engine == "connect":
                servers = [spark_servers.start_connect(state=workdir / "connect")]
                env = {"SPARK_REMOTE": f"sc://127.0.0.1:{servers[0].port}"}
            elif engine == "cluster":
                servers = spark_servers.start_cluster(state=workdir / "cluster")
                env = {"MEDALLION_SPARK_MASTER": f"spark://127.0.0.1:{servers[0].port}"}
            figures.append({"engine": engine, **bench_cycle(patients, runs, workdir, env)})
        finally:
            for server in reversed(servers):
                server.stop()
    return figures


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def bench_generator(volumes: list[int], workdir: Path) -> list[dict]:
    """Generation throughput: one batch per volume on top of one earlier batch (so changes are generated too),
    with the peak resident memory of the whole process tree (Python driver, JVM, Python workers)."""
    import psutil

    out = []
    for patients in volumes:
        lake = workdir / f"gen-{patients}"
        shutil.rmtree(lake, ignore_errors=True)
        env = dict(os.environ, MEDALLION_LAKEHOUSE=str(lake), MEDALLION_HOME=str(ROOT))
        exe = str(Path(sys.executable).parent / "medallion-generate")
        prior = [
            "--interval-start=2026-11-27T04:00:00+00:00",
            "--interval-end=2026-11-27T05:00:00+00:00",
            f"--patients={max(patients // 10, 1)}",
        ]
        subprocess.run([exe, *prior], env=env, capture_output=True, check=True)
        start = time.perf_counter()
        proc = psutil.Popen(
            [exe, *INTERVAL, f"--patients={patients}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc))
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        stdout = proc.stdout.read()
        if proc.returncode != 0:
            raise SystemExit(f"generate failed at {patients} patients")
        summary = json.loads([l for l in stdout.splitlines() if l.startswith("{")][-1])
        rows = sum(summary["rows"].values())
        out.append(
            {
                "patients": patients,
                "rows": summary["rows"],
                "seconds": round(elapsed, 2),
                "rows_per_s": round(rows / elapsed),
                "peak_rss_gib": round(peak / 2**30, 2),
                "defects": summary["defects"],
                "changed_rows": summary["changed_rows"],
            }
        )
        print(
            f"  generate {patients:>9,} patients: {elapsed:.1f}s, {rows / elapsed:,.0f} rows/s, "
            f"peak {peak / 2**30:.2f} GiB",
            flush=True,
        )
        shutil.rmtree(lake, ignore_errors=True)
    return out


PLAIN_COPY = """
import os, sys, time
sys.path.insert(0, {spark_jobs!r})
from medallion.config import load_settings
from medallion.schemas import source_schema
from medallion.session import get_spark
settings = load_settings()
spark = get_spark(settings, app_name="plain-copy")
for entity in ("patients", "claims", "medical_events"):
    src = os.path.join(settings.location("landing"), "*", settings.landing_file(entity))
    (spark.read.format("csv").option("header", "true").schema(source_schema(entity)).load(src)
     .write.format("delta").mode("overwrite").save(os.path.join({out!r}, entity)))
"""


def bench_bronze(volumes: list[int], runs: int, workdir: Path) -> list[dict]:
    """Bronze against its floor: a plain Spark CSV -> Delta copy of the same landing files (no lineage, no
    rescued data, no per-file accounting, no exactly-once bookkeeping). Both are timed as whole processes."""
    out = []
    for patients in volumes:
        lake = workdir / f"bronze-{patients}"
        shutil.rmtree(lake, ignore_errors=True)
        env = dict(os.environ, MEDALLION_LAKEHOUSE=str(lake), MEDALLION_HOME=str(ROOT))
        _, gen = run_job("generate", env, [f"--patients={patients}"])
        rows = sum(gen["rows"].values())
        landing_mb = sum(f.stat().st_size for f in (lake / "landing").rglob("*.csv")) / 2**20
        bronze_s, plain_s = [], []
        for i in range(runs):
            for name in ("warehouse", "_checkpoints"):
                shutil.rmtree(lake / name, ignore_errors=True)
            shutil.rmtree(lake / "plain", ignore_errors=True)
            start = time.perf_counter()
            code = PLAIN_COPY.format(spark_jobs=str(ROOT / "spark_jobs"), out=str(lake / "plain"))
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
            plain_s.append(time.perf_counter() - start)
            seconds, summary = run_job("bronze", env, [])
            if summary["rows_ingested"] != rows:
                raise SystemExit(f"bronze ingested {summary['rows_ingested']} rows, the files hold {rows}")
            bronze_s.append(seconds)
            print(
                f"  bronze {patients:>9,} patients ({rows:,} rows, {landing_mb:.0f} MiB), run {i + 1}/{runs}: "
                f"plain copy {plain_s[-1]:.1f}s, bronze {bronze_s[-1]:.1f}s",
                flush=True,
            )
        shutil.rmtree(lake, ignore_errors=True)
        b, p = statistics.median(bronze_s), statistics.median(plain_s)
        out.append(
            {
                "patients": patients,
                "rows": rows,
                "landing_mib": round(landing_mb, 1),
                "runs": runs,
                "bronze_median_s": round(b, 2),
                "plain_copy_median_s": round(p, 2),
                "ratio": round(b / p, 2),
                "bronze_all_s": [round(x, 2) for x in bronze_s],
                "plain_copy_all_s": [round(x, 2) for x in plain_s],
                "within_1_5x": b / p <= 1.5,
            }
        )
    return out


GROUND_TRUTH = """
import json, sys
sys.path.insert(0, {spark_jobs!r})
from medallion.config import load_settings
from medallion.groundtruth import evaluate
from medallion.session import get_spark
settings = load_settings()
print(json.dumps(evaluate(get_spark(settings, app_name="ground-truth"), settings)))
"""


def bench_silver(volumes: list[int], runs: int, workdir: Path) -> list[dict]:
    """Silver's throughput and its quality figures at the default defect rate: one earlier batch and one batch of
    the given size are generated and ingested once; silver is then timed from empty silver tables `runs` times.
    Recall and precision come from the generator's ground-truth manifests."""
    out = []
    for patients in volumes:
        lake = workdir / f"silver-{patients}"
        shutil.rmtree(lake, ignore_errors=True)
        env = dict(os.environ, MEDALLION_LAKEHOUSE=str(lake), MEDALLION_HOME=str(ROOT))
        exe = str(Path(sys.executable).parent / "medallion-generate")
        subprocess.run(
            [
                exe,
                "--interval-start=2026-11-27T04:00:00+00:00",
                "--interval-end=2026-11-27T05:00:00+00:00",
                f"--patients={max(patients // 10, 1)}",
            ],
            env=env,
            capture_output=True,
            check=True,
        )
        run_job("generate", env, [f"--patients={patients}"])
        _, bronze = run_job("bronze", env, [])
        seconds, summary = [], None
        for i in range(runs):
            for layer in ("silver", "quarantine", "held"):
                for entity in ("patients", "claims", "medical_events"):
                    shutil.rmtree(lake / "warehouse" / "data_eng" / f"{layer}_{entity}", ignore_errors=True)
            shutil.rmtree(lake / "warehouse" / "data_eng" / "ops_silver_runs", ignore_errors=True)
            for ck in (lake / "_checkpoints").glob("silver_*"):
                shutil.rmtree(ck, ignore_errors=True)
            elapsed, summary = run_job("silver", env, [])
            seconds.append(elapsed)
            print(
                f"  silver {patients:>9,} patients ({bronze['rows_ingested']:,} bronze rows), run {i + 1}/{runs}: "
                f"{elapsed:.1f}s, quality {summary['quality_score']}",
                flush=True,
            )
        gt = subprocess.run(
            [sys.executable, "-c", GROUND_TRUTH.format(spark_jobs=str(ROOT / "spark_jobs"))],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        truth = json.loads(gt.stdout.strip().splitlines()[-1])
        median = statistics.median(seconds)
        out.append(
            {
                "patients": patients,
                "bronze_rows": bronze["rows_ingested"],
                "runs": runs,
                "silver_median_s": round(median, 2),
                "silver_all_s": [round(x, 2) for x in seconds],
                "rows_per_s": round(bronze["rows_ingested"] / median),
                "quality_score": summary["quality_score"],
                "target_score": summary["target_score"],
                "recall": truth["recall"],
                "precision": truth["precision"],
                "defects_expected": truth["true_positives"] + truth["missed"],
                "duplicates_injected": truth["duplicates_injected"],
            }
        )
        shutil.rmtree(lake, ignore_errors=True)
    return out


HISTORY_START = datetime(2026, 11, 26, 0, tzinfo=timezone.utc)
HISTORY_JOBS = ["generate", "bronze", "silver", "gold"]
FLATNESS_BOUND = 1.2  # issue 6: the last cycle within 1.2x of cycle 2


def history_worker(lake: str, patients: int, cycles: int) -> None:
    """Child process of bench_history: consecutive hourly cycles in one Spark session (the jobs' own code, timed
    one by one), then a full rebuild of gold from silver, checked to equal the incremental tables. One JSON line per
    cycle on stdout."""
    import contextlib
    import importlib
    import io
    from datetime import timedelta

    os.environ["MEDALLION_LAKEHOUSE"] = lake
    from medallion.cli import run_job as cli_run_job
    from medallion.config import load_settings
    from medallion.lakehouse import Lakehouse
    from medallion.session import get_spark

    settings = load_settings()
    spark = get_spark(settings, app_name="medallion-bench-history")

    def job(name: str, *argv: str) -> float:
        module = importlib.import_module(f"medallion.{name}")
        buf = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            code = cli_run_job(name, module.run, getattr(module, "add_arguments", None), list(argv))
        if code != 0:
            raise SystemExit(f"{name} failed: {buf.getvalue().strip().splitlines()[-1:]}")
        return time.perf_counter() - t0

    for i in range(cycles):
        start = HISTORY_START + timedelta(hours=i)
        interval = [
            f"--interval-start={start.isoformat()}",
            f"--interval-end={(start + timedelta(hours=1)).isoformat()}",
        ]
        seconds = {
            "generate": job("generate", *interval, f"--patients={patients}"),
            "bronze": job("bronze", *interval),
            "silver": job("silver"),
            "gold": job("gold"),
        }
        print("HISTORY " + json.dumps({"cycle": i + 1, "seconds": seconds}), flush=True)

    lake_api = Lakehouse(spark, settings)
    gold = {e: settings.table_name("gold", e) for e in ("patients", "claims", "medical_events")}
    snapshot = Path(lake) / "_incremental_gold"
    for entity, name in gold.items():
        lake_api.read(name).drop("_updated_at").write.parquet(str(snapshot / entity))
    rebuild = job("gold", "--full-refresh=true")
    equal = all(
        lake_api.read(name).drop("_updated_at").exceptAll(spark.read.parquet(str(snapshot / e))).count() == 0
        and spark.read.parquet(str(snapshot / e)).exceptAll(lake_api.read(name).drop("_updated_at")).count() == 0
        for e, name in gold.items()
    )
    rows = {e: lake_api.count(name) for e, name in gold.items()}
    print(
        "HISTORY " + json.dumps({"rebuild_s": rebuild, "rebuild_equals_incremental": equal, "gold_rows": rows}),
        flush=True,
    )


def bench_history(patients: int, cycles: int, workdir: Path) -> dict:
    """Is the cost of a cycle flat as history grows? `cycles` consecutive hourly cycles on one lakehouse."""
    lake = workdir / "history"
    shutil.rmtree(lake, ignore_errors=True)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--history-worker", str(lake), str(patients), str(cycles)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, MEDALLION_HOME=str(ROOT)),
    )
    per_cycle, final = [], {}
    for line in proc.stdout:
        if not line.startswith("HISTORY "):
            continue
        item = json.loads(line[len("HISTORY ") :])
        if "cycle" in item:
            item["seconds"] = {k: round(v, 2) for k, v in item["seconds"].items()}
            item["whole_s"] = round(sum(item["seconds"].values()), 2)
            per_cycle.append(item)
            print(
                f"  cycle {item['cycle']:>2}/{cycles}: {item['whole_s']:.1f}s "
                + " ".join(f"{j}={item['seconds'][j]:.1f}s" for j in HISTORY_JOBS),
                flush=True,
            )
        else:
            final = item
    if proc.wait() != 0 or not final:
        raise SystemExit(f"history benchmark failed after {len(per_cycle)} cycles")
    shutil.rmtree(lake, ignore_errors=True)
    second, last = per_cycle[1], per_cycle[-1]
    gold_ratio = last["seconds"]["gold"] / second["seconds"]["gold"]
    whole_ratio = last["whole_s"] / second["whole_s"]
    return {
        "patients_per_cycle": patients,
        "cycles": per_cycle,
        "rebuild_s": round(final["rebuild_s"], 2),
        "rebuild_equals_incremental": final["rebuild_equals_incremental"],
        "gold_rows": final["gold_rows"],
        "gold_last_vs_2nd": round(gold_ratio, 3),
        "whole_last_vs_2nd": round(whole_ratio, 3),
        "flat": gold_ratio <= FLATNESS_BOUND and whole_ratio <= FLATNESS_BOUND,
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_airflow(runs: int, workdir: Path) -> dict:
    walls = []
    for i in range(runs):
        env = dict(
            os.environ,
            AIRFLOW_HOME=str(workdir / f"airflow-{i}"),
            MEDALLION_LAKEHOUSE=str(workdir / f"af-lake-{i}"),
            MEDALLION_AIRFLOW_PORT=str(free_port()),
        )
        summary = workdir / f"airflow-{i}.json"
        out = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "airflow_local.py"), "cycle", "--summary-json", str(summary)],
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"Airflow cycle failed: {out.stderr[-500:]}")
        walls.append(json.loads(summary.read_text())["wall_seconds"])
        print(f"  Airflow cycle run {i + 1}/{runs}: {walls[-1]:.1f}s", flush=True)
    return {"runs": runs, "cycle_median_s": round(statistics.median(walls), 2), "cycle_all_s": walls}


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"# Benchmark ({results['measured_at']})",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"PySpark {m['pyspark']}. Medians of {results['runs']} runs, each from an empty lakehouse; every job "
        "is its own process with its own local Spark session, as the local Airflow target runs it.",
        "",
        "| patients | claims | events | " + " | ".join(JOBS) + " | whole cycle | < 5 min |",
        "|---:|---:|---:|" + "---:|" * len(JOBS) + "---:|:---:|",
    ]
    for c in results["cycles"]:
        r = c["rows"] or {}
        lines.append(
            f"| {c['patients']:,} | {r.get('claims', 0):,} | {r.get('medical_events', 0):,} | "
            + " | ".join(f"{c['median_s'][j]:.1f} s" for j in JOBS)
            + f" | {c['cycle_median_s']:.1f} s | {'yes' if c['within_5_min'] else 'NO'} |"
        )
    if results.get("engines"):
        lines += [
            "",
            "The same cycle per engine (classic: a local session per job; connect: the jobs as clients of one Spark "
            "Connect server, ANSI on and no cache, as on serverless; cluster: each job the driver of a standalone "
            "cluster of one 2-core worker):",
            "",
            "| engine | patients | " + " | ".join(JOBS) + " | whole cycle |",
            "|---|---:|" + "---:|" * len(JOBS) + "---:|",
        ]
        for c in results["engines"]:
            lines.append(
                f"| {c['engine']} | {c['patients']:,} | "
                + " | ".join(f"{c['median_s'][j]:.1f} s" for j in JOBS)
                + f" | {c['cycle_median_s']:.1f} s |"
            )
    if results.get("generator"):
        lines += [
            "",
            "Generation throughput (one batch on top of one earlier batch, so changes are included; "
            "peak = resident memory of the whole process tree):",
            "",
            "| patients | rows written | seconds | rows/s | peak memory |",
            "|---:|---:|---:|---:|---:|",
        ]
        for g in results["generator"]:
            lines.append(
                f"| {g['patients']:,} | {sum(g['rows'].values()):,} | {g['seconds']:.1f} | "
                f"{g['rows_per_s']:,} | {g['peak_rss_gib']:.2f} GiB |"
            )
    if results.get("bronze"):
        lines += [
            "",
            "Bronze against its floor, a plain Spark CSV -> Delta copy of the same landing files (whole "
            "processes, JVM start included; medians):",
            "",
            "| patients | rows | landing | plain copy | bronze | ratio | within 1.5x |",
            "|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for b in results["bronze"]:
            lines.append(
                f"| {b['patients']:,} | {b['rows']:,} | {b['landing_mib']:.0f} MiB | "
                f"{b['plain_copy_median_s']:.1f} s | {b['bronze_median_s']:.1f} s | {b['ratio']:.2f} | "
                f"{'yes' if b['within_1_5x'] else 'NO'} |"
            )
    if results.get("silver"):
        lines += [
            "",
            "Silver at the default defect rate (one earlier batch + one batch of the given size, so changes "
            "and late patients are included; silver timed from empty silver tables; recall and precision "
            "of the rules against the generator's ground truth):",
            "",
            "| patients | bronze rows | silver | rows/s | quality score | recall | precision |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for v in results["silver"]:
            lines.append(
                f"| {v['patients']:,} | {v['bronze_rows']:,} | {v['silver_median_s']:.1f} s | "
                f"{v['rows_per_s']:,} | {v['quality_score']:.4%} | {v['recall']:.2%} | {v['precision']:.2%} |"
            )
    if results.get("history"):
        h = results["history"]
        n = len(h["cycles"])
        shown = sorted({1, 2, *range(6, n, 6), n})
        lines += [
            "",
            f"History: {n} consecutive hourly cycles of {h['patients_per_cycle']:,} new patients each on one "
            "lakehouse (the jobs' code in one Spark session, JVM start excluded; each cycle also re-sends "
            "versions, claims and status updates of earlier hours):",
            "",
            "| cycle | " + " | ".join(HISTORY_JOBS) + " | whole cycle |",
            "|---:|" + "---:|" * (len(HISTORY_JOBS) + 1),
        ]
        for c in h["cycles"]:
            if c["cycle"] in shown:
                lines.append(
                    f"| {c['cycle']} | "
                    + " | ".join(f"{c['seconds'][j]:.1f} s" for j in HISTORY_JOBS)
                    + f" | {c['whole_s']:.1f} s |"
                )
        lines += [
            "",
            f"Cycle {n} vs cycle 2: gold {h['gold_last_vs_2nd']:.2f}x, whole cycle {h['whole_last_vs_2nd']:.2f}x "
            f"(bound {FLATNESS_BOUND}x: {'met' if h['flat'] else 'NOT met'}). Full rebuild of gold from silver "
            f"after cycle {n}: {h['rebuild_s']:.1f} s for {sum(h['gold_rows'].values()):,} gold rows "
            f"(incremental gold {'equals' if h['rebuild_equals_incremental'] else 'DIFFERS from'} the rebuild).",
        ]
    if results.get("airflow"):
        a = results["airflow"]
        lines += [
            "",
            f"Through the real Airflow components (scheduler, dag-processor, triggerer, api-server; "
            f"default volume): median {a['cycle_median_s']:.1f} s over {a['runs']} run(s) "
            f"({', '.join(str(x) for x in a['cycle_all_s'])}).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    from medallion.config import load_raw

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = int(load_raw()["generator"]["patients_per_batch"])
    parser.add_argument("--volumes", default=f"{default},{default * 10}", help="patients per batch, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--airflow-runs", type=int, default=1, help="cycles timed through Airflow (0 to skip)")
    parser.add_argument(
        "--generator-volumes",
        default="10000,100000,1000000",
        help="patients per batch for the generation throughput figures ('' to skip)",
    )
    parser.add_argument(
        "--bronze-volumes",
        default="100000,1000000",
        help="patients per batch for bronze against a plain copy ('' to skip)",
    )
    parser.add_argument(
        "--silver-volumes",
        default="10000,100000",
        help="patients per batch for silver throughput and recall/precision ('' to skip)",
    )
    parser.add_argument(
        "--history-cycles",
        type=int,
        default=24,
        help="consecutive hourly cycles for the flatness figures (default volume)",
    )
    parser.add_argument(
        "--sections",
        default="cycle,engines,generator,bronze,silver,history,airflow",
        help="which sections to run; the others keep their figures from an earlier results.json",
    )
    parser.add_argument("--out", default=str(ROOT / "bench"))
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="medallion-bench-", dir=ROOT / ".cache"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    earlier = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    results = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": args.runs,
        "cycles": earlier.get("cycles", []) if "cycle" not in sections else [],
    }
    for key in ("engines", "generator", "bronze", "silver", "history", "airflow"):
        if key not in sections and key in earlier:
            results[key] = earlier[key]

    def save() -> None:  # after every section, so a failure later keeps what was measured
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "results.md").write_text(markdown(results))

    try:
        for patients in [int(v) for v in args.volumes.split(",")] if "cycle" in sections else []:
            print(f"Cycle at {patients} patients per batch:", flush=True)
            results["cycles"].append(bench_cycle(patients, args.runs, workdir))
            save()
        if "engines" in sections:
            print(f"Cycle per engine at {default} patients per batch:", flush=True)
            results["engines"] = bench_engines(default, args.runs, workdir)
            save()
        if args.bronze_volumes and "bronze" in sections:
            print("Bronze against a plain CSV -> Delta copy:", flush=True)
            results["bronze"] = bench_bronze([int(v) for v in args.bronze_volumes.split(",")], args.runs, workdir)
            save()
        if args.silver_volumes and "silver" in sections:
            print("Silver throughput and quality:", flush=True)
            results["silver"] = bench_silver([int(v) for v in args.silver_volumes.split(",")], args.runs, workdir)
            save()
        if args.history_cycles and "history" in sections:
            print(f"{args.history_cycles} consecutive hourly cycles:", flush=True)
            results["history"] = bench_history(default, args.history_cycles, workdir)
            save()
        if args.generator_volumes and "generator" in sections:
            print("Generator throughput:", flush=True)
            results["generator"] = bench_generator([int(v) for v in args.generator_volumes.split(",")], workdir)
            save()
        if args.airflow_runs and "airflow" in sections:
            print("Cycle through Airflow:", flush=True)
            results["airflow"] = bench_airflow(args.airflow_runs, workdir)
            save()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(markdown(results))
    print(f"Written to {out / 'results.json'} and {out / 'results.md'}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--history-worker":
        history_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
