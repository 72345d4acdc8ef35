"""The example services' release DAGs (include/services/), as dags/release.py builds them.

The live test stack parses a copy of tests/airflow_dags/, so this file stands in for dags/release.py
there: same builder, same specs.
"""

from __future__ import annotations

from shipflow.release.builder import register_release_dags

register_release_dags(globals())
