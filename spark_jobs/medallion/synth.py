"""The synthetic data model: one seeded block of patients at a time, as pandas DataFrames (no Spark here).

A batch (one hourly interval) is a sequence of blocks of `block_size` patients. Each block is generated from its
own random generator seeded by (global seed, interval hour, first patient index, stream), so a block can be
re-generated at will — which is how later batches find earlier patients and claims without reading any table:

- `new_block`: new patients with their claims and medical events (the clean core of every batch);
- `change_block`: what happens to patients of earlier batches (new versions, late out-of-order versions,
  new claims and events, status updates of earlier claims), drawn from the batch history in the manifests;
- `defect_block`: defective rows *added* to the clean output (never a modified clean row), each listed in the
  ground-truth manifest with the rule expected to catch it, so detection precision and recall are measurable.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

REGIONS = ["NORTHEAST", "NORTHWEST", "SOUTHEAST", "SOUTHWEST"]
REGION_FACTOR = {"NORTHEAST": 1.05, "NORTHWEST": 1.00, "SOUTHEAST": 1.08, "SOUTHWEST": 0.97}
SMOKER_FACTOR = 3.3
NAME_POOL = 2000
NEXT_STATUS = {"submitted": (["approved", "denied"], [0.75, 0.25]), "approved": (["paid"], [1.0])}
STREAM_NEW, STREAM_CHANGE, STREAM_DEFECT = 0, 1, 2
TS_FORMAT = "%Y-%m-%d %H:%M:%S"

# kind -> (file, the rule expected to catch it; "duplicate" means counted and dropped as an exact duplicate)
DEFECTS = {
    "null_patient_id": ("patients", "valid_patient_id"),
    "short_patient_id": ("patients", "valid_patient_id"),
    "age_out_of_range": ("patients", "valid_age"),
    "bmi_out_of_range": ("patients", "valid_bmi"),
    "invalid_sex": ("patients", "valid_sex"),
    "invalid_region": ("patients", "valid_region"),
    "non_positive_charges": ("patients", "valid_charges"),
    "unparseable_timestamp": ("patients", "valid_record_timestamp"),
    "coverage_after_timestamp": ("patients", "valid_coverage_start"),
    "patient_extra_column": ("patients", "no_rescued_data"),
    "patient_exact_duplicate": ("patients", "duplicate"),
    "non_positive_claim_amount": ("claims", "valid_claim_amount"),
    "unknown_claim_status": ("claims", "valid_claim_status"),
    "future_claim_date": ("claims", "valid_claim_date"),
    "malformed_icd10": ("claims", "valid_diagnosis_code"),
    "malformed_cpt": ("claims", "valid_procedure_code"),
    "claim_orphan_patient": ("claims", "patient_exists"),
    "claim_missing_column": ("claims", "no_rescued_data"),
    "claim_exact_duplicate": ("claims", "duplicate"),
    "unparseable_event_date": ("medical_events", "valid_event_date"),
    "future_event_date": ("medical_events", "valid_event_date"),
    "unknown_event_type": ("medical_events", "valid_event_type"),
    "event_orphan_patient": ("medical_events", "patient_exists"),
    "event_exact_duplicate": ("medical_events", "duplicate"),
    # one kind per contract class (issue 17): non-finite numbers, implausible time, values outside a list, negative
    # counts, absurd amounts, codes that are well formed but do not exist, the product request's test patients
    "nan_bmi": ("patients", "finite_bmi"),
    "infinite_charges": ("patients", "finite_charges"),
    "absurd_charges": ("patients", "valid_charges"),
    "negative_children": ("patients", "valid_children"),
    "unknown_insurance_plan": ("patients", "valid_insurance_plan"),
    "future_record_timestamp": ("patients", "valid_record_timestamp"),
    "ancient_coverage_start": ("patients", "valid_coverage_start_date"),
    "test_patient": ("patients", "potential_test_patient"),
    "nan_claim_amount": ("claims", "finite_claim_amount"),
    "absurd_claim_amount": ("claims", "valid_claim_amount"),
    "ancient_claim_date": ("claims", "valid_claim_date"),
    "unknown_icd10": ("claims", "known_diagnosis_code"),
    "invalid_provider": ("medical_events", "valid_medical_provider"),
    "ancient_event_date": ("medical_events", "valid_event_date"),
}
# Well-formed ICD-10-CM codes that are not billable FY2026 codes (headings, or no such code); a test checks them
# against the committed CMS list.
NOT_ICD10_CODES = ["E11.99", "I10.1", "E11", "J45.90", "Z99.999"]
# Share of clean claims whose diagnosis code is sent without its dot, as an X12 837 claim transmits it
UNDOTTED_SHARE = 0.3
KEYS = {"patients": "patient_id", "claims": "claim_id", "medical_events": "event_id"}


def smoker_probability(age: np.ndarray) -> np.ndarray:
    """Age-dependent smoking probability: 8 % baseline, peaking near 30 % around age 35."""
    return 0.08 + 0.22 * np.exp(-(((np.asarray(age, dtype=float) - 35.0) / 18.0) ** 2))


def premium(age, bmi, children, smoker, region) -> np.ndarray:
    """Annual premium: 1800 + 240·age + 320·max(bmi−25, 0) + 480·children, × region factor, × 3.3 for smokers."""
    base = (
        1800.0
        + 240.0 * np.asarray(age)
        + 320.0 * np.maximum(np.asarray(bmi) - 25.0, 0.0)
        + 480.0 * np.asarray(children)
    )
    factor = np.array([REGION_FACTOR[r] for r in region]) * np.where(smoker, SMOKER_FACTOR, 1.0)
    return np.round(base * factor, 2)


_POOLS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def name_pools(seed: int) -> tuple[np.ndarray, np.ndarray]:
    if seed not in _POOLS:
        from faker import Faker

        fake = Faker("en_US")
        fake.seed_instance(seed)
        _POOLS[seed] = (
            np.array([fake.first_name() for _ in range(NAME_POOL)]),
            np.array([fake.last_name() for _ in range(NAME_POOL)]),
        )
    return _POOLS[seed]


def _rng(spec: dict, lo: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([spec["seed"], spec["hour"], lo, stream])


def _skewed(rng: np.random.Generator, values: list, size: int) -> np.ndarray:
    """Draw from a vocabulary with a Zipf-like frequency skew (the first values are the most common)."""
    weights = 1.0 / np.arange(1, len(values) + 1) ** 0.9
    return rng.choice(np.array(values, dtype=object), size=size, p=weights / weights.sum())


def _undotted(rng: np.random.Generator, codes: np.ndarray) -> np.ndarray:
    """Some codes as claims transmit them (`E119`); silver stores every code in its dotted form."""
    strip = rng.random(codes.size) < UNDOTTED_SHARE
    return np.where(strip, np.char.replace(codes.astype(str), ".", ""), codes.astype(str)).astype(object)


def _fmt_ts(ts) -> list[str]:
    return [t.strftime(TS_FORMAT) for t in ts]


def _children(
    rng, spec, patients: pd.DataFrame, mean_claims: float, mean_events: float, now: datetime, id_prefix: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Claims and events for `patients`, dated between coverage start and `now` (never in the future)."""
    n = len(patients)
    cov = pd.to_datetime(patients["coverage_start_date"]).dt.date.to_numpy()
    today = now.date()
    span = np.array([max((today - c).days, 0) for c in cov], dtype=int)
    pids = patients["patient_id"].to_numpy()

    def dated(mean: float):
        counts = rng.poisson(mean, n)
        owner = np.repeat(np.arange(n), counts)
        back = np.floor(rng.random(owner.size) * (span[owner] + 1)).astype(int)
        return owner, [(today - timedelta(days=int(b))).isoformat() for b in back]

    c_owner, c_dates = dated(mean_claims)
    m = c_owner.size
    status_names = list(spec["status_mix"])
    status_p = np.array([spec["status_mix"][s] for s in status_names], dtype=float)
    claims = pd.DataFrame(
        {
            "claim_id": [f"C{id_prefix}-{j:06d}" for j in range(m)],
            "patient_id": pids[c_owner],
            "claim_amount": np.round(rng.lognormal(np.log(650.0), 1.0, m) + 5.0, 2),
            "claim_date": c_dates,
            "diagnosis_code": _undotted(rng, _skewed(rng, spec["diagnosis_codes"], m)),
            "procedure_code": _skewed(rng, spec["procedure_codes"], m),
            "claim_status": rng.choice(status_names, size=m, p=status_p / status_p.sum()),
        }
    )
    e_owner, e_dates = dated(mean_events)
    k = e_owner.size
    events = pd.DataFrame(
        {
            "event_id": [f"E{id_prefix}-{j:06d}" for j in range(k)],
            "patient_id": pids[e_owner],
            "event_date": e_dates,
            "event_type": _skewed(rng, spec["event_types"], k),
            "medical_provider": rng.choice(spec["providers"], k),
        }
    )
    return claims, events


