"""Pre-aggregated gold metrics: views over the star schema (no extra entity tables).

One place for their definitions. The gold job creates them after each run — persistent views in Unity Catalog
(readable by the analysts group, like the gold tables), temporary views of the job's session locally, where there
is no metastore. `register(lake)` does the same for any local session (a notebook, a test, the dashboard).

Rates are shares of all claims in the group (a claim is *approved* when its latest status is APPROVED or PAID).
"""

from __future__ import annotations

from . import governance
from .lakehouse import Lakehouse

VIEWS: dict[str, str] = {
    # claims per month: volume, amounts and approval / denial rates (status as of the latest update)
    "gold_claims_monthly": """
        SELECT claim_month,
               count(*)                                        AS claims,
               count(DISTINCT patient_id)                      AS patients,
               round(sum(claim_amount), 2)                     AS claimed_amount,
               round(sum(paid_amount), 2)                      AS paid_amount,
               sum(CAST(is_approved AS INT))                   AS approved_claims,
               sum(CAST(is_denied AS INT))                     AS denied_claims,
               round(avg(CAST(is_approved AS DOUBLE)), 4)      AS approval_rate,
               round(avg(CAST(is_denied AS DOUBLE)), 4)        AS denial_rate
        FROM {fact_claims}
        GROUP BY claim_month""",
    # claims per month by the plan and region the patient had *at the claim date* (point-in-time surrogate key)
    "gold_claims_by_plan_month": """
        SELECT f.claim_month, d.insurance_plan, d.region,
               count(*)                                        AS claims,
               round(sum(f.claim_amount), 2)                   AS claimed_amount,
               round(sum(f.paid_amount), 2)                    AS paid_amount,
               round(avg(CAST(f.is_approved AS DOUBLE)), 4)    AS approval_rate,
               round(avg(CAST(f.is_denied AS DOUBLE)), 4)      AS denial_rate
        FROM {fact_claims} f JOIN {dim_patients} d ON f.patient_key = d.patient_key
        GROUP BY f.claim_month, d.insurance_plan, d.region""",
    # medical events per month and type
    "gold_events_monthly": """
        SELECT event_month, event_type,
               count(*)                                        AS events,
               count(DISTINCT patient_id)                      AS patients
        FROM {fact_medical_events}
        GROUP BY event_month, event_type""",
    # one row per patient (current version): lifetime claim and event totals
    "gold_patient_metrics": """
        SELECT d.patient_key, d.patient_id, d.insurance_plan, d.region, d.age, d.smoker,
               coalesce(c.claims, 0)                           AS claims,
               coalesce(c.claimed_amount, 0.0)                 AS claimed_amount,
               coalesce(c.paid_amount, 0.0)                    AS paid_amount,
               coalesce(c.approved_claims, 0)                  AS approved_claims,
               coalesce(c.denied_claims, 0)                    AS denied_claims,
               c.first_claim_date, c.last_claim_date,
               coalesce(e.events, 0)                           AS events,
               e.last_event_date
        FROM {dim_patients} d
        LEFT JOIN (SELECT patient_id, count(*) AS claims, round(sum(claim_amount), 2) AS claimed_amount,
                          round(sum(paid_amount), 2) AS paid_amount,
                          sum(CAST(is_approved AS INT)) AS approved_claims,
                          sum(CAST(is_denied AS INT)) AS denied_claims,
                          min(claim_date) AS first_claim_date, max(claim_date) AS last_claim_date
                   FROM {fact_claims} GROUP BY patient_id) c ON c.patient_id = d.patient_id
        LEFT JOIN (SELECT patient_id, count(*) AS events, max(event_date) AS last_event_date
                   FROM {fact_medical_events} GROUP BY patient_id) e ON e.patient_id = d.patient_id
        WHERE d.is_current""",
}


def _sources(lake: Lakehouse) -> dict[str, str]:
    s = lake.settings
    return {
        "dim_patients": lake.ref(s.table_name("gold", "patients")),
        "fact_claims": lake.ref(s.table_name("gold", "claims")),
        "fact_medical_events": lake.ref(s.table_name("gold", "medical_events")),
    }


def statements(lake: Lakehouse) -> list[str]:
    """The SQL that (re)creates every view, and on Unity Catalog grants analysts SELECT on it."""
    sources = _sources(lake)
    out = []
    for name, body in VIEWS.items():
        out.append(lake.create_view_statement(name, body.format(**sources).strip()))
        out += governance.grant_statements(lake.settings, "gold.patients", lake.view_ref(name))  # gold's readers
    return out


def register(lake: Lakehouse) -> list[str]:
    """Create (or replace) the metric views; returns their names as SQL refers to them."""
    for statement in statements(lake):
        lake.spark.sql(statement)
    return [lake.view_ref(name) for name in VIEWS]
