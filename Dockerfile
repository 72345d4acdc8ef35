# Shipflow's Airflow image for docker-compose.yaml (and a starting point for any container platform).
# Not built on the machine Shipflow is developed on (no Docker engine there): see docs/distributed.md.
FROM apache/airflow:3.3.2-python3.11

# The lock is the constraint (README, "Developing"): the same versions as the native stack and CI.
COPY --chown=airflow:root requirements.txt /opt/shipflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/shipflow/requirements.txt

# Shipflow itself, laid out as in the repository: /opt/airflow/{plugins,dags,include}. The package is
# installed editable from plugins/ (the `shipflow` command), so the ./plugins that compose mounts
# over it is the code that runs; the builder finds include/ beside plugins/.
COPY --chown=airflow:root pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root include/ /opt/airflow/include/
# secrets/: the compose file's shipflow-secrets volume takes this folder's owner (airflow) when first used.
RUN pip install --no-cache-dir --no-deps -e /opt/airflow && mkdir -p /opt/airflow/secrets

ENV PYTHONPATH=/opt/airflow/plugins
