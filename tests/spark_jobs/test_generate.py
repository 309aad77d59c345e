"""The generator: deterministic per interval, ids unique across intervals, clean rows referentially intact."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np

from medallion.config import ENTITIES, load_raw
from medallion.rules import rule_expressions
from medallion.schemas import landing_columns
from medallion.synth import DEFECTS, block_bodies, new_block, premium, smoker_probability

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


def test_ids_are_unique_across_intervals_and_later_batches_change_earlier_patients(run_job):
    a = Path(run_job("generate", *H5, "--patients", "300", "--defect-rate", "0")["landing_dir"])
    summary = run_job("generate", *H6, "--patients", "300", "--defect-rate", "0")
    b = Path(summary["landing_dir"])
    assert summary["history_batches"] == 1 and summary["changed_rows"]["patients"] > 0
    for entity, key in (("patients", "patient_id"), ("claims", "claim_id"), ("medical_events", "event_id")):
        ids_a = {r[key] for r in _read(a / f"{entity}.csv")}
        rows_b = _read(b / f"{entity}.csv")
        minted_b = {r[key] for r in rows_b if r[key][1:7] == "498822"}  # ids minted in hour 6 (hour index 498822)
        resent_b = {r[key] for r in rows_b} - minted_b
        assert len(ids_a) == len(_read(a / f"{entity}.csv")) and minted_b and not ids_a & minted_b
        assert resent_b <= ids_a  # new versions / status updates refer to what was sent before
    new_versions = [r for r in _read(b / "patients.csv") if r["patient_id"][1:7] == "498821"]
    assert any(r["timestamp"] >= "2026-11-27 06:00:00" for r in new_versions)
    assert any(r["timestamp"] < "2026-11-27 06:00:00" for r in new_versions)  # late, out of order


def test_manifest_lists_exactly_the_rows_that_differ_from_clean_output(run_job, settings):
    clean = Path(run_job("generate", *H5, "--patients", "800", "--defect-rate", "0")["landing_dir"])
    clean_text = {e: (clean / f"{e}.csv").read_text(encoding="utf-8").splitlines(keepends=True) for e in ENTITIES}
    dirty = run_job("generate", *H5, "--patients", "800", "--defect-rate", "0.02")
    manifest = json.loads(Path(dirty["manifest"]).read_text())
    assert str(Path(settings.location("landing"))) not in dirty["manifest"]  # ground truth is outside the landing
    assert len(manifest["defects"]) == dirty["defects"] > 12
    assert len({d["kind"] for d in manifest["defects"]}) >= 12
    for entity in ENTITIES:
        lines = (Path(dirty["landing_dir"]) / f"{entity}.csv").read_text(encoding="utf-8").splitlines(keepends=True)
        bad = {d["line"] for d in manifest["defects"] if d["file"] == f"{entity}.csv"}
        assert [l for i, l in enumerate(lines, start=1) if i not in bad] == clean_text[entity]
        for d in manifest["defects"]:
            if d["file"] == f"{entity}.csv" and d["key"]:
                assert lines[d["line"] - 1].startswith(d["key"] + ","), d


def _spec(**over):
    gen, quality = load_raw()["generator"], load_raw()["quality"]
    p = {
        "hour": 493000,
        "seed": 7,
        "interval_start": "2026-11-27T05:00:00+00:00",
        "interval_seconds": 3600,
        "block_size": 5000,
        "plans": gen["insurance_plans"],
        "status_mix": gen["claim_status_mix"],
        "event_types": quality["vocabularies"]["event_type"],
        "providers": gen["providers"],
        "diagnosis_codes": gen["diagnosis_codes"],
        "procedure_codes": gen["procedure_codes"],
        "claims_mean": 3.5,
        "events_mean": 5.5,
        "changes": gen["changes"],
        "defects": {"rate": 0.0},
        "columns": {e: landing_columns(e) for e in ENTITIES},
        "files": load_raw()["landing_files"],
        "history": [],
    }
    p.update(over)
    return p


def test_block_output_depends_only_on_its_inputs():
    one = block_bodies(0, 50, _spec())[0]
    assert one == block_bodies(0, 50, _spec())[0]
    assert one != block_bodies(0, 50, _spec(seed=8))[0]
    assert one != block_bodies(1, 100, _spec(block_size=50))[0]


def test_distributions_follow_the_spec_on_10k_patients():
    df = new_block(0, 10_000, _spec())["patients"]
    assert df.age.between(18, 85).all() and abs(df.age.mean() - 45) < 1.0 and 13 < df.age.std() < 16
    assert df.bmi.between(16, 50).all() and abs(df.bmi.mean() - 28) < 0.5 and 5.5 < df.bmi.std() < 6.5
    assert abs((df.sex == "MALE").mean() - 0.5) < 0.03
    assert set(df.region) == {"NORTHEAST", "NORTHWEST", "SOUTHEAST", "SOUTHWEST"}
    assert abs(df.children.mean() - 1.2) < 0.08
    assert (df.charges > 0).all()
    ratio = df.charges[df.smoker].mean() / df.charges[~df.smoker].mean()
    assert 3.0 <= ratio <= 4.0
    young, old = df.smoker[df.age.between(30, 40)].mean(), df.smoker[df.age >= 70].mean()
    assert young > old + 0.1  # smoking is age-correlated


def test_claims_and_events_are_realistic_and_never_in_the_future():
    block = new_block(0, 10_000, _spec())
    claims, events, pats = block["claims"], block["medical_events"], block["patients"]
    assert 3.3 < len(claims) / len(pats) < 3.7 and 5.3 < len(events) / len(pats) < 5.7
    assert (claims.claim_amount > 0).all() and claims.claim_amount.mean() > claims.claim_amount.median()  # skewed
    cov = pats.set_index("patient_id").coverage_start_date
    assert (claims.claim_date >= claims.patient_id.map(cov)).all()
    assert (claims.claim_date <= "2026-11-27").all() and (events.event_date <= "2026-11-27").all()
    top = claims.diagnosis_code.value_counts(normalize=True)
    assert top.index[0] == load_raw()["generator"]["diagnosis_codes"][0] and top.iloc[0] > 2 * top.iloc[-1]
    mix = claims.claim_status.value_counts(normalize=True)
    assert abs(mix["paid"] - 0.35) < 0.03 and abs(mix["denied"] - 0.10) < 0.02


def test_smoking_curve_and_premium_formula():
    assert smoker_probability(np.array([35.0]))[0] > smoker_probability(np.array([80.0]))[0]
    base = premium(np.array([40]), np.array([30.0]), np.array([1]), np.array([False]), np.array(["NORTHWEST"]))
    smoker = premium(np.array([40]), np.array([30.0]), np.array([1]), np.array([True]), np.array(["NORTHWEST"]))
    assert base[0] == 1800 + 240 * 40 + 320 * 5 + 480 and round(smoker[0] / base[0], 2) == 3.3


def test_every_defect_kind_names_a_rule_of_the_catalog():
    quality = load_raw()["quality"]
    rules = {e: rule_expressions(quality, e) for e in ENTITIES}
    assert len(DEFECTS) >= 12 and {e for e, _ in DEFECTS.values()} == set(ENTITIES)
    for kind, (entity, rule) in DEFECTS.items():
        assert rule in rules[entity] or rule in ("duplicate", "patient_exists"), kind


def test_generated_codes_come_from_silver_code_sets_and_names_are_never_test_patients():
    """The generator's codes are real (the committed CMS list; the procedure format) and its names never contain
    TEST, so a quarantined clean row is a false positive, not an accident of the name pool."""
    import re

    from medallion.codesets import file_path, read_codes
    from medallion.config import load_settings
    from medallion.synth import NOT_ICD10_CODES, name_pools

    settings = load_settings()
    gen, quality = load_raw()["generator"], load_raw()["quality"]
    known = set(read_codes(file_path(settings, "icd10cm")))
    assert set(gen["diagnosis_codes"]) <= known
    assert not set(NOT_ICD10_CODES) & known
    assert all(re.match(quality["patterns"]["icd10"], c) for c in NOT_ICD10_CODES)  # well formed, not real
    assert all(re.match(quality["patterns"]["procedure"], c) for c in gen["procedure_codes"])
    assert any(c[0].isalpha() for c in gen["procedure_codes"])  # HCPCS Level II among them
    first, last = name_pools(int(gen["seed"]))
    assert not [n for n in [*first, *last] if "TEST" in n.upper()]
