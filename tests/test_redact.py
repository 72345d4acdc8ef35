"""``shipflow.redact``: secrets known to Airflow, under sensitive keys, or in the environment never go out."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
from airflow.sdk.log import mask_secret
from shipflow.redact import redact
mask_secret("registered-by-a-hook-9f3")
payload = {
    "message": "deploy failed: token tok-env-5c1d9e in the output, pw conn-pw-77aa1, registered-by-a-hook-9f3",
    "build": {"environment": [{"name": "DB", "value": "conn-pw-77aa1"}], "client_password": "x1"},
    "ids": ["d-ABC123", "extra-key-4b2f0e", "json-pw-31d0c9", "T000/B000/json-tok-8e2"],
    "reviewer": "alice",
    "version": "1.4.2",
}
print(json.dumps(redact(payload)))
"""


def test_secrets_from_the_masker_keys_and_environment_are_replaced(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(tmp_path),
        "DEPLOY_API_TOKEN": "tok-env-5c1d9e",
        "AIRFLOW_CONN_WAREHOUSE": "postgres://svc:conn-pw-77aa1@db:5432/w?api_key=extra-key-4b2f0e",
        "AIRFLOW_CONN_ALERTS": '{"conn_type": "slackwebhook", "password": "json-pw-31d0c9", '
        '"extra": {"webhook_token": "T000/B000/json-tok-8e2"}}',
    }
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    redacted = json.loads(out.stdout)
    text = json.dumps(redacted)
    for secret in ("tok-env-5c1d9e", "conn-pw-77aa1", "registered-by-a-hook-9f3", "extra-key-4b2f0e", "json-pw-31d0c9",
                   "json-tok-8e2"):
        assert secret not in text
    assert redacted["build"]["client_password"] == "***"
    # What is not secret stays as evidence.
    assert redacted["reviewer"] == "alice"
    assert redacted["version"] == "1.4.2"
    assert redacted["ids"][0] == "d-ABC123"
    assert redacted["message"].startswith("deploy failed: token *** in the output")


def test_redact_without_airflow_still_hides_keys_and_environment(monkeypatch):
    from shipflow import redact as module

    monkeypatch.setattr(module, "_airflow_redactors", lambda: [])
    monkeypatch.setenv("SLACK_WEBHOOK_SECRET", "hooks-secret-123")
    module.environment_secrets.cache_clear()
    try:
        assert module.redact({"url": "https://x/hooks-secret-123", "secret": "s"}) == {
            "url": "https://x/***",
            "secret": "***",
        }
        assert module.redact("short word ok") == "short word ok"
    finally:
        module.environment_secrets.cache_clear()
