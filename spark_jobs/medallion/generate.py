"""Synthetic data generator: three CSV files per hourly interval, generated in parallel Spark partitions.

Each partition owns a disjoint range of patient indices and its own random generator seeded from
(global seed, interval hour, first index), so the output is the same however Spark schedules it and the
same interval always gives byte-identical files. Files are written under a staging name and renamed into
the landing folder, so bronze never sees half a file.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from .cli import JobContext, JobError, entry
from .config import ENTITIES
from .schemas import landing_columns

REGIONS = ["NORTHEAST", "NORTHWEST", "SOUTHEAST", "SOUTHWEST"]
REGION_FACTOR = {"NORTHEAST": 1.05, "NORTHWEST": 1.00, "SOUTHEAST": 1.08, "SOUTHWEST": 0.97}
SMOKER_FACTOR = 3.3
NAME_POOL = 2000


def add_arguments(parser):
    parser.add_argument("--patients", type=int, default=None, help="new patients in this batch")
    parser.add_argument("--seed", type=int, default=None, help="global seed (default from config)")
    parser.add_argument("--partitions", type=int, default=None, help="Spark partitions generating the batch")


def interval_tag(start: datetime) -> str:
    return start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H%MZ")


def smoker_probability(age: np.ndarray) -> np.ndarray:
    """Age-dependent smoking probability: 8 % baseline, peaking near 30 % around age 35."""
    return 0.08 + 0.22 * np.exp(-(((age - 35.0) / 18.0) ** 2))


def premium(age, bmi, children, smoker, region) -> np.ndarray:
    """Annual premium from risk factors (see README): age, excess BMI, dependents, region; smokers pay 3.3x."""
    base = 1800.0 + 240.0 * age + 320.0 * np.maximum(bmi - 25.0, 0.0) + 480.0 * children
    factor = np.vectorize(REGION_FACTOR.get)(region) * np.where(smoker, SMOKER_FACTOR, 1.0)
    return np.round(base * factor, 2)


def _name_pools(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from faker import Faker
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return (np.array([fake.first_name() for _ in range(NAME_POOL)]),
            np.array([fake.last_name() for _ in range(NAME_POOL)]))


def _skewed(rng: np.random.Generator, values: list, size: int) -> np.ndarray:
    """Draw from a vocabulary with a Zipf-like frequency skew (the first values are the most common)."""
    weights = 1.0 / np.arange(1, len(values) + 1) ** 0.9
    return rng.choice(np.array(values, dtype=object), size=size, p=weights / weights.sum())


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, header=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    return buf.getvalue()


def generate_partition(lo: int, hi: int, params: dict) -> dict[str, str]:
    """Generate the block of patients [lo, hi) of one batch with their claims and events; returns CSV bodies per entity."""
    hour = params["hour"]
    rng = np.random.default_rng([params["seed"], hour, lo])
    n = hi - lo
    start = datetime.fromisoformat(params["interval_start"])
    seconds = rng.integers(0, params["interval_seconds"], size=n)
    ts = np.array([start + timedelta(seconds=int(s)) for s in seconds])
    age = np.clip(np.rint(rng.normal(45, 15, n)), 18, 85).astype(int)
    sex = rng.choice(["MALE", "FEMALE"], size=n)
    region = rng.choice(REGIONS, size=n)
    bmi = np.round(np.clip(rng.normal(28, 6, n), 16, 50), 1)
    smoker = rng.random(n) < smoker_probability(age)
    children = rng.poisson(1.2, n)
    first_pool, last_pool = _name_pools(params["seed"])
    coverage_days = rng.integers(0, 5 * 365, size=n)
    coverage = np.array([(t - timedelta(days=int(d))).date() for t, d in zip(ts, coverage_days)])
    patient_ids = np.array([f"P{hour}-{i:07d}" for i in range(lo, hi)])
    patients = pd.DataFrame({
        "patient_id": patient_ids,
        "first_name": rng.choice(first_pool, n),
        "last_name": rng.choice(last_pool, n),
        "age": age, "sex": sex, "region": region, "bmi": bmi,
        "smoker": np.where(smoker, "true", "false"),
        "children": children,
        "charges": premium(age, bmi, children, smoker, region),
        "insurance_plan": rng.choice(params["plans"], n),
        "coverage_start_date": [d.isoformat() for d in coverage],
        "timestamp": [t.strftime("%Y-%m-%d %H:%M:%S") for t in ts],
    })[params["columns"]["patients"]]

    def children_of(mean: float):
        counts = rng.poisson(mean, n)
        owner = np.repeat(np.arange(n), counts)
        # dates uniform between coverage start and the record's timestamp (never in the future)
        span = np.maximum(coverage_days[owner], 0)
        back = np.floor(rng.random(owner.size) * (span + 1)).astype(int)
        dates = [(ts[o] - timedelta(days=int(b))).date().isoformat() for o, b in zip(owner, back)]
        return owner, dates

    c_owner, c_dates = children_of(params["claims_mean"])
    m = c_owner.size
    status_names = list(params["status_mix"])
    status_p = np.array([params["status_mix"][s] for s in status_names], dtype=float)
    claims = pd.DataFrame({
        "claim_id": [f"C{hour}-{lo:07d}-{j:06d}" for j in range(m)],
        "patient_id": patient_ids[c_owner],
        "claim_amount": np.round(rng.lognormal(np.log(650.0), 1.0, m) + 5.0, 2),
        "claim_date": c_dates,
        "diagnosis_code": _skewed(rng, params["diagnosis_codes"], m),
        "procedure_code": _skewed(rng, params["procedure_codes"], m),
        "claim_status": rng.choice(status_names, size=m, p=status_p / status_p.sum()),
    })[params["columns"]["claims"]]

    e_owner, e_dates = children_of(params["events_mean"])
    k = e_owner.size
    events = pd.DataFrame({
        "event_id": [f"E{hour}-{lo:07d}-{j:06d}" for j in range(k)],
        "patient_id": patient_ids[e_owner],
        "event_date": e_dates,
        "event_type": _skewed(rng, params["event_types"], k),
        "medical_provider": rng.choice(params["providers"], k),
    })[params["columns"]["medical_events"]]
    return {"patients": _csv(patients), "claims": _csv(claims), "medical_events": _csv(events)}


def _publish(ctx: JobContext, staged_dir: str, final_path: str) -> None:
    """Move the single part file Spark wrote into its final landing name (atomic rename locally)."""
    if ctx.settings.is_local:
        parts = sorted(f for f in os.listdir(staged_dir) if f.startswith("part-") and f.endswith(".txt"))
        if len(parts) != 1:
            raise JobError(f"expected one staged part file, found {len(parts)}")
        os.makedirs(os.path.dirname(final_path), exist_ok=True)
        os.replace(os.path.join(staged_dir, parts[0]), final_path)
        shutil.rmtree(staged_dir, ignore_errors=True)
        return
    jvm = ctx.spark.sparkContext._jvm
    conf = ctx.spark.sparkContext._jsc.hadoopConfiguration()
    src_dir = jvm.org.apache.hadoop.fs.Path(staged_dir)
    fs = src_dir.getFileSystem(conf)
    parts = [s.getPath() for s in fs.listStatus(src_dir) if s.getPath().getName().startswith("part-")]
    if len(parts) != 1:
        raise JobError(f"expected one staged part file, found {len(parts)}")
    dst = jvm.org.apache.hadoop.fs.Path(final_path)
    fs.mkdirs(dst.getParent())
    fs.delete(dst, False)
    if not fs.rename(parts[0], dst):
        raise JobError(f"could not move staged file to {final_path}")
    fs.delete(src_dir, True)


def run(ctx: JobContext) -> dict:
    gen = ctx.settings.generator
    start = ctx.interval_start
    if start is None:
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        start = now - timedelta(hours=1)
    end = ctx.interval_end or start + timedelta(hours=1)
    n_patients = ctx.args.patients if ctx.args.patients is not None else int(gen["patients_per_batch"])
    if n_patients < 0:
        raise JobError("--patients must not be negative")
    seed = ctx.args.seed if ctx.args.seed is not None else int(gen["seed"])
    block = int(gen.get("block_size", 5000))
    n_blocks = max(1, -(-n_patients // block))
    parts = max(1, min(ctx.args.partitions or int(gen.get("partitions", 4)), n_blocks))
    params = {
        "hour": int(start.timestamp() // 3600), "seed": seed,
        "interval_start": start.astimezone(timezone.utc).isoformat(),
        "interval_seconds": max(1, int((end - start).total_seconds())),
        "plans": list(gen["insurance_plans"]), "status_mix": dict(gen["claim_status_mix"]),
        "event_types": list(gen["event_types"]), "providers": list(gen["providers"]),
        "diagnosis_codes": list(gen["diagnosis_codes"]), "procedure_codes": list(gen["procedure_codes"]),
        "claims_mean": float(gen["claims_per_patient_mean"]), "events_mean": float(gen["events_per_patient_mean"]),
        "columns": {e: landing_columns(e) for e in ENTITIES},
    }

    # Blocks of patients are the unit of randomness (seeded by their first index), partitions only the unit of
    # parallelism: the files are the same whatever the partition count.
    def gen_fn(batches):
        for pdf in batches:
            rows = []
            for b in pdf["id"]:
                lo, hi = int(b) * block, min((int(b) + 1) * block, n_patients)
                bodies = generate_partition(lo, hi, params) if hi > lo else {e: "" for e in ENTITIES}
                rows.extend((e, int(b), bodies[e]) for e in ENTITIES)
            yield pd.DataFrame(rows, columns=["entity", "part", "body"])

    spark = ctx.spark
    chunks = (spark.range(0, n_blocks, numPartitions=parts)
              .mapInPandas(gen_fn, "entity string, part int, body string")
              .persist())
    tag = interval_tag(start)
    landing, staging = ctx.settings.location("landing"), ctx.settings.location("staging")
    counts = {}
    from pyspark.sql import functions as F
    for entity in ENTITIES:
        header = spark.createDataFrame([(entity, -1, ",".join(params["columns"][entity]) + "\n")],
                                       "entity string, part int, body string")
        staged = os.path.join(staging, f"{tag}-{entity}-{uuid.uuid4().hex}")
        body = chunks.filter(F.col("entity") == entity).filter(F.length("body") > 0)
        (header.unionByName(body).orderBy("part").select(F.expr("substring(body, 1, length(body) - 1)"))
         .coalesce(1).write.option("lineSep", "\n").text(staged))
        _publish(ctx, staged, os.path.join(landing, tag, ctx.settings.landing_file(entity)))
        counts[entity] = int(body.select(F.sum(F.size(F.split(F.col("body"), "\n")) - 1)).first()[0] or 0)
    chunks.unpersist()
    manifest = {"interval_start": start.isoformat(), "interval_end": end.isoformat(), "seed": seed,
                "patients_requested": n_patients, "rows": counts}
    manifest_dir = os.path.join(ctx.settings.location("manifests"), tag)
    if ctx.settings.is_local:
        os.makedirs(manifest_dir, exist_ok=True)
        with open(os.path.join(manifest_dir, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True)
    else:
        spark.createDataFrame([(json.dumps(manifest, sort_keys=True),)], "value string").coalesce(1) \
            .write.mode("overwrite").text(manifest_dir)
    return {"landing_dir": os.path.join(landing, tag), "rows": counts, "partitions": parts, "blocks": n_blocks}


main = entry("generate", run, add_arguments)

if __name__ == "__main__":
    main()
