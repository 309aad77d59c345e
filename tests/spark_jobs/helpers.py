"""What the job tests share: landing files written by hand (CSV with the landing header) and tables read back."""

from __future__ import annotations

from pathlib import Path

from medallion.lakehouse import Lakehouse
from medallion.schemas import landing_columns

H5 = ["--interval-start", "2026-11-27T05:00:00Z", "--interval-end", "2026-11-27T06:00:00Z"]


def header(entity: str) -> str:
    """The first line of an entity's landing file."""
    return ",".join(landing_columns(entity)) + "\n"


PATIENTS_HEADER, CLAIMS_HEADER, EVENTS_HEADER = (header(e) for e in ("patients", "claims", "medical_events"))


def write_landing(settings, tag: str, entity: str, text: str) -> None:
    """Land `text` as the entity's file of the batch folder `tag` (e.g. 2026-11-27T0500Z)."""
    folder = Path(settings.location("landing")) / tag
    folder.mkdir(parents=True, exist_ok=True)
    (folder / settings.landing_file(entity)).write_text(text, encoding="utf-8")


def table(spark, settings, layer: str, entity: str):
    """An entity's table of a layer, as a DataFrame."""
    return Lakehouse(spark, settings).read(settings.table_name(layer, entity))
