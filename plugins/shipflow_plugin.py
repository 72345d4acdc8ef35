"""Shipflow's Airflow plugin: what the scheduler, the dag-processor, the workers and the UI must load by name.

Airflow imports every top-level .py file in the plugins folder; the shipflow package beside it is
imported through PYTHONPATH (plugins/.airflowignore keeps the loader out of it). Keep this file
import-light: every Airflow component loads it at start-up, so nothing here may pull in boto3 or
great-expectations.

- timetables: ``DeploymentWindowTimetable`` (release trains). A DAG that uses a custom timetable is
  an import error unless a plugin registers its class, and the scheduler and the api-server find
  it here to read the serialized DAG back.
- listeners: ``shipflow.audit.listener`` records each release step (worker), each release's request
  and end (scheduler) in the audit store.
- fastapi_root_middlewares: ``ManualInterventionMiddleware`` records a person marking, clearing or
  failing a release's tasks and runs through the UI or REST API (api-server).
- fastapi_apps + external_views: the "Audit evidence" tab of every run page (``shipflow.audit.web``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from shipflow.audit import listener as audit_listener
from shipflow.audit.middleware import ManualInterventionMiddleware
from shipflow.release.timetable import DeploymentWindowTimetable


def _audit_app() -> list[dict]:
    try:
        from shipflow.audit.web import app
    except ImportError:  # a worker image without the api-server's FastAPI: no view there, nothing lost
        return []
    return [{"app": app, "url_prefix": "/shipflow", "name": "Shipflow audit evidence"}]


class ShipflowPlugin(AirflowPlugin):
    name = "shipflow"
    timetables = [DeploymentWindowTimetable]
    listeners = [audit_listener]
    fastapi_root_middlewares = [
        {"middleware": ManualInterventionMiddleware, "args": [], "kwargs": {}, "name": "Shipflow manual interventions"}
    ]
    fastapi_apps = _audit_app()
    external_views = [
        {
            "name": "Audit evidence",
            "href": "shipflow/audit/runs/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "shipflow-audit",
        }
    ]
