"""Monitor (hourly, on the clock): measure the pipeline, store the figures per run, rewrite the quality dashboard.

One monitoring run stores, keyed by its run id (a retry replaces its own rows, so re-runs are idempotent):
- `ops_table_counts`      row count of every table;
- `ops_quality_scores`    quality score per entity and overall (this window and all-time) vs `quality.target_score`;
- `ops_quarantine_by_rule` quarantined rows per entity and rule;
- `ops_freshness`         age of every table's newest data vs the SLA of its layer;
- `ops_volumes`           rows per landing batch per bronze table vs the band of the batches before it;
- `ops_drift`             population stability index of age, bmi, charges, claim_amount vs a baseline
                          (`ops_drift_baseline`, captured once);
- `ops_reconciliation`    landed in bronze = valid + quarantined + duplicates + held, per entity;
- `ops_table_writes`      the change data feed of every table since the previous run, per writer run (audit);
- `ops_quality_breaches`  what was wrong (the monitoring DAG e-mails it when something new appears).
Table names and thresholds: include/pipeline.yaml -> `monitoring`. Only aggregates are stored or printed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from pyspark.sql import functions as F

from . import dashboard, metrics, ops
from .cli import JobContext, entry
from .ops import OpsTable

log = logging.getLogger("medallion.monitor")


def previous_run(ctx: JobContext, m: metrics.Measure) -> None:
    """The latest earlier monitoring run (its id and when it measured): the end of the previous window."""
    scores = m.read_if_exists(m.table("quality"))
    if scores is None:
        return
    row = (
        scores.where(F.col("run_id") != ctx.run_id)
        .groupBy("run_id")
        .agg(F.max(metrics.epoch("measured_at")).alias("t"))
        .orderBy(F.col("t").desc())
        .first()
    )
    if row is not None:
        m.previous_run_id, m.previous_at = row["run_id"], metrics.from_epoch(row["t"])


def _previous_rows(m: metrics.Measure, key: str):
    df = m.read_if_exists(m.table(key))
    if df is None or m.previous_run_id is None:
        return []
    return df.where(F.col("run_id") == m.previous_run_id).collect()


def run(ctx: JobContext) -> dict:
    lake, settings = ctx.lakehouse, ctx.settings
    measured = datetime.now(timezone.utc)
    m = metrics.Measure(lake=lake, settings=settings, run_id=ctx.run_id, now=measured)
    previous_run(ctx, m)

    # row counts (kept: the cycle report and the e2e test read them)
    counts_table = OpsTable.open(lake, settings.raw["tables"]["ops"]["table_counts"], ops.TABLE_COUNTS)
    stats = metrics.table_stats(m)  # one pass per table: row count and newest-data time
    counts = [(st["layer"], name, st["count"]) for name, st in stats.items()]
    counts_table.replace_run(
        ctx.run_id,
        [(ctx.run_id, measured, ctx.interval_start, ctx.interval_end, layer, name, n) for layer, name, n in counts],
    )

    quality, source = metrics.quality(m)
    for r in quality:
        r["source"] = source
    by_rule = metrics.quarantine_by_rule(m)
    fresh = metrics.freshness(m, stats)
    vols = metrics.volumes(m)
    baseline_table = m.table("drift_baseline")
    base_df = m.read_if_exists(baseline_table)
    baselines = {r["column_name"]: r.asDict() for r in base_df.collect()} if base_df is not None else {}
    drift, captured = metrics.drift(m, baselines)
    if captured:
        OpsTable.open(lake, baseline_table, ops.DRIFT_BASELINE).append(captured)
    previous_balance = {r["entity"]: r["balanced"] for r in _previous_rows(m, "reconciliation")}
    recon = metrics.reconciliation(m, previous_balance)
    writes_df = m.read_if_exists(m.table("audit"))
    last_versions = (
        {
            r["table_name"]: int(r["v"])
            for r in writes_df.where(F.col("run_id") != ctx.run_id)
            .groupBy("table_name")
            .agg(F.max("to_version").alias("v"))
            .collect()
        }
        if writes_df is not None
        else {}
    )
    writes = metrics.audit(m, last_versions)
    found = metrics.breaches(quality, fresh, vols, drift, recon, m.cfg)
    known = {r["key"] for r in _previous_rows(m, "breaches")}
    for b in found:
        b["new"] = b["key"] not in known

    stored = {
        "quality": quality,
        "quarantine_rules": by_rule,
        "freshness": fresh,
        "volumes": vols,
        "drift": drift,
        "reconciliation": recon,
        "audit": writes,
        "breaches": found,
    }
    for key, rows_ in stored.items():
        OpsTable.open(lake, m.table(key), ops.MONITORING[key]).replace_run(
            ctx.run_id, [{"run_id": ctx.run_id, "measured_at": measured, **r} for r in rows_]
        )

    page = dashboard.write(settings, dashboard.collect(m, stored, measured))
    overall = next(r for r in quality if r["entity"] == "overall")
    new = [b for b in found if b["new"]]
    if found:
        log.warning(
            "%d data-quality breach(es), %d new: %s",
            len(found),
            len(new),
            "; ".join(f"{b['kind']} {b['subject']}" for b in found),
        )
    return {
        "table": lake.display_name(counts_table.name),
        "counts": {name: n for _, name, n in counts},
        "quality_score": overall["score"] if overall["score"] is not None else overall["total_score"],
        "quality_window": "since previous monitoring run" if overall["score"] is not None else "all time",
        "target_score": overall["target_score"],
        "quality": {
            r["entity"]: {
                "score": r["score"],
                "total_score": r["total_score"],
                "valid": r["valid"],
                "quarantined": r["quarantined"],
            }
            for r in quality
        },
        "quality_source": source,
        "stale_tables": [r["table_name"] for r in fresh if r["stale"]],
        "volume_anomalies": [f"{r['table_name']}:{r['batch']}" for r in vols if r["anomaly"] and r["latest"]],
        "drift": {r["column_name"]: {"psi": r["psi"], "status": r["status"]} for r in drift},
        "reconciliation": {r["entity"]: r["balanced"] for r in recon},
        "table_writes": sum(r["inserts"] + r["updates"] + r["deletes"] for r in writes),
        "breaches": [{k: b[k] for k in ("kind", "subject", "detail", "new")} for b in found],
        "new_breaches": len(new),
        "previous_monitoring_run": m.previous_run_id,
        "dashboard": page,
        "notes": m.notes,
    }


main = entry("monitor", run)

if __name__ == "__main__":
    main()
