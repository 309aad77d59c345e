"""What the monitoring job measures, one function per measure; each returns small lists of plain rows (aggregates).

Everything here is a Spark aggregate over the pipeline's tables (no loop over data rows on the driver) and yields
counts, rule names, table names and statistics only — never a row value, so nothing measured here is PHI.
Thresholds and SLAs come from include/pipeline.yaml -> `monitoring` (and `quality.target_score`).

Measures (see monitor.py for the tables they are stored in):
- quality: score per entity and overall = good / (good + quarantined), where good = valid + released from held
  and quarantined includes held rows that expired; over this run's window (silver runs since the previous
  monitoring run) and all-time, from `ops_silver_runs` when silver writes it, else counted from the tables;
- quarantine by rule: per entity and rule, this window (silver run figures) and all-time (quarantine tables);
- freshness: the newest data of every table vs the SLA of its layer;
- volumes: rows per landing batch in each bronze table vs a robust band over the batches before it;
- drift: population stability index of configured columns vs a baseline captured once;
- reconciliation: landed in bronze = valid + quarantined + exact duplicates + held, per entity;
- audit: the change data feed of every table since the previous monitoring run, per writer run.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from .config import ENTITIES

LAYERS = ("bronze", "silver", "gold", "quarantine", "held")
BATCH_OF_FILE = r"([^/]+)/[^/]+$"  # landing/<interval>/<file>: the batch is the file's folder


@dataclass
class Measure:
    """What every measure needs: the lakehouse, settings, this run and the previous monitoring run."""

    lake: Any
    settings: Any
    run_id: str
    now: datetime
    previous_run_id: str | None = None
    previous_at: datetime | None = None  # when the previous monitoring run measured (its window's end)
    notes: list[str] = field(default_factory=list)

    @property
    def cfg(self) -> dict:
        return self.settings.raw["monitoring"]

    @property
    def spark(self):
        return self.lake.spark

    def table(self, key: str) -> str:
        return self.cfg["tables"][key]

    def ops(self, key: str) -> str | None:
        return self.settings.raw["tables"]["ops"].get(key)

    def read_if_exists(self, table: str | None) -> DataFrame | None:
        return self.lake.read(table) if table and self.lake.exists(table) else None


def epoch(col) -> Any:
    """A timestamp column as epoch seconds (collecting seconds avoids the driver's local time zone)."""
    return F.col(col).cast("double") if isinstance(col, str) else col.cast("double")


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), tz=timezone.utc)


def score(good: int, bad: int) -> float | None:
    return round(good / (good + bad), 6) if good + bad else None


# ------------------------------------------------------------------------------------------------ quality
def _silver_run_figures(m: Measure) -> DataFrame | None:
    runs = m.read_if_exists(m.ops("silver_runs"))
    if runs is None:
        return None
    return runs.select(
        "run_id",
        "entity",
        "processed_at",
        "rows_in",
        "valid",
        "quarantined",
        "exact_duplicates",
        "held",
        "released",
        "expired_to_quarantine",
        "quarantined_by_rule",
    )


def _in_window(df: DataFrame, ts_col: str, m: Measure) -> DataFrame:
    if m.previous_at is None:
        return df
    return df.filter(epoch(ts_col) > m.previous_at.timestamp())


def quality(m: Measure) -> tuple[list[dict], str]:
    """Score per entity (+ 'overall'), this window and all-time; and where the figures came from."""
    target = float(m.settings.quality["target_score"])
    window: dict[str, tuple[int, int]] = {}
    total: dict[str, tuple[int, int]] = {}
    runs = _silver_run_figures(m)
    if runs is not None:
        source = "silver_runs"
        good = F.col("valid") + F.coalesce(F.col("released"), F.lit(0))
        bad = F.col("quarantined") + F.coalesce(F.col("expired_to_quarantine"), F.lit(0))

        def sums(df):
            return {
                r["entity"]: (int(r["good"] or 0), int(r["bad"] or 0))
                for r in df.groupBy("entity").agg(F.sum(good).alias("good"), F.sum(bad).alias("bad")).collect()
            }

        total = sums(runs)
        window = sums(_in_window(runs, "processed_at", m))
    else:  # silver does not record its runs: count what the tables hold (merged versions count once)
        source = "tables"
        for entity in ENTITIES:
            silver = m.read_if_exists(m.settings.table_name("silver", entity))
            quarantine = m.read_if_exists(m.settings.table_name("quarantine", entity))
            if silver is None and quarantine is None:
                continue
            s_all = silver.count() if silver is not None else 0
            q_all = quarantine.count() if quarantine is not None else 0
            s_win = _in_window(silver, "_processed_at", m).count() if silver is not None else 0
            q_win = _in_window(quarantine, "_quarantined_at", m).count() if quarantine is not None else 0
            total[entity], window[entity] = (s_all, q_all), (s_win, q_win)
    rows = []
    for entity in [*ENTITIES, "overall"]:
        if entity == "overall":
            w = (sum(g for g, _ in window.values()), sum(b for _, b in window.values()))
            t = (sum(g for g, _ in total.values()), sum(b for _, b in total.values()))
        else:
            w, t = window.get(entity, (0, 0)), total.get(entity, (0, 0))
        s = score(*w)
        rows.append(
            {
                "entity": entity,
                "valid": w[0],
                "quarantined": w[1],
                "score": s,
                "total_valid": t[0],
                "total_quarantined": t[1],
                "total_score": score(*t),
                "target_score": target,
                "breach": s is not None and s < target,
            }
        )
    return rows, source