def new_block(lo: int, hi: int, spec: dict) -> dict[str, pd.DataFrame]:
    """New patients [lo, hi) of the batch, with their claims and medical events."""
    rng = _rng(spec, lo, STREAM_NEW)
    n = hi - lo
    start = datetime.fromisoformat(spec["interval_start"])
    ts = [start + timedelta(seconds=int(s)) for s in rng.integers(0, spec["interval_seconds"], size=n)]
    age = np.clip(np.rint(rng.normal(45, 15, n)), 18, 85).astype(int)
    sex = rng.choice(["MALE", "FEMALE"], size=n)
    region = rng.choice(REGIONS, size=n)
    bmi = np.round(np.clip(rng.normal(28, 6, n), 16, 50), 1)
    smoker = rng.random(n) < smoker_probability(age)
    children = rng.poisson(1.2, n)
    first_pool, last_pool = name_pools(spec["seed"])
    coverage_days = rng.integers(0, 5 * 365, size=n)
    patients = pd.DataFrame(
        {
            "patient_id": [f"P{spec['hour']}-{i:07d}" for i in range(lo, hi)],
            "first_name": rng.choice(first_pool, n),
            "last_name": rng.choice(last_pool, n),
            "age": age,
            "sex": sex,
            "region": region,
            "bmi": bmi,
            "smoker": smoker,
            "children": children,
            "charges": premium(age, bmi, children, smoker, region),
            "insurance_plan": rng.choice(spec["plans"], n),
            "coverage_start_date": [(t - timedelta(days=int(d))).date().isoformat() for t, d in zip(ts, coverage_days)],
            "timestamp": _fmt_ts(ts),
        }
    )
    claims, events = _children(
        rng,
        spec,
        patients,
        spec["claims_mean"],
        spec["events_mean"],
        max(ts, default=start),
        f"{spec['hour']}-{lo:07d}",
    )
    # claims and events are dated up to their patient's own record time
    return {"patients": patients, "claims": claims, "medical_events": events}


