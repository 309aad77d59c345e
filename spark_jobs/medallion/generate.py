"""Synthetic data generator job: three CSV files per hourly interval, generated in parallel Spark partitions.

The data model lives in `synth.py`; this job spreads its blocks over Spark partitions, writes each file under a
staging name and renames it into the landing folder (bronze never sees half a file), and writes the batch's
ground-truth manifest (outside the landing folder). The same interval and settings give byte-identical files,
whatever the partition count.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timedelta, timezone

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .cli import JobContext, JobError, entry
from .config import ENTITIES
from .schemas import landing_columns
from .synth import block_bodies


def add_arguments(parser):
    parser.add_argument("--patients", type=int, default=None, help="new patients in this batch")
    parser.add_argument("--seed", type=int, default=None, help="global seed (default from config)")
    parser.add_argument("--partitions", type=int, default=None, help="Spark partitions generating the batch")
    parser.add_argument("--defect-rate", type=float, default=None, help="share of defective rows added")
    parser.add_argument(
        "--update-share",
        type=float,
        default=None,
        help="new versions of earlier patients, as a share of the batch's new patients",
    )


def interval_tag(start: datetime) -> str:
    return start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H%MZ")


def _publish(ctx: JobContext, staged_dir: str, final_path: str) -> None:
    """Move the single part file Spark wrote into its final landing name (see `Lakehouse.publish_file`)."""
    try:
        ctx.lakehouse.publish_file(staged_dir, final_path)
    except RuntimeError as exc:
        raise JobError(str(exc)) from None


MANIFEST = "manifest.json"


def load_history(manifest_root: str, start: datetime, lookback_hours: int) -> list[dict]:
    """Earlier batches (from their manifests) within the lookback window: whom later batches may change."""
    history = []
    if not os.path.isdir(manifest_root):
        return history
    for tag in sorted(os.listdir(manifest_root)):
        path = os.path.join(manifest_root, tag, MANIFEST)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as fh:
            spec = json.load(fh)["spec"]
        begun = datetime.fromisoformat(spec["interval_start"])
        if start - timedelta(hours=lookback_hours) <= begun < start:
            history.append(spec)
    return history


def batch_spec(ctx: JobContext, start: datetime, end: datetime, n_patients: int) -> dict:
    gen, quality = ctx.settings.generator, ctx.settings.quality
    args = ctx.args
    changes = dict(gen["changes"])
    if args.update_share is not None:
        changes["patient_update_share"] = args.update_share
    rate = args.defect_rate if args.defect_rate is not None else float(gen["defects"]["rate"])
    if not 0 <= rate < 0.5:
        raise JobError(f"--defect-rate must be in [0, 0.5), not {rate}")
    return {
        "hour": int(start.timestamp() // 3600),
        "seed": args.seed if args.seed is not None else int(gen["seed"]),
        "interval_start": start.astimezone(timezone.utc).isoformat(),
        "interval_seconds": max(1, int((end - start).total_seconds())),
        "patients": n_patients,
        "block_size": int(gen.get("block_size", 5000)),
        "claims_mean": float(gen["claims_per_patient_mean"]),
        "events_mean": float(gen["events_per_patient_mean"]),
        "plans": list(gen["insurance_plans"]),
        "status_mix": dict(gen["claim_status_mix"]),
        "event_types": list(quality["vocabularies"]["event_type"]),
        "providers": list(gen["providers"]),
        "diagnosis_codes": list(gen["diagnosis_codes"]),
        "procedure_codes": list(gen["procedure_codes"]),
        "changes": changes,
        "defects": {"rate": rate},
        "columns": {e: landing_columns(e) for e in ENTITIES},
        "files": {e: ctx.settings.landing_file(e) for e in ENTITIES},
    }


HISTORY_FIELDS = (
    "hour",
    "seed",
    "interval_start",
    "interval_seconds",
    "patients",
    "block_size",
    "claims_mean",
    "events_mean",
)


def data_interval(ctx: JobContext) -> tuple[datetime, datetime]:
    """The batch's data interval: the run's; without one (a manual run), the last whole hour."""
    start = ctx.interval_start
    if start is None:
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        start = now - timedelta(hours=1)
    return start, ctx.interval_end or start + timedelta(hours=1)


def generate_blocks(ctx: JobContext, spec: dict, n_blocks: int, parts: int) -> DataFrame:
    """Fan-out: every block of patients becomes one text body per entity (and one `_meta` row of counts and
    defects), generated in `parts` Spark partitions. Blocks are the unit of randomness (seeded by their first
    index), partitions only the unit of parallelism: the files are the same whatever the partition count."""
    n_patients = spec["patients"]

    def gen_fn(batches):
        for pdf in batches:
            rows = []
            for b in pdf["id"]:
                if b * spec["block_size"] >= n_patients:
                    continue
                bodies, counts, defects = block_bodies(int(b), n_patients, spec)
                lines = {e: bodies[e].count("\n") for e in ENTITIES}
                rows.extend((e, int(b), bodies[e]) for e in ENTITIES)
                rows.append(("_meta", int(b), json.dumps({"counts": counts, "lines": lines, "defects": defects})))
            yield pd.DataFrame(rows, columns=["entity", "block", "body"])

    return ctx.spark.range(0, n_blocks, numPartitions=parts).mapInPandas(
        gen_fn, "entity string, block int, body string"
    )


def publish_files(ctx: JobContext, chunks: DataFrame, spec: dict, tag: str) -> str:
    """Write each entity's file — its header, then the block bodies in block order — as one staged part file, and
    rename it into the landing folder of the interval (bronze never sees half a file). Returns that folder."""
    spark = ctx.spark
    landing, staging = ctx.settings.location("landing"), ctx.settings.location("staging")
    for entity in ENTITIES:
        header = spark.createDataFrame(
            [(entity, -1, ",".join(spec["columns"][entity]) + "\n")], "entity string, block int, body string"
        )
        staged = os.path.join(staging, f"{tag}-{entity}-{uuid.uuid4().hex}")
        body = chunks.filter(F.col("entity") == entity).filter(F.length("body") > 0)
        (
            header.unionByName(body)
            .orderBy("block")
            .select(F.expr("substring(body, 1, length(body) - 1)"))
            .coalesce(1)
            .write.option("lineSep", "\n")
            .text(staged)
        )
        _publish(ctx, staged, os.path.join(landing, tag, ctx.settings.landing_file(entity)))
    return os.path.join(landing, tag)


def ground_truth(spec: dict, meta: dict[int, dict], end: datetime) -> dict:
    """The batch's manifest: its spec (what later batches need), row counts, and every injected defect with its file
    line (header = line 1) and the rule expected to catch it."""
    defects, offsets = [], {e: 1 for e in ENTITIES}
    rows = {e: 0 for e in ENTITIES}
    changed = {e: 0 for e in ENTITIES}
    for b in sorted(meta):
        m = meta[b]
        for d in m["defects"]:
            e = d["entity"]
            line = offsets[e] + m["counts"][e] + d["block_line"]
            defects.append(
                {
                    "file": d["file"],
                    "line": line,
                    "key": d["key"],
                    "kind": d["kind"],
                    "expected_rule": d["expected_rule"],
                }
            )
        for e in ENTITIES:
            offsets[e] += m["lines"][e]
            rows[e] += m["counts"][e]
            changed[e] += m["counts"][f"changed_{e}"]
    return {
        "spec": {k: spec[k] for k in HISTORY_FIELDS},
        "interval_end": end.isoformat(),
        "clean_rows": rows,
        "changed_rows": changed,
        "file_lines": {e: offsets[e] - 1 for e in ENTITIES},
        "defect_rate": spec["defects"]["rate"],
        "defects": defects,
    }


def write_manifest(manifest_root: str, tag: str, manifest: dict) -> str:
    """Replace the interval's manifest atomically (a temporary file beside it, then a rename); returns its path."""
    manifest_dir = os.path.join(manifest_root, tag)
    os.makedirs(manifest_dir, exist_ok=True)  # local folder or a Unity Catalog volume (FUSE path) on Databricks
    tmp = os.path.join(manifest_dir, f".{MANIFEST}.{uuid.uuid4().hex}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
    path = os.path.join(manifest_dir, MANIFEST)
    os.replace(tmp, path)
    return path


def run(ctx: JobContext) -> dict:
    gen = ctx.settings.generator
    start, end = data_interval(ctx)
    n_patients = ctx.args.patients if ctx.args.patients is not None else int(gen["patients_per_batch"])
    if n_patients < 0:
        raise JobError("--patients must not be negative")
    spec = batch_spec(ctx, start, end, n_patients)
    manifest_root = ctx.settings.location("manifests")
    spec["history"] = load_history(manifest_root, start, int(gen["changes"]["lookback_hours"]))
    n_blocks = max(1, -(-n_patients // spec["block_size"]))
    parts = max(1, min(ctx.args.partitions or int(gen.get("partitions", 4)), n_blocks))

    tag = interval_tag(start)
    # generated once into the staging folder, then read four times (metadata, three files): not cached, which
    # serverless may not offer (medallion.session.cached)
    blocks = os.path.join(ctx.settings.location("staging"), f"{tag}-blocks-{uuid.uuid4().hex}")
    generate_blocks(ctx, spec, n_blocks, parts).write.parquet(blocks)
    try:
        chunks = ctx.spark.read.parquet(blocks)
        # the small per-block metadata (counts, defect list) comes to the driver; the row data never does
        meta = {r["block"]: json.loads(r["body"]) for r in chunks.filter(F.col("entity") == "_meta").collect()}
        landing_dir = publish_files(ctx, chunks, spec, tag)
    finally:
        shutil.rmtree(blocks, ignore_errors=True)

    manifest = ground_truth(spec, meta, end)
    by_kind: dict[str, int] = {}
    for d in manifest["defects"]:
        by_kind[d["kind"]] = by_kind.get(d["kind"], 0) + 1
    return {
        "landing_dir": landing_dir,
        "rows": manifest["file_lines"],
        "clean_rows": manifest["clean_rows"],
        "changed_rows": manifest["changed_rows"],
        "defects": len(manifest["defects"]),
        "defects_by_kind": by_kind,
        "history_batches": len(spec["history"]),
        "partitions": parts,
        "blocks": n_blocks,
        "manifest": write_manifest(manifest_root, tag, manifest),
    }


main = entry("generate", run, add_arguments)

if __name__ == "__main__":
    main()
