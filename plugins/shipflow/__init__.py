"""Shipflow: codified, audited release workflows for AWS on Apache Airflow.

The package lives in ``plugins/`` so that every Airflow component (scheduler, dag-processor,
triggerer, workers, api-server) can import it without an install step; ``pip install -e .``
additionally exposes the ``shipflow`` console script.
"""

__version__ = "0.1.0"