def _prior_spec(spec: dict, prior: dict) -> dict:
    out = dict(spec)
    out.update(
        {
            k: prior[k]
            for k in ("hour", "seed", "interval_start", "interval_seconds", "claims_mean", "events_mean", "block_size")
        }
    )
    return out


def change_block(b: int, lo: int, hi: int, spec: dict) -> dict[str, pd.DataFrame]:
    """Changes to patients of an earlier batch (picked deterministically from the batch history)."""
    empty = {
        "patients": pd.DataFrame(columns=spec["columns"]["patients"]),
        "claims": pd.DataFrame(columns=spec["columns"]["claims"]),
        "medical_events": pd.DataFrame(columns=spec["columns"]["medical_events"]),
    }
    history = [h for h in spec.get("history", []) if h["patients"] > 0]
    if not history:
        return empty
    ch = spec["changes"]
    rng = _rng(spec, lo, STREAM_CHANGE)
    prior = history[int(rng.integers(len(history)))]
    pspec = _prior_spec(spec, prior)
    pblocks = -(-prior["patients"] // prior["block_size"])
    pb = int(rng.integers(pblocks))
    plo, phi = pb * prior["block_size"], min((pb + 1) * prior["block_size"], prior["patients"])
    base = new_block(plo, phi, pspec)
    pat, claims = base["patients"], base["claims"]
    n = hi - lo
    start = datetime.fromisoformat(spec["interval_start"])
    order = rng.permutation(len(pat))
    n_upd = min(int(rng.binomial(n, ch["patient_update_share"])), len(pat))
    n_late = min(int(rng.binomial(n, ch["late_version_share"])), len(pat) - n_upd)
    n_ret = min(int(rng.binomial(n, ch["returning_patient_share"])), len(pat))

    # new versions, stamped inside this interval: bmi drifts, some quit or start smoking, move, change plan
    upd = pat.iloc[order[:n_upd]].copy()
    late = pat.iloc[order[n_upd : n_upd + n_late]].copy()
    for frame in (upd, late):
        k = len(frame)
        frame["bmi"] = np.round(np.clip(frame["bmi"].to_numpy() + rng.normal(0, 1.5, k), 16, 50), 1)
        flip = rng.random(k) < 0.1
        frame["smoker"] = np.where(flip, ~frame["smoker"].to_numpy(dtype=bool), frame["smoker"].to_numpy(dtype=bool))
        move = rng.random(k) < 0.1
        frame["region"] = np.where(move, rng.choice(REGIONS, k), frame["region"].to_numpy())
        switch = rng.random(k) < 0.3
        frame["insurance_plan"] = np.where(switch, rng.choice(spec["plans"], k), frame["insurance_plan"].to_numpy())
        more = rng.random(k) < 0.1
        frame["children"] = frame["children"].to_numpy() + more.astype(int)
        frame["charges"] = premium(frame["age"], frame["bmi"], frame["children"], frame["smoker"], frame["region"])
    upd["timestamp"] = _fmt_ts(
        start + timedelta(seconds=int(s)) for s in rng.integers(0, spec["interval_seconds"], size=len(upd))
    )
    # late versions: older than the version already sent (1-48 h before it), never before coverage start
    base_ts = pd.to_datetime(late["timestamp"]).dt.to_pydatetime()
    cover = pd.to_datetime(late["coverage_start_date"]).dt.to_pydatetime()
    late_ts = [
        max(t - timedelta(seconds=int(s)), c)
        for t, s, c in zip(base_ts, rng.integers(3600, 48 * 3600, size=len(late)), cover)
    ]
    late["timestamp"] = _fmt_ts(late_ts)
    late = late[late["timestamp"] < pd.Series(_fmt_ts(base_ts), index=late.index)]

    # returning patients: new claims and events dated up to now
    ret = pat.iloc[rng.permutation(len(pat))[:n_ret]]
    r_claims, r_events = _children(
        rng,
        spec,
        ret,
        spec["claims_mean"],
        spec["events_mean"],
        start + timedelta(seconds=spec["interval_seconds"] - 1),
        f"{spec['hour']}-{lo:07d}-R",
    )
    # status updates: earlier claims re-sent with their next status
    open_claims = claims[claims["claim_status"].isin(list(NEXT_STATUS))]
    n_status = min(int(rng.binomial(n, ch["claim_status_update_share"])), len(open_claims))
    upd_claims = open_claims.iloc[rng.permutation(len(open_claims))[:n_status]].copy()
    upd_claims["claim_status"] = [
        rng.choice(NEXT_STATUS[s][0], p=NEXT_STATUS[s][1]) for s in upd_claims["claim_status"]
    ]
    return {
        "patients": pd.concat([upd, late], ignore_index=True),
        "claims": pd.concat([r_claims, upd_claims], ignore_index=True),
        "medical_events": r_events,
    }


def defect_block(b: int, lo: int, clean: dict[str, pd.DataFrame], spec: dict) -> tuple[dict, list[dict]]:
    """Defective rows to add to a block (as CSV lines per file) and their ground-truth manifest entries."""
    rate = float(spec["defects"]["rate"])
    lines: dict[str, list[str]] = {"patients": [], "claims": [], "medical_events": []}
    manifest: list[dict] = []
    pats, claims, events = clean["patients"], clean["claims"], clean["medical_events"]
    if rate <= 0 or pats.empty:
        return lines, manifest
    rng = _rng(spec, lo, STREAM_DEFECT)
    prefix = f"{spec['hour']}-{lo:07d}"
    frames = {"patients": pats, "claims": claims, "medical_events": events}
    # each file gets defects in proportion to its own rows, so every entity's clean score is about 1 - rate
    plan = []
    for entity, src in frames.items():
        kinds = [k for k, (e, _) in DEFECTS.items() if e == entity]
        plan += [(entity, k) for k in rng.choice(kinds, size=int(rng.binomial(len(src), rate)))] if len(src) else []
    for j, (entity, kind) in enumerate(plan):
        rule = DEFECTS[kind][1]
        src = frames[entity]
        row = src.iloc[int(rng.integers(len(src)))].to_dict()
        key_col = KEYS[entity]
        if not kind.endswith("exact_duplicate"):
            row[key_col] = f"{key_col[0].upper()}{prefix}-D{j:05d}"  # a fresh key in the defect namespace
        extra = None
        if kind == "null_patient_id":
            row["patient_id"] = ""
        elif kind == "short_patient_id":
            row["patient_id"] = f"X{j:03d}"[-4:]
        elif kind == "age_out_of_range":
            row["age"] = int(rng.choice([0, 5, 17, 86, 120, 150]))
        elif kind == "bmi_out_of_range":
            row["bmi"] = float(rng.choice([3.2, 12.0, 15.9, 50.1, 75.0]))
        elif kind == "invalid_sex":
            row["sex"] = str(rng.choice(["UNKNOWN", "X", "N/A"]))
        elif kind == "invalid_region":
            row["region"] = str(rng.choice(["MIDWEST", "CENTRAL", "NORTH"]))
        elif kind == "non_positive_charges":
            row["charges"] = float(rng.choice([0.0, -120.5]))
        elif kind == "unparseable_timestamp":
            row["timestamp"] = str(rng.choice(["not-a-time", "2026-13-45 99:00:00", "yesterday"]))
        elif kind == "coverage_after_timestamp":
            row["coverage_start_date"] = (
                (datetime.strptime(row["timestamp"], TS_FORMAT) + timedelta(days=int(rng.integers(2, 400))))
                .date()
                .isoformat()
            )
        elif kind == "patient_extra_column":
            extra = "EXTRA"
        elif kind == "non_positive_claim_amount":
            row["claim_amount"] = float(rng.choice([0.0, -75.25]))
        elif kind == "unknown_claim_status":
            row["claim_status"] = str(rng.choice(["pending", "reversed", "unknown"]))
        elif kind == "future_claim_date":
            row["claim_date"] = f"{int(rng.integers(2090, 2100))}-06-15"
        elif kind == "malformed_icd10":
            row["diagnosis_code"] = str(rng.choice(["123.45", "E1", "E1.9", "U07.1X9Q1"]))
        elif kind == "malformed_cpt":
            row["procedure_code"] = str(rng.choice(["9921", "ABCDE", "992134"]))
        elif kind in ("claim_orphan_patient", "event_orphan_patient"):
            row["patient_id"] = f"P{prefix}-N{j:05d}"  # a patient that never exists
        elif kind == "claim_missing_column":
            row.pop("claim_status")
        elif kind == "unparseable_event_date":
            row["event_date"] = str(rng.choice(["31/02/2026", "2026-02-30", "soon"]))
        elif kind == "future_event_date":
            row["event_date"] = f"{int(rng.integers(2090, 2100))}-01-20"
        elif kind == "unknown_event_type":
            row["event_type"] = str(rng.choice(["", "SURGERY_X", "unknown"]))
        elif kind == "nan_bmi":
            row["bmi"] = "NaN"
        elif kind == "infinite_charges":
            row["charges"] = str(rng.choice(["Inf", "-Inf", "Infinity"]))
        elif kind == "absurd_charges":
            row["charges"] = float(rng.choice([2.5e6, 9.9e12]))
        elif kind == "negative_children":
            row["children"] = int(rng.choice([-1, -3]))
        elif kind == "unknown_insurance_plan":
            row["insurance_plan"] = str(rng.choice(["DIAMOND", "MEDIGAP-X", "NONE"]))
        elif kind == "future_record_timestamp":
            row["timestamp"] = f"{int(rng.integers(2050, 2100))}-03-01 12:00:00"
        elif kind == "ancient_coverage_start":
            row["coverage_start_date"] = f"{int(rng.integers(1900, 1950))}-01-01"
        elif kind == "test_patient":
            row[str(rng.choice(["first_name", "last_name"]))] = str(rng.choice(["Test", "TEST", "Testpatient"]))
        elif kind == "nan_claim_amount":
            row["claim_amount"] = "NaN"
        elif kind == "absurd_claim_amount":
            row["claim_amount"] = float(rng.choice([5.0e6, 1.0e9]))
        elif kind == "ancient_claim_date":
            row["claim_date"] = f"{int(rng.integers(1990, 2015))}-06-01"
        elif kind == "unknown_icd10":
            row["diagnosis_code"] = str(rng.choice(NOT_ICD10_CODES))
        elif kind == "invalid_provider":
            row["medical_provider"] = str(rng.choice(["x", "Clinic\tName", "N" * 300]))
        elif kind == "ancient_event_date":
            row["event_date"] = f"{int(rng.integers(1900, 1950))}-01-20"
        values = [row[c] for c in spec["columns"][entity] if c in row]
        if extra is not None:
            values.append(extra)
        lines[entity].append(_csv_line(values))
        manifest.append(
            {
                "file": spec["files"][entity],
                "entity": entity,
                "key": row.get(key_col, ""),
                "kind": kind,
                "expected_rule": rule,
                "block": b,
                "block_line": len(lines[entity]),
            }
        )
    return lines, manifest


def _csv_value(v):
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    return v


def _csv_line(values: list) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_csv_value(v) for v in values])
    return buf.getvalue()


