"""The quality dashboard: one self-contained HTML page (inline CSS and SVG, no script, nothing fetched at view time).

Rewritten by every monitoring run from the operations tables; served in the Airflow UI by the medallion_dashboard
plugin. Charts: quality score over time with the target line, quarantined rows by rule, freshness per table vs its
SLA, rows per landing batch with the anomaly band, and distribution drift (PSI) over time. It shows aggregates only
(counts, scores, ages, table and rule names) — no row of patient data.

Where it is written: include/pipeline.yaml -> `dashboard.path.<target>` (placeholders from the environment's entry;
locally relative to the project root; on Databricks a Unity Catalog volume path, written through the volume's FUSE
mount).
"""

from __future__ import annotations

import html
import os
import tempfile
from datetime import datetime, timezone
from typing import Any

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
RED, GREY, AMBER = "#d62728", "#888888", "#e6a700"


# ------------------------------------------------------------------------------------------------ location
def dashboard_path(settings) -> str:
    """Where the page lives for this environment (`dashboard.path.<target>`, resolved like every configured path)."""
    return settings.resolve_path(settings.raw["dashboard"]["path"][settings.target])


def write(settings, data: dict) -> str:
    """Render and replace the page atomically (write a temporary file beside it, then rename)."""
    path = dashboard_path(settings)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".dashboard-", suffix=".html", dir=os.path.dirname(path))
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(render(data))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------ data
def _rows(df) -> list[dict]:
    return [r.asDict(recursive=True) for r in df.collect()]


def collect(m, current: dict[str, list[dict]], measured: datetime) -> dict:
    """Everything the page shows: this run's figures plus the history of scores and drift (Spark reads)."""
    from pyspark.sql import functions as F

    from .metrics import epoch

    n = int(m.cfg.get("history_runs", 48))
    history: list[dict] = []
    drift_history: list[dict] = []
    scores = m.read_if_exists(m.table("quality"))
    if scores is not None:
        runs = scores.groupBy("run_id").agg(F.max(epoch("measured_at")).alias("t")).orderBy(F.col("t").desc()).limit(n)
        history = _rows(scores.join(runs, "run_id").select("run_id", "t", "entity", "score", "total_score"))
        drift = m.read_if_exists(m.table("drift"))
        if drift is not None:
            drift_history = _rows(drift.join(runs, "run_id").select("run_id", "t", "column_name", "psi", "status"))
    return {
        "generated_at": measured.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "env": m.settings.env,
        "run_id": m.run_id,
        "target_score": float(m.settings.quality["target_score"]),
        "psi_warn": float(m.cfg["drift"]["psi_warn"]),
        "psi_alert": float(m.cfg["drift"]["psi_alert"]),
        "quality_history": history,
        "drift_history": drift_history,
        **current,
    }


