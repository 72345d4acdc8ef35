"""Secrets never leave Shipflow in the clear: ``redact(value)`` before an audit payload or an alert goes out.

Three nets, widest first:

1. Airflow's secrets masker: every secret this process has seen (a connection's password and
   sensitive extras once a hook fetched it, sensitive Variables, ``mask_secret`` calls). Task
   processes use the Task SDK's masker, the scheduler and api-server the core one; both are asked.
2. Key names Airflow deems sensitive (``password``, ``secret``, ``token``, ``api_key``, ...,
   plus ``[core] sensitive_var_conn_names``): their values are replaced whatever they hold.
3. Environment variables: the values of variables whose names are sensitive (``AWS_SECRET_ACCESS_KEY``,
   ``*_TOKEN``, ``*_PASSWORD``, ...) and the passwords inside ``AIRFLOW_CONN_*`` URIs, learnt once per
   process, so a secret passed to a worker only through its environment is hidden too.

Short values (5 characters or fewer, Airflow's ``min_length_masked_secret``) are not masked by value:
masking them would garble ordinary words. Their keys still hide them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

REPLACEMENT = "***"
MIN_SECRET_LENGTH = 6
# Names whose values are secrets, in environment variables and payload keys alike (Airflow's own list, plus
# the spellings environment variables use).
SENSITIVE_WORDS = (
    "access_key",
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "bearer",
    "connection_string",
    "credential",
    "dsn",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "service_key",
    "session_token",
    "token",
    "webhook_url",
)


def sensitive_name(name: str) -> bool:
    """Whether a key or variable called ``name`` holds a secret (``DB_PASSWORD``, ``apiKey``, ``x-auth-token``)."""
    lowered = name.lower().replace("-", "_")
    return any(word in lowered for word in SENSITIVE_WORDS)


def _conn_json_secrets(value: Any) -> Iterator[str]:
    """Secrets in a JSON-form connection: its ``password``, and sensitive keys of its ``extra``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and item and (key == "password" or sensitive_name(key)):
                yield item
            elif isinstance(item, dict | str) and key == "extra":
                yield from _conn_json_secrets(item if isinstance(item, dict) else _loads(item))
            elif isinstance(item, dict):
                yield from _conn_json_secrets(item)


def _loads(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


def _conn_uri_secrets(uri: str) -> Iterator[str]:
    if uri.lstrip().startswith("{"):  # Airflow also takes a connection as JSON
        yield from _conn_json_secrets(_loads(uri))
        return
    try:
        parts = urlsplit(uri)
    except ValueError:
        return
    if parts.password:
        yield unquote(parts.password)
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if value and sensitive_name(unquote(key)):
            yield unquote(value)


@cache
def environment_secrets() -> frozenset[str]:
    """Secret values found in this process's environment (learnt once)."""
    found: set[str] = set()
    for name, value in os.environ.items():
        if name.startswith("AIRFLOW_CONN_"):
            found.update(_conn_uri_secrets(value))
        elif value and sensitive_name(name) and not name.startswith("AIRFLOW__API_AUTH__JWT_SECRET_"):
            found.add(value)
    return frozenset(s for s in found if len(s) >= MIN_SECRET_LENGTH)


def _airflow_redactors() -> list[Any]:
    redactors = []
    for module in ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker"):
        try:
            imported = __import__(module, fromlist=["redact"])
        except ImportError:
            continue
        redactors.append(imported.redact)
    return redactors


def _scrub(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REPLACEMENT)
        return value
    if isinstance(value, dict):
        return {
            k: REPLACEMENT if isinstance(k, str) and sensitive_name(k) and v else _scrub(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, secrets) for v in value)
    return value


def redact(value: Any) -> Any:
    """``value`` (a str, or JSON-like dicts and lists) with every secret Shipflow can know of replaced by ``***``.

    Never raises: a masker that fails is skipped, and the key-name and environment nets still apply.
    """
    for airflow_redact in _airflow_redactors():
        try:
            value = airflow_redact(value)
        except Exception:  # a masker bug must not stop the audit trail or an alert
            continue
    return _scrub(value, environment_secrets())