def to_csv(df: pd.DataFrame, columns: list[str]) -> str:
    """RFC 4180 CSV body (no header) in the landing-file column order."""
    if df.empty:
        return ""
    out = df[columns].copy()
    if "smoker" in out:
        out["smoker"] = np.where(out["smoker"].astype(bool), "true", "false")
    buf = io.StringIO()
    out.to_csv(buf, index=False, header=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    return buf.getvalue()


def block_bodies(b: int, n_patients: int, spec: dict) -> tuple[dict[str, str], dict[str, int], list[dict]]:
    """Everything block `b` contributes to the batch: CSV bodies per file, clean row counts, manifest entries."""
    size = spec["block_size"]
    lo, hi = b * size, min((b + 1) * size, n_patients)
    new = new_block(lo, hi, spec)
    changes = change_block(b, lo, hi, spec)
    clean = {e: pd.concat([new[e], changes[e]], ignore_index=True) if not changes[e].empty else new[e] for e in new}
    defect_lines, manifest = defect_block(b, lo, new, spec)
    bodies, counts = {}, {}
    for entity, df in clean.items():
        bodies[entity] = to_csv(df, spec["columns"][entity]) + "".join(defect_lines[entity])
        counts[entity] = len(df)
    counts.update({f"changed_{e}": len(changes[e]) for e in changes})
    return bodies, counts, manifest
