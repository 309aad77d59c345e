"""The quality dashboard inside the Airflow UI: a FastAPI app the api-server mounts (see medallion_dashboard_plugin).

GET /medallion/dashboard returns the page the last monitoring run wrote (include/pipeline.yaml -> dashboard.path),
for signed-in Airflow users only (the UI's session cookie or an API bearer token). Locally the page is a file;
on Databricks it lives in a Unity Catalog volume and is read with the Files API through the Databricks connection.
"""

from __future__ import annotations

import html

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from medallion_airflow import settings

URL_PREFIX = "/medallion"


def dashboard_location() -> tuple[str, str]:
    """(target, path) of the page for the environment the Airflow components run against."""
    from medallion.config import load_settings
    from medallion.dashboard import dashboard_path

    job_settings = load_settings(settings.pipeline_env(), str(settings.config_path()))
    return job_settings.target, dashboard_path(job_settings)


def read_dashboard() -> str | None:
    target, path = dashboard_location()
    if target == "local":
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
    from airflow.providers.databricks.hooks.databricks import DatabricksHook
    from databricks.sdk import WorkspaceClient

    conn = DatabricksHook(settings.databricks_settings()["connection_id"]).databricks_conn
    client = WorkspaceClient(
        host=conn.host if conn.host.startswith("http") else f"https://{conn.host}", token=conn.password
    )
    try:
        return client.files.download(path).contents.read().decode("utf-8")
    except Exception as exc:  # noqa: BLE001 - no page yet, or no access: say so on the page
        if "NOT_FOUND" in str(exc) or "404" in str(exc):
            return None
        raise


def _signed_in():
    """Airflow's own check: a valid JWT (the UI session cookie, or `Authorization: Bearer`)."""
    from airflow.api_fastapi.core_api.security import requires_authenticated

    return requires_authenticated()


SIGNED_IN = _signed_in()


app = FastAPI(title="Medallion quality dashboard", docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/dashboard", response_class=HTMLResponse, dependencies=[Depends(SIGNED_IN)])
def dashboard() -> HTMLResponse:
    page = read_dashboard()
    if page is None:
        _, path = dashboard_location()
        return HTMLResponse(
            f"<!DOCTYPE html><html><body><h1>No dashboard yet</h1><p>The monitoring DAG "
            f"(medallion_monitor) writes it to <code>{html.escape(path)}</code> on its next run."
            f"</p></body></html>",
            status_code=404,
        )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