def quarantine_by_rule(m: Measure) -> list[dict]:
    """Rows quarantined per entity and rule: this window (silver run figures) and all-time (quarantine tables)."""
    counts: dict[tuple[str, str], dict] = {}
    runs = _silver_run_figures(m)
    for entity in ENTITIES:
        q = m.read_if_exists(m.settings.table_name("quarantine", entity))
        if q is None:
            continue
        for r in q.select(F.explode("_failed_rules").alias("rule")).groupBy("rule").count().collect():
            counts.setdefault((entity, r["rule"]), {"window_rows": 0})["total_rows"] = int(r["count"])
        if runs is None:  # no run figures: this window's quarantined rows from the table itself
            for r in (
                _in_window(q, "_quarantined_at", m)
                .select(F.explode("_failed_rules").alias("rule"))
                .groupBy("rule")
                .count()
                .collect()
            ):
                counts.setdefault((entity, r["rule"]), {"total_rows": 0})["window_rows"] = int(r["count"])
    if runs is not None:
        for r in (
            _in_window(runs, "processed_at", m)
            .select("entity", F.explode("quarantined_by_rule").alias("rule", "n"))
            .groupBy("entity", "rule")
            .agg(F.sum("n").alias("n"))
            .collect()
        ):
            counts.setdefault((r["entity"], r["rule"]), {"total_rows": 0})["window_rows"] = int(r["n"] or 0)
    return [
        {
            "entity": e,
            "rule": rule,
            "window_rows": int(v.get("window_rows", 0)),
            "total_rows": int(v.get("total_rows", 0)),
        }
        for (e, rule), v in sorted(counts.items())
    ]


# ------------------------------------------------------------------------------------------------ freshness
def _last_commit_epoch(m: Measure, table: str) -> float | None:
    row = m.lake.history(table, 1).select(epoch("timestamp").alias("t")).first()
    return row["t"] if row else None


def table_stats(m: Measure) -> dict[str, dict]:
    """One pass per table of every layer: does it exist, its row count, and its newest-data time (epoch seconds).

    The newest-data time is the max of the layer's timestamp column (`monitoring.freshness.timestamp_columns`), or
    the last commit's time for a table without that column or without rows."""
    columns = m.cfg["freshness"]["timestamp_columns"]
    stats = {}
    for layer in LAYERS:
        for entity, table in m.settings.raw["tables"][layer].items():
            st = {
                "layer": layer,
                "entity": entity,
                "exists": m.lake.exists(table),
                "count": None,
                "newest": None,
                "basis": "missing",
            }
            if st["exists"]:
                df = m.lake.read(table)
                column = columns.get(layer)
                if column in df.columns:
                    row = df.agg(F.count(F.lit(1)).alias("n"), F.max(epoch(column)).alias("t")).first()
                    st.update(count=int(row["n"]), newest=row["t"], basis=column)
                else:
                    st["count"] = df.count()
                if st["newest"] is None:  # no timestamp column, or no rows: when was the table last written?
                    st.update(newest=_last_commit_epoch(m, table), basis="last commit")
            stats[table] = st
    return stats


