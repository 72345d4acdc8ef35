"""Release DAGs generated from service specs.

- ``builder``: turns a ``ServiceSpec`` into the ``release__<service>`` DAG (never calls AWS);
- ``outcome``: the pure decision at the end of each environment: promote, roll back, or fail;
- ``tasks``: the release's own small operators (request check, outcome branch, rollback
  verification, manual fallback, failing the run with its reason);
- ``params``: the trigger form / REST conf schema.
"""
