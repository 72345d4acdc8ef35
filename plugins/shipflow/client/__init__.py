"""The CI and ChatOps client of a running Shipflow: ``shipflow release``, ``shipflow approve|reject``.

It talks to Airflow's REST API v2 only (``shipflow.runtime.rest``), so a CI job needs this package
and ``requests``, not Airflow itself.

- ``release``: the logic: connection settings from the environment, the deterministic run id of a
  release, an idempotent trigger, following a run stage by stage, its exit code, answering approvals.
- ``commands``: the argparse subcommands and their one-line error messages (``add_parsers``).

See docs/ci.md for how a pipeline uses it.
"""
