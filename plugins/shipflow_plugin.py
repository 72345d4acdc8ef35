"""Shipflow's Airflow plugin: what the scheduler, the dag-processor and the UI must load by name.

Airflow imports every top-level .py file in the plugins folder; the shipflow package beside it is
imported through PYTHONPATH (plugins/.airflowignore keeps the loader out of it). Keep this file
import-light: every Airflow component loads it at start-up, so nothing here may pull in boto3 or
great-expectations.

- timetables: ``DeploymentWindowTimetable`` (release trains). A DAG that uses a custom timetable is
  an import error unless a plugin registers its class, and the scheduler and the api-server find
  it here to read the serialized DAG back.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from shipflow.release.timetable import DeploymentWindowTimetable


class ShipflowPlugin(AirflowPlugin):
    name = "shipflow"
    timetables = [DeploymentWindowTimetable]
