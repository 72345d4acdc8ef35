"""Shipflow release DAGs: one ``release__<service>`` DAG per spec in include/services/.

Thin on purpose: the builder lives in the shipflow package (plugins/shipflow/release/builder.py)
and never calls AWS while parsing. A spec that does not validate shows up as this file's import
error, naming the spec file and field; every valid service keeps its DAG. (Airflow only parses
files that mention "dag" and "airflow": this docstring does.)
"""

from __future__ import annotations

from shipflow.release.builder import register_release_dags

register_release_dags(globals())
