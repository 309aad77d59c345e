"""The generator: deterministic per interval, ids unique across intervals, clean rows referentially intact."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from medallion.config import ENTITIES
from medallion.generate import generate_partition, premium, smoker_probability
from medallion.schemas import landing_columns

H5 = ["--interval-start", "2026-11-27T05:00:00Z", "--interval-end", "2026-11-27T06:00:00Z"]
H6 = ["--interval-start", "2026-11-27T06:00:00Z", "--interval-end", "2026-11-27T07:00:00Z"]


def _read(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_interval_gives_byte_identical_files_and_rerun_replaces_them(run_job, monkeypatch):
    monkeypatch.setenv("MEDALLION_GENERATOR_BLOCK_SIZE", "100")  # three seeded blocks
    first = run_job("generate", *H5, "--patients", "300", "--partitions", "1")
    assert first["blocks"] == 3
    folder = Path(first["landing_dir"])
    assert sorted(p.name for p in folder.iterdir()) == ["claims.csv", "medical_events.csv", "patients.csv"]
    digest = _digest(folder)
    again = run_job("generate", *H5, "--patients", "300", "--partitions", "3")  # other partitioning, same bytes
    assert again["landing_dir"] == first["landing_dir"]
    assert _digest(folder) == digest
    assert sorted(p.name for p in folder.iterdir()) == ["claims.csv", "medical_events.csv", "patients.csv"]


def test_files_have_the_bronze_columns_in_order_and_claims_reference_patients(run_job):
    out = Path(run_job("generate", *H5, "--patients", "400")["landing_dir"])
    for entity in ENTITIES:
        with (out / f"{entity}.csv").open(encoding="utf-8") as fh:
            assert fh.readline().rstrip("\n").split(",") == landing_columns(entity)
    patients = _read(out / "patients.csv")
    ids = {p["patient_id"] for p in patients}
    assert len(patients) == 400 == len(ids)
    claims, events = _read(out / "claims.csv"), _read(out / "medical_events.csv")
    assert {c["patient_id"] for c in claims} <= ids and {e["patient_id"] for e in events} <= ids
    assert 2 <= len(claims) / len(patients) <= 5 and 3 <= len(events) / len(patients) <= 8
    assert all("2026-11-27 05:00:00" <= p["timestamp"] < "2026-11-27 06:00:00" for p in patients)
    assert all(p["coverage_start_date"] <= p["timestamp"][:10] for p in patients)


def test_ids_are_unique_across_intervals(run_job):
    a = Path(run_job("generate", *H5, "--patients", "100")["landing_dir"])
    b = Path(run_job("generate", *H6, "--patients", "100")["landing_dir"])
    for entity, key in (("patients", "patient_id"), ("claims", "claim_id"), ("medical_events", "event_id")):
        ids_a = {r[key] for r in _read(a / f"{entity}.csv")}
        ids_b = {r[key] for r in _read(b / f"{entity}.csv")}
        assert ids_a and ids_b and not ids_a & ids_b


def _params(**over):
    from medallion.config import load_raw
    gen = load_raw()["generator"]
    p = {"hour": 493000, "seed": 7, "interval_start": "2026-11-27T05:00:00+00:00", "interval_seconds": 3600,
         "plans": gen["insurance_plans"], "status_mix": gen["claim_status_mix"], "event_types": gen["event_types"],
         "providers": gen["providers"], "diagnosis_codes": gen["diagnosis_codes"],
         "procedure_codes": gen["procedure_codes"], "claims_mean": 3.5, "events_mean": 5.5,
         "columns": {e: landing_columns(e) for e in ENTITIES}}
    p.update(over)
    return p


def test_partition_output_depends_only_on_its_inputs():
    assert generate_partition(0, 50, _params()) == generate_partition(0, 50, _params())
    assert generate_partition(0, 50, _params()) != generate_partition(0, 50, _params(seed=8))
    assert generate_partition(0, 50, _params()) != generate_partition(50, 100, _params())


def test_distributions_follow_the_spec_on_10k_patients():
    import io

    import pandas as pd
    body = generate_partition(0, 10_000, _params())["patients"]
    df = pd.read_csv(io.StringIO(body), names=landing_columns("patients"))
    assert df.age.between(18, 85).all() and abs(df.age.mean() - 45) < 1.0 and 13 < df.age.std() < 16
    assert df.bmi.between(16, 50).all() and abs(df.bmi.mean() - 28) < 0.5 and 5.5 < df.bmi.std() < 6.5
    assert abs((df.sex == "MALE").mean() - 0.5) < 0.03
    assert set(df.region) == {"NORTHEAST", "NORTHWEST", "SOUTHEAST", "SOUTHWEST"}
    assert abs(df.children.mean() - 1.2) < 0.08
    assert (df.charges > 0).all()
    smokers = df.smoker.astype(str).str.lower() == "true"
    ratio = df.charges[smokers].mean() / df.charges[~smokers].mean()
    assert 3.0 <= ratio <= 4.0


def test_smoking_curve_and_premium_formula():
    assert smoker_probability(np.array([35.0]))[0] > smoker_probability(np.array([80.0]))[0]
    base = premium(np.array([40]), np.array([30.0]), np.array([1]), np.array([False]), np.array(["NORTHWEST"]))
    smoker = premium(np.array([40]), np.array([30.0]), np.array([1]), np.array([True]), np.array(["NORTHWEST"]))
    assert base[0] == 1800 + 240 * 40 + 320 * 5 + 480 and round(smoker[0] / base[0], 2) == 3.3
