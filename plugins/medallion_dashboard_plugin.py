"""Airflow 3 UI plugin: the medallion quality dashboard, served by the api-server and linked in the navigation.

- `fastapi_apps`: mounts medallion_airflow.dashboard_app at /medallion (GET /medallion/dashboard);
- `external_views`: a "Quality dashboard" entry under Browse that opens that page inside the Airflow UI.
"""

from airflow.plugins_manager import AirflowPlugin

from medallion_airflow.dashboard_app import URL_PREFIX, app


class MedallionDashboardPlugin(AirflowPlugin):
    name = "medallion_dashboard"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Medallion quality dashboard"}]
    external_views = [
        {
            "name": "Quality dashboard",
            "href": f"{URL_PREFIX}/dashboard",
            "destination": "nav",
            "category": "browse",
            "url_route": "medallion-quality-dashboard",
        }
    ]