# ------------------------------------------------------------------------------------------------ SVG charts
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def line_chart(
    chart_id: str,
    series: dict[str, list[tuple[float, float]]],
    hlines: list[tuple[float, str, str]],
    y_label: str,
    percent: bool = False,
    width: int = 640,
    height: int = 260,
) -> str:
    """Lines over time (x = epoch seconds); horizontal reference lines (value, label, colour)."""
    points = [p for s in series.values() for p in s]
    if not points:
        return _empty(chart_id)
    left, right, top, bottom = 58, 130, 14, 34
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + [h[0] for h in hlines]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if percent:
        y1 = max(y1, 1.0)
    pad = (y1 - y0) * 0.08 or (abs(y1) * 0.01 or 0.01)
    y0, y1 = y0 - pad, y1 + pad
    if x1 == x0:
        x0, x1 = x0 - 1800, x1 + 1800
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    def ylab(v):
        return f"{v * 100:.2f}%" if percent else f"{v:.2f}"

    parts = [
        f'<svg id="{chart_id}-svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{_esc(y_label)}">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ddd"/>',
    ]
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" text-anchor="end" class="tick">{ylab(v)}</text>'
        )
    for label_x in (x0, x1):
        t = datetime.fromtimestamp(label_x, tz=timezone.utc).strftime("%m-%d %H:%M")
        anchor = "start" if label_x == x0 else "end"
        parts.append(f'<text x="{sx(label_x):.1f}" y="{height - 12}" text-anchor="{anchor}" class="tick">{t}</text>')
    for value, label, colour in hlines:
        parts.append(
            f'<line class="ref" x1="{left}" x2="{left + pw}" y1="{sy(value):.1f}" y2="{sy(value):.1f}" '
            f'stroke="{colour}" stroke-dasharray="6 4" stroke-width="1.5"/>'
            f'<text x="{left + pw + 4}" y="{sy(value) + 4:.1f}" class="tick" fill="{colour}">'
            f"{_esc(label)}</text>"
        )
    for i, (name, pts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = sorted(pts)
        if len(pts) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(pts))
            parts.append(f'<path class="series" d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            parts.append(
                f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}">'
                f"<title>{_esc(name)}: {ylab(y)}</title></circle>"
            )
        ly = top + 14 + i * 16
        parts.append(
            f'<rect x="{width - right + 44}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{width - right + 58}" y="{ly}" class="legend">{_esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(chart_id: str, bars: list[dict], unit: str, width: int = 640) -> str:
    """Horizontal bars: label, value, colour, optional marker (e.g. an SLA) and a note."""
    if not bars:
        return _empty(chart_id)
    left, right, row = 230, 90, 22
    height = 20 + row * len(bars)
    top_value = max([b["value"] or 0 for b in bars] + [b.get("marker") or 0 for b in bars]) or 1
    pw = width - left - right
    parts = [f'<svg id="{chart_id}-svg" viewBox="0 0 {width} {height}" width="100%" role="img">']
    for i, b in enumerate(bars):
        y = 10 + i * row
        w = max(1.0, (b["value"] or 0) / top_value * pw) if b["value"] is not None else 0
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" class="label">{_esc(b["label"])}</text>')
        if b["value"] is not None:
            parts.append(
                f'<rect class="bar" x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 7}" '
                f'fill="{b["colour"]}"><title>{_esc(b["label"])}: {_fmt(b["value"], b.get("digits", 0))} '
                f"{unit}</title></rect>"
            )
        if b.get("marker") is not None:
            mx = left + b["marker"] / top_value * pw
            parts.append(
                f'<line class="marker" x1="{mx:.1f}" x2="{mx:.1f}" y1="{y}" y2="{y + row - 3}" '
                f'stroke="#333" stroke-width="2"><title>SLA {_fmt(b["marker"], 0)} {unit}</title></line>'
            )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}" class="value">{_esc(b.get("note") or "")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def batch_chart(chart_id: str, table: str, rows: list[dict], width: int = 310, height: int = 170) -> str:
    """Rows per landing batch (bars) with the band of the batches before each (a shaded range)."""
    left, right, top, bottom = 48, 8, 22, 26
    pw, ph = width - left - right, height - top - bottom
    top_value = max([r["rows"] for r in rows] + [r["band_high"] or 0 for r in rows]) or 1
    step = pw / max(len(rows), 1)
    parts = [
        f'<svg id="{chart_id}-svg" class="volume" viewBox="0 0 {width} {height}" width="100%" role="img">',
        f'<text x="{left}" y="14" class="legend">{_esc(table)}</text>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="tick">{top_value:,}</text>',
        f'<text x="{left - 4}" y="{top + ph}" text-anchor="end" class="tick">0</text>',
    ]

    def sy(v):
        return top + (1 - v / top_value) * ph

    for i, r in enumerate(rows):
        x = left + i * step
        if r["band_low"] is not None:
            parts.append(
                f'<rect class="band" x="{x:.1f}" y="{sy(r["band_high"]):.1f}" width="{step:.1f}" '
                f'height="{sy(r["band_low"]) - sy(r["band_high"]):.1f}" fill="#2ca02c" opacity="0.15"/>'
            )
        colour = RED if r["anomaly"] else PALETTE[0]
        parts.append(
            f'<rect class="bar" x="{x + step * 0.15:.1f}" y="{sy(r["rows"]):.1f}" width="{step * 0.7:.1f}" '
            f'height="{top + ph - sy(r["rows"]):.1f}" fill="{colour}"><title>batch {_esc(r["batch"])}: '
            f"{r['rows']:,} rows{' (outside the band)' if r['anomaly'] else ''}</title></rect>"
        )
    if rows:
        parts.append(
            f'<text x="{left}" y="{height - 8}" class="tick">{_esc(rows[0]["batch"])}</text>'
            f'<text x="{width - right}" y="{height - 8}" text-anchor="end" class="tick">'
            f"{_esc(rows[-1]['batch'])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _empty(chart_id: str) -> str:
    return f'<p class="empty" id="{chart_id}-svg">No data yet.</p>'


def _figure(chart_id: str, title: str, body: str, points: int, caption: str) -> str:
    return (
        f'<figure class="chart" id="{chart_id}" data-chart="{chart_id}" data-points="{points}">'
        f"<figcaption><h2>{_esc(title)}</h2><p>{_esc(caption)}</p></figcaption>{body}</figure>"
    )


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ------------------------------------------------------------------------------------------------ page
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#017cee;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;font-size:13px;opacity:.9}main{padding:16px 24px;display:grid;
grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
.tiles{display:flex;gap:12px;flex-wrap:wrap;padding:16px 24px 0}.tile{background:#fff;border-radius:8px;
padding:10px 16px;min-width:150px;box-shadow:0 1px 2px rgba(0,0,0,.08)}.tile b{display:block;font-size:22px}
.tile.bad b{color:#d62728}.tile.good b{color:#2ca02c}
figure.chart,section.card{background:#fff;margin:0;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
figcaption h2,section.card h2{font-size:16px;margin:0}figcaption p{font-size:12px;color:#555;margin:4px 0 8px}
.tick{font-size:10px;fill:#555}.legend{font-size:11px;fill:#222}.label{font-size:11px;fill:#222}.value{font-size:10px;fill:#444}
.volumes{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:8px}
table{border-collapse:collapse;font-size:12px;width:100%}th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left}
td.bad,.bad td:first-child{color:#d62728}.empty{color:#888;font-style:italic}
"""


def render(data: dict) -> str:
    target = data["target_score"]
    # quality over time: one line per entity and overall
    series: dict[str, list[tuple[float, float]]] = {}
    for r in sorted(data.get("quality_history", []), key=lambda r: r["t"]):
        value = r["score"] if r["score"] is not None else r["total_score"]
        if value is not None:
            series.setdefault(r["entity"], []).append((float(r["t"]), float(value)))
    order = ["overall", "patients", "claims", "medical_events"]
    series = {k: series[k] for k in sorted(series, key=lambda k: order.index(k) if k in order else 99)}
    quality_svg = line_chart("quality", series, [(target, f"target {target:.1%}", RED)], "quality score", percent=True)

    rules = sorted(data.get("quarantine_rules", []), key=lambda r: -r["total_rows"])
    quarantine_svg = hbar_chart(
        "quarantine",
        [
            {
                "label": f"{r['entity']} · {r['rule']}",
                "value": r["total_rows"],
                "colour": PALETTE[1],
                "note": f"{r['total_rows']:,} ({r['window_rows']:,} this window)",
            }
            for r in rules
        ],
        "rows",
    )

    fresh = data.get("freshness", [])
    freshness_svg = hbar_chart(
        "freshness",
        [
            {
                "label": r["table_name"],
                "value": r["age_minutes"],
                "marker": r["sla_minutes"],
                "digits": 1,
                "colour": RED if r["stale"] else (GREY if r["sla_minutes"] is None else PALETTE[2]),
                "note": (
                    "missing"
                    if not r["exists"]
                    else f"{_fmt(r['age_minutes'])} min"
                    + (f" / SLA {r['sla_minutes']:.0f}" if r["sla_minutes"] is not None else " (no SLA)")
                ),
            }
            for r in fresh
        ],
        "min",
    )

    by_table: dict[str, list[dict]] = {}
    for r in sorted(data.get("volumes", []), key=lambda r: (r["table_name"], r["batch"])):
        by_table.setdefault(r["table_name"], []).append(r)
    volume_svg = (
        (
            '<div class="volumes">'
            + "".join(batch_chart(f"volumes-{i}", t, rows) for i, (t, rows) in enumerate(by_table.items()))
            + "</div>"
        )
        if by_table
        else _empty("volumes")
    )

    drift_series: dict[str, list[tuple[float, float]]] = {}
    for r in sorted(data.get("drift_history", []), key=lambda r: r["t"]):
        if r["psi"] is not None:
            drift_series.setdefault(r["column_name"], []).append((float(r["t"]), float(r["psi"])))
    drift_series = dict(sorted(drift_series.items()))  # stable colours from run to run
    drift_svg = line_chart(
        "drift",
        drift_series,
        [(data["psi_warn"], f"warn {data['psi_warn']}", AMBER), (data["psi_alert"], f"alert {data['psi_alert']}", RED)],
        "PSI",
    )
    latest_drift = {r["column_name"]: r for r in data.get("drift", [])}
    drift_note = ", ".join(
        f"{c}: {r['status']}" + (f" (PSI {r['psi']:.3f})" if r["psi"] is not None else "")
        for c, r in latest_drift.items()
    )

    overall = next((r for r in data.get("quality", []) if r["entity"] == "overall"), None)
    score = None if overall is None else (overall["score"] if overall["score"] is not None else overall["total_score"])
    breaches = data.get("breaches", [])
    stale = [r for r in fresh if r["stale"]]
    recon = data.get("reconciliation", [])
    unbalanced = [r for r in recon if r["balanced"] is False]
    tiles = "".join(
        [
            f'<div class="tile {"bad" if score is not None and score < target else "good"}" id="tile-score">'
            f"quality score<b>{'–' if score is None else f'{score:.3%}'}</b>target {target:.1%}</div>",
            f'<div class="tile {"bad" if breaches else "good"}" id="tile-breaches">open breaches<b>{len(breaches)}</b>'
            f"{sum(1 for b in breaches if b.get('new'))} new</div>",
            f'<div class="tile {"bad" if stale else "good"}">stale tables<b>{len(stale)}</b>of {len(fresh)}</div>',
            f'<div class="tile {"bad" if unbalanced else "good"}">reconciliation<b>'
            f"{'mismatch' if unbalanced else 'balanced' if recon and all(r['balanced'] for r in recon) else '–'}</b>"
            f"landed = valid + quarantined + dup. + held</div>",
        ]
    )
    recon_table = _table(
        ["entity", "landed", "valid", "quarantined", "duplicates", "held", "backlog", "difference", "balanced"],
        [
            [
                r["entity"],
                r["landed"],
                *(
                    "–" if r[k] is None else r[k]
                    for k in ("valid", "quarantined", "duplicates", "held", "backlog", "difference")
                ),
                {True: "yes", False: "NO", None: "n/a (no run figures)"}[r["balanced"]],
            ]
            for r in recon
        ],
    )
    breach_table = (
        _table(
            ["kind", "where", "what", ""],
            [[b["kind"], b["subject"], b["detail"], "new" if b.get("new") else "ongoing"] for b in breaches],
            "breaches",
        )
        if breaches
        else '<p class="empty">None: every measure is within its threshold.</p>'
    )
    figures = [
        _figure(
            "quality",
            "Quality score over time",
            quality_svg,
            sum(len(s) for s in series.values()),
            "valid / (valid + quarantined) per monitoring run: rows silver processed since the previous run "
            "(all-time when none); dashed line: the target.",
        ),
        _figure(
            "quarantine",
            "Quarantined rows by rule",
            quarantine_svg,
            len(rules),
            "All-time rows in the quarantine tables per failed rule (a row failing two rules counts for both).",
        ),
        _figure(
            "freshness",
            "Freshness per table vs SLA",
            freshness_svg,
            sum(1 for r in fresh if r["exists"]),
            "Age of each table's newest data in minutes; the black tick is the SLA of its layer; red: stale.",
        ),
        _figure(
            "volumes",
            "Rows per landing batch",
            volume_svg,
            sum(len(v) for v in by_table.values()),
            "Bronze rows per hourly landing batch; shaded: the band of the batches before it; red: outside.",
        ),
        _figure(
            "drift",
            "Distribution drift (PSI) vs baseline",
            drift_svg,
            sum(len(s) for s in drift_series.values()),
            f"Population stability index of the last window vs the captured baseline. Now: {drift_note or '–'}",
        ),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Medallion quality dashboard ({_esc(data['env'])})</title><style>{CSS}</style></head><body>"
        f"<header><h1>Medallion pipeline — data quality</h1><p>environment {_esc(data['env'])} · monitoring run "
        f"{_esc(data['run_id'])} · generated {_esc(data['generated_at'])} · aggregates only, no patient data</p>"
        f'</header><div class="tiles">{tiles}</div><main>{"".join(figures)}'
        f'<section class="card" id="reconciliation"><h2>Reconciliation per entity</h2>{recon_table}</section>'
        f'<section class="card" id="breaches"><h2>Breaches in this run</h2>{breach_table}</section>'
        "</main></body></html>"
    )
