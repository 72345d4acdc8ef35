"""Release DAGs of the policy test services (policy_services/ next to this file).

Small one-environment services, each made to show one runtime policy in the live test stack:
N-of-M approvals with separation of duties, an approval timeout, the superseded execution mode,
a freeze with its emergency override; tests may add specs to the folder at run time (a window that
opens in a minute). Built by the same factory as dags/release.py.

(Airflow parses a file only if it mentions both "airflow" and "dag": this docstring does.)
"""

from __future__ import annotations

from pathlib import Path

from shipflow.release.builder import register_release_dags

register_release_dags(globals(), Path(__file__).parent / "policy_services")