def freshness(m: Measure, stats: dict[str, dict] | None = None) -> list[dict]:
    stats = stats if stats is not None else table_stats(m)
    slas = m.cfg["freshness"]["sla_minutes"]
    rows = []
    for table, st in stats.items():
        sla = slas.get(st["layer"])
        newest_at = from_epoch(st["newest"])
        age = round((m.now - newest_at).total_seconds() / 60, 1) if newest_at else None
        stale = sla is not None and (age is None or age > float(sla))
        rows.append(
            {
                "layer": st["layer"],
                "entity": st["entity"],
                "table_name": table,
                "exists": st["exists"],
                "newest_at": newest_at,
                "age_minutes": age,
                "sla_minutes": None if sla is None else float(sla),
                "basis": st["basis"],
                "stale": bool(stale),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------ volumes
def volume_band(history: list[int], cfg: dict) -> tuple[float | None, float | None]:
    """Robust band over earlier batches: median +- max(k x 1.4826 x MAD, fraction x median)."""
    if len(history) < int(cfg["min_history"]):
        return None, None
    med = statistics.median(history)
    mad = statistics.median([abs(x - med) for x in history])
    half = max(float(cfg["band_mads"]) * 1.4826 * mad, float(cfg["min_band_fraction"]) * med)
    return max(0.0, med - half), med + half


def volumes(m: Measure) -> list[dict]:
    cfg = m.cfg["volumes"]
    n = int(cfg["history_batches"])
    rows = []
    for entity in ENTITIES:
        table = m.settings.table_name("bronze", entity)
        df = m.read_if_exists(table)
        if df is None:
            continue
        batches = (
            df.select(F.regexp_extract("_source_file", BATCH_OF_FILE, 1).alias("batch"))
            .groupBy("batch")
            .count()
            .orderBy(F.col("batch").desc())
            .limit(2 * n + 1)
            .collect()
        )
        series = [(r["batch"], int(r["count"])) for r in reversed(batches)]
        for i in range(max(0, len(series) - (n + 1)), len(series)):  # earlier ones only feed the bands
            batch, count = series[i]
            history = [c for _, c in series[max(0, i - n) : i]]
            low, high = volume_band(history, cfg)
            anomaly = low is not None and not (low <= count <= high)
            rows.append(
                {
                    "entity": entity,
                    "table_name": table,
                    "batch": batch,
                    "rows": count,
                    "band_low": low,
                    "band_high": high,
                    "history_batches": len(history),
                    "anomaly": bool(anomaly),
                    "latest": i == len(series) - 1,
                }
            )
    return rows


# ------------------------------------------------------------------------------------------------ drift
def psi(expected: list[float], actual: list[float], floor: float = 1e-4) -> float:
    """Population stability index: sum over bins of (a - e) * ln(a / e), proportions floored to avoid log(0)."""
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, floor), max(a, floor)
        total += (a - e) * math.log(a / e)
    return round(total, 6)


def _bin_expr(column: str, edges: list[float]):
    expr = F.when(F.col(column) <= F.lit(edges[0]), F.lit(0))
    for i, edge in enumerate(edges[1:], start=1):
        expr = expr.when(F.col(column) <= F.lit(edge), F.lit(i))
    return expr.otherwise(F.lit(len(edges)))


def proportions(df: DataFrame, column: str, edges: list[float]) -> tuple[list[float], int]:
    counts = {
        r["b"]: int(r["n"])
        for r in df.where(F.col(column).isNotNull())
        .groupBy(_bin_expr(column, edges).alias("b"))
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    n = sum(counts.values())
    return ([counts.get(i, 0) / n if n else 0.0 for i in range(len(edges) + 1)], n)


def drift(m: Measure, baselines: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """PSI per configured column vs its baseline; returns (drift rows, baselines captured now)."""
    cfg = m.cfg["drift"]
    min_rows, bins = int(cfg["min_rows"]), int(cfg["bins"])
    since = (m.now - timedelta(hours=float(cfg["window_hours"]))).timestamp()
    rows, captured = [], []
    for column, entity in cfg["columns"].items():
        table = m.settings.table_name("silver", entity)
        df = m.read_if_exists(table)
        row = {
            "column_name": column,
            "entity": entity,
            "table_name": table,
            "psi": None,
            "rows_current": 0,
            "rows_baseline": None,
            "status": "no_data",
            "breach": False,
        }
        rows.append(row)
        if df is None or column not in df.columns:
            continue
        base = baselines.get(column)
        if base is None:
            values = df.where(F.col(column).isNotNull()).select(F.col(column).cast("double").alias(column))
            n = values.count()
            if n < min_rows:
                row["status"] = "insufficient_data"
                continue
            edges = values.approxQuantile(column, [i / bins for i in range(1, bins)], 0.001)
            edges = sorted(set(float(e) for e in edges))
            props, n = proportions(values, column, edges)
            base = {
                "column_name": column,
                "entity": entity,
                "edges": edges,
                "proportions": props,
                "rows": n,
                "captured_run_id": m.run_id,
                "captured_at": m.now,
            }
            captured.append(base)
        current = df.where(epoch("_processed_at") >= since) if "_processed_at" in df.columns else df
        props, n = proportions(current.select(F.col(column).cast("double").alias(column)), column, list(base["edges"]))
        row.update(rows_current=n, rows_baseline=int(base["rows"]))
        if n < min_rows:
            row["status"] = "insufficient_data"
            continue
        value = psi(list(base["proportions"]), props)
        row["psi"] = value
        row["status"] = (
            "drift" if value >= float(cfg["psi_alert"]) else "warn" if value >= float(cfg["psi_warn"]) else "ok"
        )
        row["breach"] = row["status"] == "drift"
    return rows, captured


# ------------------------------------------------------------------------------------------------ reconciliation
def reconciliation(m: Measure, previous: dict[str, bool]) -> list[dict]:
    """Per entity: landed in bronze = valid + quarantined + exact duplicates + held (silver's run figures).

    `landed` counts the bronze rows ingested up to the latest silver run of the entity (rows that arrived later are
    `backlog`, not a mismatch). A mismatch is a breach once it persists `consecutive_runs` monitoring runs
    (`previous` maps entity -> balanced in the previous monitoring run).
    """
    need = int(m.cfg["reconciliation"]["consecutive_runs"])
    runs = _silver_run_figures(m)
    sums = {}
    if runs is not None:
        sums = {
            r["entity"]: r.asDict()
            for r in runs.groupBy("entity")
            .agg(
                *[F.sum(c).alias(c) for c in ("rows_in", "valid", "quarantined", "exact_duplicates", "held")],
                F.max(epoch("processed_at")).alias("cutoff"),
            )
            .collect()
        }
    rows = []
    for entity in ENTITIES:
        bronze = m.read_if_exists(m.settings.table_name("bronze", entity))
        landed_all = bronze.count() if bronze is not None else 0
        row = {
            "entity": entity,
            "landed": landed_all,
            "processed": None,
            "valid": None,
            "quarantined": None,
            "duplicates": None,
            "held": None,
            "backlog": None,
            "difference": None,
            "balanced": None,
            "source": "silver_runs" if runs is not None else "tables",
            "breach": False,
        }
        s = sums.get(entity)
        if s is not None:
            cutoff = s["cutoff"]
            landed = bronze.where(epoch("_ingested_at") <= cutoff).count() if bronze is not None else 0
            accounted = sum(int(s[c] or 0) for c in ("valid", "quarantined", "exact_duplicates", "held"))
            processed = int(s["rows_in"] or 0)
            balanced = processed == accounted and landed == processed
            row.update(
                landed=landed,
                processed=processed,
                valid=int(s["valid"] or 0),
                quarantined=int(s["quarantined"] or 0),
                duplicates=int(s["exact_duplicates"] or 0),
                held=int(s["held"] or 0),
                backlog=landed_all - landed,
                difference=landed - accounted,
                balanced=balanced,
            )
            streak = 1 if not balanced else 0
            if not balanced and need > 1 and previous.get(entity) is False:
                streak = need  # it was unbalanced in the previous run too
            row["breach"] = not balanced and streak >= need
        elif runs is None:  # no run figures: the tables alone cannot tell duplicates or merged versions apart
            for key, layer in (("valid", "silver"), ("quarantined", "quarantine"), ("held", "held")):
                if entity in m.settings.raw["tables"][layer]:
                    df = m.read_if_exists(m.settings.table_name(layer, entity))
                    row[key] = df.count() if df is not None else 0
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ audit
def audited_tables(m: Measure) -> list[tuple[str, str]]:
    """(layer, table) of every pipeline table, including silver's and bronze's ops tables, not the monitor's own."""
    own = set(m.cfg["tables"].values()) | {m.ops("table_counts")}
    tables = [(layer, t) for layer in LAYERS for t in m.settings.raw["tables"][layer].values()]
    tables += [("ops", t) for t in m.settings.raw["tables"]["ops"].values() if t not in own]
    return tables


def audit(m: Measure, last_versions: dict[str, int]) -> list[dict]:
    """Commits and change-data-feed row changes per table since the version the previous monitoring run audited."""
    rows = []
    for layer, table in audited_tables(m):
        if not m.lake.exists(table):
            continue
        current = m.lake.version(table)
        start = last_versions.get(table, -1) + 1
        base = {"layer": layer, "table_name": table, "from_version": start, "to_version": current}
        if start > current:
            rows.append(
                {
                    **base,
                    "commits": 0,
                    "operations": {},
                    "writer_run_id": None,
                    "inserts": 0,
                    "updates": 0,
                    "deletes": 0,
                }
            )
            continue
        history = (
            m.lake.history(table)
            .where(F.col("version") >= start)
            .where(F.col("version") <= current)
            .groupBy("operation")
            .count()
            .collect()
        )
        operations = {r["operation"]: int(r["count"]) for r in history}
        commits = sum(operations.values())
        try:
            changes = m.lake.read_changes(table, start, current)
            writer = F.col("_run_id") if "_run_id" in changes.columns else F.lit(None).cast("string")
            per_writer = (
                changes.groupBy(writer.alias("writer_run_id"))
                .agg(
                    F.sum((F.col("_change_type") == "insert").cast("long")).alias("inserts"),
                    F.sum((F.col("_change_type") == "update_postimage").cast("long")).alias("updates"),
                    F.sum((F.col("_change_type") == "delete").cast("long")).alias("deletes"),
                )
                .collect()
            )
        except AnalysisException as exc:  # change data feed unavailable for these versions
            m.notes.append(
                f"{table}: change data feed of versions {start}-{current} unreadable ({str(exc).splitlines()[0][:120]})"
            )
            per_writer = []
        if not per_writer:
            rows.append(
                {
                    **base,
                    "commits": commits,
                    "operations": operations,
                    "writer_run_id": None,
                    "inserts": 0,
                    "updates": 0,
                    "deletes": 0,
                }
            )
        for r in per_writer:
            rows.append(
                {
                    **base,
                    "commits": commits,
                    "operations": operations,
                    "writer_run_id": r["writer_run_id"],
                    "inserts": int(r["inserts"] or 0),
                    "updates": int(r["updates"] or 0),
                    "deletes": int(r["deletes"] or 0),
                }
            )
    return rows


# ------------------------------------------------------------------------------------------------ breaches
def breaches(quality_rows, freshness_rows, volume_rows, drift_rows, recon_rows, cfg: dict) -> list[dict]:
    """What this monitoring run found wrong: kind, subject, a one-line detail (counts and names only) and a key
    that identifies the same problem across runs (an e-mail goes out when a key is new)."""
    out = []
    for r in quality_rows:
        if r["breach"]:
            out.append(
                {
                    "kind": "quality_score",
                    "subject": r["entity"],
                    "detail": f"quality score {r['score']:.4%} below target {r['target_score']:.2%} "
                    f"({r['quarantined']} of {r['valid'] + r['quarantined']} rows quarantined this window)",
                    "key": f"quality_score:{r['entity']}",
                }
            )
    for r in freshness_rows:
        if r["stale"]:
            detail = (
                f"{r['layer']} table missing (SLA {r['sla_minutes']:.0f} min)"
                if not r["exists"]
                else f"newest data {r['age_minutes']:.0f} min old, SLA {r['sla_minutes']:.0f} min"
                if r["age_minutes"] is not None
                else f"no data (SLA {r['sla_minutes']:.0f} min)"
            )
            out.append(
                {
                    "kind": "stale_table",
                    "subject": r["table_name"],
                    "detail": detail,
                    "key": f"stale_table:{r['table_name']}",
                }
            )
    if cfg["volumes"].get("alert", True):
        for r in volume_rows:
            if r["latest"] and r["anomaly"]:
                out.append(
                    {
                        "kind": "volume",
                        "subject": r["table_name"],
                        "detail": f"batch {r['batch']} has {r['rows']} rows, outside the band "
                        f"{r['band_low']:.0f}-{r['band_high']:.0f} of the {r['history_batches']} batches before it",
                        "key": f"volume:{r['table_name']}:{r['batch']}",
                    }
                )
    for r in drift_rows:
        if r["breach"]:
            out.append(
                {
                    "kind": "drift",
                    "subject": f"{r['table_name']}.{r['column_name']}",
                    "detail": f"PSI {r['psi']:.3f} >= {float(cfg['drift']['psi_alert'])} over {r['rows_current']} "
                    f"rows of the last {cfg['drift']['window_hours']} h vs the baseline",
                    "key": f"drift:{r['column_name']}",
                }
            )
    for r in recon_rows:
        if r["breach"]:
            out.append(
                {
                    "kind": "reconciliation",
                    "subject": r["entity"],
                    "detail": f"landed {r['landed']} != valid {r['valid']} + quarantined {r['quarantined']} + "
                    f"duplicates {r['duplicates']} + held {r['held']} (difference {r['difference']}; "
                    f"silver read {r['processed']})",
                    "key": f"reconciliation:{r['entity']}",
                }
            )
    return out
