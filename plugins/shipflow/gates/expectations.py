"""Data-quality gates with great-expectations: release inputs before a change, service metrics after it.

A gate validates rows against a *declarative suite*, a JSON file in ``include/expectations/``::

    {"name": "release_inputs",
     "expectations": [{"type": "expect_column_values_to_match_regex",
                       "kwargs": {"column": "commit", "regex": "^[0-9a-fA-F]{7,40}$"},
                       "severity": "critical",
                       "meta": {"failure": "commit {value} is not a git commit sha"}}]}

Each expectation is built with GX's strict path (``ExpectationConfiguration(...).to_domain_obj()``),
so an unknown type or kwarg is an error naming the file, the index and the name, never a check that
silently disappears. ``{"$PARAMETER": "name"}`` in kwargs takes a value from the gate's parameters at
run time (per-service thresholds). Shipflow adds two things GX has no words for:

- ``"for_each": "<parameter>"`` repeats an expectation once per item of a list-of-dicts parameter,
  replacing ``{field}`` in its strings (kwargs, ``$PARAMETER`` names, meta) with the item's fields;
- ``meta.failure`` / ``meta.subject``: the message a failure is reported with, in plain words, with
  ``{field}`` taken from the item, the parameters, the resolved kwargs and the result (``value``,
  ``examples``, ``observed``, ``unexpected_count``, ``element_count``, ``highest``, ``lowest``).

``import great_expectations`` costs ~5 s and ~235 MiB: it (and pandas) is imported inside
:func:`validate_rows`, never when this module is imported, so DAG files may import the operators.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import BaseOperator

from shipflow.aws.constants.cloudwatch import (
    BASIC_STATISTICS,
    DEFAULT_METRIC_PERIOD,
    DEFAULT_METRIC_STATISTIC,
    HIGH_RESOLUTION_PERIODS,
    METRIC_QUERY_LOOKAHEAD_SECONDS,
    PERCENTILE_STATISTIC,
)

#: Suites named by a relative path are read from here (the project's include/expectations/).
EXPECTATIONS_DIR = Path(__file__).resolve().parents[3] / "include" / "expectations"
RELEASE_INPUTS_SUITE = "release_inputs.json"
SERVICE_METRICS_SUITE = "service_metrics.json"

SEVERITIES = ("critical", "warning", "info")
MAX_EXAMPLES = 5
_ENTRY_KEYS = {"type", "kwargs", "severity", "meta", "for_each"}
_SUITE_KEYS = {"name", "description", "expectations"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# GX reads a $PARAMETER value as an expression; a plain name must look like this to be looked up.
_PARAMETER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_$]*$")
# Fields a failure template may use besides the item, the parameters and the resolved kwargs.
_RESULT_FIELDS = {"value", "examples", "observed", "unexpected_count", "element_count", "highest", "lowest", "subject"}

_gx_import_seconds: float | None = None


class SuiteError(AirflowFailException):
    """A suite file, or the parameters given to it, is wrong: fix the file or the parameters (not retried)."""


# -- formatting -----------------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """``value`` as JSON can hold it: numpy scalars unwrapped, NaN as None, times as ISO 8601."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [json_safe(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return json_safe(value.item())
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "dict") and callable(value.dict):  # GX row conditions (pydantic)
        return json_safe(value.dict())
    return str(value)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a ``Z``; a naive time is taken as UTC."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def words(value: Any) -> str:
    """A value as a message shows it: strings quoted, numbers short, None as 'missing'."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        # 0.4311, 25.3, 30, 1234567: short, never in exponent notation for the sizes metrics have
        return str(int(value)) if value.is_integer() else f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(words(v) for v in value)
    return str(value)


def fill(template: str, fields: Mapping[str, Any]) -> str:
    """Replace ``{name}`` for the names in ``fields``; anything else (regex braces) stays as written."""
    return _PLACEHOLDER.sub(lambda m: str(fields[m.group(1)]) if m.group(1) in fields else m.group(0), template)


def _substitute(value: Any, item: Mapping[str, Any]) -> Any:
    """``value`` with ``{field}`` replaced by the item's fields in every string, recursively."""
    if isinstance(value, str):
        return fill(value, {k: v for k, v in item.items() if isinstance(v, (str, int, float))})
    if isinstance(value, Mapping):
        return {k: _substitute(v, item) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, item) for v in value]
    return value


def _condition_words(condition: Any) -> str:
    """A GX row condition (dict form) as ``metric == 'ErrorRate' and statistic == 'Average'``."""
    if not isinstance(condition, Mapping):
        return str(condition)
    kind = condition.get("type")
    if kind in ("and", "or"):
        return f" {kind} ".join(_condition_words(c) for c in condition.get("conditions", []))
    if kind == "comparison":
        column = (condition.get("column") or {}).get("name")
        return f"{column} {condition.get('operator')} {words(condition.get('parameter'))}"
    if kind == "nullity":
        column = (condition.get("column") or {}).get("name")
        return f"{column} is {'' if condition.get('is_null') else 'not '}null"
    return condition.get("pass_through_filter") or json.dumps(json_safe(condition))


# -- the suite file -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SuiteEntry:
    """One expectation of a suite file, as written (placeholders not yet filled)."""

    index: int
    type: str
    kwargs: dict[str, Any]
    severity: str = "critical"
    meta: dict[str, Any] = field(default_factory=dict)
    for_each: str | None = None

    @property
    def where(self) -> str:
        return f"expectations[{self.index}] ({self.type})"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    entries: list[SuiteEntry]

    def error(self, message: str) -> SuiteError:
        return SuiteError(f"{self.path}: {message}")

    def parameter_names(self) -> set[str]:
        """The parameters this suite names outright (``$PARAMETER`` names with no ``{field}``, for_each lists)."""
        names = {e.for_each for e in self.entries if e.for_each}
        names |= {n for e in self.entries for n in _parameter_names(e.kwargs) if not _PLACEHOLDER.search(n)}
        return names


def suite_file(suite_path: str | Path) -> Path:
    """Where a suite lives: a relative path (or a bare name) is under ``include/expectations/``."""
    path = Path(suite_path)
    if not path.suffix:
        path = path.with_suffix(".json")
    return path if path.is_absolute() else EXPECTATIONS_DIR / path


def read_suite(suite_path: str | Path) -> Suite:
    """Read a suite file and check its shape (no GX needed; :func:`load_suite` also checks the expectations)."""
    path = suite_file(suite_path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"{path}: suite file not found; suites live in {EXPECTATIONS_DIR}") from None
    except json.JSONDecodeError as error:
        raise SuiteError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise SuiteError(f"{path}: a suite is a JSON object with 'name' and 'expectations'")
    unknown = sorted(set(document) - _SUITE_KEYS)
    if unknown:
        raise SuiteError(f"{path}: unknown key(s) {unknown}; a suite has {sorted(_SUITE_KEYS)}")
    name, expectations = document.get("name"), document.get("expectations")
    if not isinstance(name, str) or not name.strip():
        raise SuiteError(f"{path}: 'name' must be a non-empty string, got {name!r}")
    if not isinstance(expectations, list) or not expectations:
        raise SuiteError(f"{path}: 'expectations' must be a non-empty list")
    return Suite(name, path, [_entry(path, i, raw) for i, raw in enumerate(expectations)])


def _entry(path: Path, index: int, raw: Any) -> SuiteEntry:
    where = f"{path}: expectations[{index}]"
    if not isinstance(raw, dict):
        raise SuiteError(f"{where} must be an object with 'type' and 'kwargs', got {raw!r}")
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise SuiteError(f"{where} has unknown key(s) {unknown}; allowed: {', '.join(sorted(_ENTRY_KEYS))}")
    kind, kwargs = raw.get("type"), raw.get("kwargs", {})
    if not isinstance(kind, str) or not kind:
        raise SuiteError(f"{where} needs 'type', the expectation's name (e.g. expect_column_values_to_not_be_null)")
    if not isinstance(kwargs, dict):
        raise SuiteError(f"{where} ({kind}): 'kwargs' must be an object, got {kwargs!r}")
    severity = raw.get("severity", "critical")
    if severity not in SEVERITIES:
        raise SuiteError(f"{where} ({kind}): severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    meta = raw.get("meta", {})
    if not isinstance(meta, dict):
        raise SuiteError(f"{where} ({kind}): 'meta' must be an object, got {meta!r}")
    for key in ("failure", "subject"):
        if key in meta and not isinstance(meta[key], str):
            raise SuiteError(f"{where} ({kind}): meta.{key} must be a string template, got {meta[key]!r}")
    for_each = raw.get("for_each")
    if for_each is not None and (not isinstance(for_each, str) or not _PARAMETER_NAME.match(for_each)):
        raise SuiteError(f"{where} ({kind}): for_each must name a parameter, got {for_each!r}")
    return SuiteEntry(index, kind, kwargs, severity, meta, for_each)


def _parameter_names(kwargs: Mapping[str, Any]) -> list[str]:
    return [v["$PARAMETER"] for v in kwargs.values() if isinstance(v, Mapping) and "$PARAMETER" in v]


def _strict(suite: Suite, entry: SuiteEntry, kwargs: dict[str, Any]) -> Any:
    """GX's strict path: an unknown type or kwarg, or a wrong value, raises (naming file, index, name)."""
    import_gx()
    from great_expectations.exceptions import ExpectationNotFoundError, InvalidExpectationConfigurationError
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    try:
        config = ExpectationConfiguration(type=entry.type, kwargs=kwargs, severity=entry.severity, meta=entry.meta)
        return config.to_domain_obj()
    except ExpectationNotFoundError:
        import difflib

        close = difflib.get_close_matches(entry.type, list_registered_expectation_implementations(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else " (see the GX expectation gallery for the names)"
        raise suite.error(f"expectations[{entry.index}]: unknown expectation type {entry.type!r}{hint}") from None
    except InvalidExpectationConfigurationError as error:
        raise suite.error(f"{entry.where}: {error}") from None
    except ValueError as error:  # pydantic's ValidationError
        raise suite.error(f"{entry.where}: {_pydantic_words(error)}") from None


def _pydantic_words(error: Any) -> str:
    errors = error.errors() if hasattr(error, "errors") else []
    unknown = [str(e["loc"][0]) for e in errors if e.get("type") == "value_error.extra"]
    missing = [str(e["loc"][0]) for e in errors if e.get("type") == "value_error.missing" and len(e["loc"]) == 1]
    parts = [f"unknown kwarg {name!r}" for name in unknown] + [f"missing kwarg {name!r}" for name in missing]
    others: dict[str, list[str]] = {}
    for e in errors:
        if e.get("type") in ("value_error.extra", "value_error.missing"):
            continue
        loc = ".".join(str(p) for p in e["loc"]) or "kwargs"
        others.setdefault("kwargs" if loc == "__root__" else f"kwarg {loc!r}", []).append(e["msg"])
    parts += [f"{where}: {' or '.join(dict.fromkeys(messages))}" for where, messages in others.items()]
    return "; ".join(parts) or str(error)


def load_suite(suite_path: str | Path) -> Suite:
    """Read a suite and build every expectation with GX's strict path (imports great_expectations)."""
    suite = read_suite(suite_path)
    for entry in suite.entries:
        _strict(suite, entry, entry.kwargs)
    return suite


# -- great-expectations, imported late ---------------------------------------------------------------
def import_gx() -> Any:
    """``great_expectations``, imported on first use with its logger quieted (216 INFO lines otherwise)."""
    global _gx_import_seconds
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    started = time.perf_counter()
    import great_expectations as gx

    if _gx_import_seconds is None:
        _gx_import_seconds = round(time.perf_counter() - started, 3)
    return gx


def _ephemeral_context(gx: Any) -> Any:
    """An in-memory GX context: no files, no analytics, no progress bars in task logs."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


# -- the result ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateResult:
    """What a gate checked and found (JSON-safe through :meth:`as_dict`; the audit trail keeps it)."""

    suite: str
    suite_path: str
    success: bool
    rows: int
    expectations: list[dict[str, Any]]
    counts: dict[str, int]
    gx_version: str
    timings: dict[str, float | None]

    def failures(self, severity: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.expectations if not e["success"] and severity in (None, e["severity"])]

    def failure_lines(self, severity: str | None = "critical") -> list[str]:
        """Each failed expectation's message, once each, in suite order."""
        return list(dict.fromkeys(e["message"] for e in self.failures(severity)))

    def as_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


class GateFailed(AirflowFailException):
    """A gate found a critical expectation not met; ``result`` is the evidence, ``evidence`` what the task returns.

    Final (an AirflowFailException, never retried): the same evidence gives the same answer, and the
    release's rollback path takes over at once."""

    def __init__(self, result: GateResult, evidence: dict[str, Any] | None = None, what: str = "") -> None:
        lines = result.failure_lines("critical")
        warnings = len(result.failures("warning"))
        head = f"Gate {result.suite} failed{f' for {what}' if what else ''}: {len(lines)} check(s) not met"
        if warnings:
            head += f" (and {warnings} warning(s))"
        super().__init__("\n".join([head + ":", *(f"- {line}" for line in lines)]))
        self.result = result
        self.evidence = evidence or result.as_dict()


def _expand(suite: Suite, parameters: Mapping[str, Any]) -> list[tuple[SuiteEntry, dict[str, Any], dict[str, Any]]]:
    """Each entry once, or once per item of its ``for_each`` parameter: (entry, kwargs, item)."""
    expanded = []
    for entry in suite.entries:
        if entry.for_each is None:
            expanded.append((entry, entry.kwargs, {}))
            continue
        items = parameters.get(entry.for_each)
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise suite.error(
                f"{entry.where} repeats for_each {entry.for_each!r}: pass that parameter as a list of "
                f"objects, got {items!r}"
            )
        expanded += [(entry, _substitute(entry.kwargs, item), dict(item)) for item in items]
    return expanded


def _check_parameters(suite: Suite, expanded: list, parameters: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
    """Every $PARAMETER has a value, and every parameter given is used (a typo must not pass unseen)."""
    used: set[str] = set()
    for entry, kwargs, item in expanded:
        for name in _parameter_names(kwargs):
            if not _PARAMETER_NAME.match(name):
                raise suite.error(f"{entry.where}: $PARAMETER {name!r} must be a name (letters, digits, _)")
            if name not in parameters:
                raise suite.error(f"{entry.where} needs parameter {name!r}; pass it in the gate's parameters")
            used.add(name)
        if entry.for_each:
            used.add(entry.for_each)
        for template in (entry.meta.get("failure", ""), entry.meta.get("subject", "")):
            names = set(_PLACEHOLDER.findall(template))
            used |= names & set(parameters)
            unknown = names - set(parameters) - set(fields) - set(item) - set(kwargs) - _RESULT_FIELDS - {"column"}
            if unknown:
                raise suite.error(
                    f"{entry.where}: meta template names unknown field(s) {sorted(unknown)}; use a parameter, a "
                    f"field ({', '.join(sorted(fields)) or 'none given'}), a kwarg or one of {sorted(_RESULT_FIELDS)}"
                )
    unused = sorted(set(parameters) - used)
    if unused:
        raise suite.error(f"parameter(s) {unused} are not used by suite {suite.name!r}; check for a typo")


def validate_rows(
    rows: Sequence[Mapping[str, Any]],
    suite_path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    columns: Sequence[str] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> GateResult:
    """Validate ``rows`` (one dict per row) against a suite with an ephemeral GX context.

    :param rows: the data, e.g. one release's inputs, or one row per metric datapoint.
    :param suite_path: the suite file (a relative path or bare name is under include/expectations/).
    :param parameters: values for ``$PARAMETER`` references and ``for_each`` lists; every one must be used.
    :param columns: the table's columns (so that no rows still has them); default: the rows' keys.
    :param fields: extra words for ``meta`` templates only (e.g. the window read); not sent to GX.
    :return: success is False only when a *critical* expectation failed.
    :raises SuiteError: the suite file or the parameters are wrong (names the file, index and name).
    """
    parameters, fields = dict(parameters or {}), dict(fields or {})
    suite = read_suite(suite_path)
    expanded = _expand(suite, parameters)
    _check_parameters(suite, expanded, parameters, fields)

    gx = import_gx()
    import pandas as pd

    started = time.perf_counter()
    context = _ephemeral_context(gx)  # first: a suite needs a current context to exist in
    gx_suite = gx.ExpectationSuite(name=suite.name)
    for entry, kwargs, _ in expanded:
        gx_suite.add_expectation(_strict(suite, entry, kwargs))
    gx_suite = context.suites.add(gx_suite)
    names = list(columns) if columns is not None else list(dict.fromkeys(k for row in rows for k in row))
    frame = pd.DataFrame([{c: row.get(c) for c in names} for row in rows], columns=names)
    batch = (
        context.data_sources.add_pandas("shipflow")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    validation = batch.validate(
        gx_suite, expectation_parameters=parameters, result_format={"result_format": "COMPLETE"}
    )
    validate_s = round(time.perf_counter() - started, 3)

    by_id = {e.id: i for i, e in enumerate(gx_suite.expectations)}
    outcomes: list[dict[str, Any] | None] = [None] * len(expanded)
    for result in validation.results:
        i = by_id[result.expectation_config.id]
        entry, _, item = expanded[i]
        outcomes[i] = _outcome(entry, item, result, {**parameters, **fields}, single_row=len(rows) == 1)
    expectations = [o for o in outcomes if o is not None]
    failed = [e for e in expectations if not e["success"]]
    counts = {
        "evaluated": len(expectations),
        "passed": len(expectations) - len(failed),
        "failed": len(failed),
        **{f"failed_{s}": sum(1 for e in failed if e["severity"] == s) for s in SEVERITIES},
    }
    return GateResult(
        suite=suite.name,
        suite_path=str(suite.path),
        success=counts["failed_critical"] == 0,
        rows=len(rows),
        expectations=expectations,
        counts=counts,
        gx_version=gx.__version__,
        timings={"gx_import_s": _gx_import_seconds, "validate_s": validate_s},
    )


def _outcome(
    entry: SuiteEntry, item: Mapping[str, Any], result: Any, parameters: Mapping[str, Any], single_row: bool
) -> dict:
    """One expectation's result as evidence, with its message in plain words when it failed.

    A one-row table (a release's inputs) is described by its value ("version '1.2' does not match
    ..."), a longer one by counts ("2 of 3 values above the maximum 5 (highest 40)").
    """
    config = result.expectation_config
    kwargs = {k: json_safe(v) for k, v in config.kwargs.items() if k != "batch_id"}
    details = json_safe(result.result or {})
    unexpected = details.get("unexpected_list", details.get("partial_unexpected_list", []))
    numbers = [v for v in unexpected if isinstance(v, (int, float)) and not isinstance(v, bool)]
    observed = details.get("observed_value")
    if observed is None and "element_count" in details:
        observed = {k: details.get(k) for k in ("unexpected_count", "element_count")}
        if numbers:
            observed.update(highest_unexpected=max(numbers), lowest_unexpected=min(numbers))
    exception = result.exception_info or {}
    error = exception.get("exception_message") if exception.get("raised_exception") else None
    outcome = {
        "expectation": f"expectations[{entry.index}]",
        "type": entry.type,
        "column": kwargs.get("column"),
        "where": _condition_words(kwargs["row_condition"]) if kwargs.get("row_condition") else None,
        "for": dict(item) or None,
        "kwargs": kwargs,
        "severity": json_safe(config.severity) or entry.severity,
        "success": bool(result.success),
        "observed": observed,
        "unexpected_count": details.get("unexpected_count"),
        "element_count": details.get("element_count"),
        "unexpected_examples": unexpected[:MAX_EXAMPLES],
        "error": error,
        "message": None,
    }
    if not outcome["success"]:
        outcome["message"] = _message(entry, item, kwargs, outcome, numbers, parameters, single_row)
    return outcome


def _message(
    entry: SuiteEntry,
    item: Mapping[str, Any],
    kwargs: Mapping[str, Any],
    outcome: Mapping[str, Any],
    numbers: list[float],
    parameters: Mapping[str, Any],
    single_row: bool,
) -> str:
    examples = outcome["unexpected_examples"]
    fields: dict[str, Any] = {k: words(v) if not isinstance(v, str) else v for k, v in kwargs.items()}
    fields |= {k: words(v) if not isinstance(v, str) else v for k, v in parameters.items() if not isinstance(v, list)}
    fields |= {k: v for k, v in item.items()}
    fields |= {
        "value": words(examples[0]) if examples else "missing",
        "examples": words(examples),
        "observed": words(outcome["observed"]) if not isinstance(outcome["observed"], dict) else "",
        "unexpected_count": outcome["unexpected_count"],
        "element_count": outcome["element_count"],
        "highest": words(max(numbers)) if numbers else "",
        "lowest": words(min(numbers)) if numbers else "",
    }
    subject = fill(entry.meta["subject"], fields) if "subject" in entry.meta else _subject(kwargs)
    fields["subject"] = subject
    if outcome["error"]:
        return f"{subject}: could not be checked: {outcome['error']}"
    if "failure" in entry.meta:
        return fill(entry.meta["failure"], fields)
    return f"{subject}{_detail(entry.type, kwargs, outcome, numbers, single_row)}"


def _subject(kwargs: Mapping[str, Any]) -> str:
    subject = kwargs.get("column") or "the table"
    condition = kwargs.get("row_condition")
    return f"{subject} (where {_condition_words(condition)})" if condition else str(subject)


def _detail(
    kind: str, kwargs: Mapping[str, Any], outcome: Mapping[str, Any], numbers: list[float], single: bool
) -> str:
    """The plain-words rest of a failure message after its subject (``version`` + `` '1.2' does not…``)."""
    n, total, examples = outcome["unexpected_count"], outcome["element_count"], outcome["unexpected_examples"]
    eg = f" (e.g. {words(examples)})" if examples else ""
    if kind == "expect_column_values_to_not_be_null":
        return " is missing" if single else f": missing in {n} of {total} rows"
    if kind == "expect_column_values_to_match_regex":
        regex = kwargs.get("regex")
        return (
            f" {words(examples[0])} does not match {regex}"
            if single
            else f": {n} of {total} values do not match {regex}{eg}"
        )
    if kind in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
        negation = "not " if kind.endswith("_be_in_set") else ""
        values = words(kwargs.get("value_set") or [])
        if single:
            return f" {words(examples[0])} is {negation}one of {values}"
        return f": {n} of {total} values are {negation}one of {values}{eg}"
    if kind == "expect_column_values_to_be_between":
        return _between(kwargs, n, total, numbers, eg, single)
    observed = outcome["observed"]
    expected = kind.removeprefix("expect_").replace("_", " ")
    bounds = {k: v for k, v in kwargs.items() if k not in ("column", "row_condition", "condition_parser")}
    if kind == "expect_table_row_count_to_be_between":
        return f": {observed} rows, expected {_range(bounds.get('min_value'), bounds.get('max_value'))}"
    if total is not None and n is not None:
        return f": {n} of {total} values fail '{expected}' {json.dumps(bounds)}{eg}"
    return f": observed {words(observed)}, expected '{expected}' {json.dumps(bounds)}"


def _range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"between {words(low)} and {words(high)}"
    return f"at least {words(low)}" if low is not None else f"at most {words(high)}"


def _between(kwargs: Mapping[str, Any], n: int, total: int, numbers: list[float], eg: str, single: bool) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    strict_low, strict_high = kwargs.get("strict_min"), kwargs.get("strict_max")
    above = [v for v in numbers if high is not None and (v >= high if strict_high else v > high)]
    below = [v for v in numbers if low is not None and (v <= low if strict_low else v < low)]
    max_words = f"{'at or ' if strict_high else ''}above the maximum {words(high)}"
    min_words = f"{'at or ' if strict_low else ''}below the minimum {words(low)}"
    if single and (above or below):
        return f" {words(numbers[0])} is {max_words if above else min_words}"
    parts = []
    if above:
        parts.append(f"{len(above)} of {total} values {max_words} (highest {words(max(above))})")
    if below:
        parts.append(f"{len(below)} of {total} values {min_words} (lowest {words(min(below))})")
    if n > len(above) + len(below):
        parts.append(f"{n - len(above) - len(below)} of {total} values are not numbers {_range(low, high)}{eg}")
    return ": " + "; ".join(parts)


# -- operators ------------------------------------------------------------------------------------
def _blank(value: Any) -> bool:
    # A Jinja template over a missing value renders "" (or "None" without native rendering).
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


def _check_suite_exists(task_id: str, suite_path: str | Path) -> None:
    path = suite_file(suite_path)
    if not path.is_file():
        raise ValueError(f"{task_id}: suite_path {str(suite_path)!r} not found (looked for {path})")


class ReleaseInputsGateOperator(BaseOperator):
    """Check a release's inputs before anything changes: version, commit, change reference, artifact.

    Validates one row against the ``release_inputs`` suite (``include/expectations/release_inputs.json``):
    ``version`` is a semantic version, ``commit`` a 7-40 digit hex sha, ``change_reference`` matches
    ``parameters["change_reference_pattern"]`` (default: a ticket key such as ``OPS-123`` or an http(s)
    URL), the artifact exists and is not empty. Fails with :class:`GateFailed` listing every check not
    met, in plain words.

    .. seealso::
        - :external+boto3:py:meth:`S3.Client.head_object`

    :param service: the service being released. (templated)
    :param environment: the environment it goes to. (templated)
    :param version: the release version, ``MAJOR.MINOR.PATCH[-pre][+build]``. (templated)
    :param commit: the git commit the artifact was built from. (templated)
    :param change_reference: the change ticket or URL that authorizes the release. (templated)
    :param artifact_bucket: S3 bucket of the artifact. (templated)
    :param artifact_key: S3 key of the artifact. (templated)
    :param artifact_size: size in bytes, when ``aws_conn_id`` is not given. (templated)
    :param artifact_etag: ETag, when ``aws_conn_id`` is not given. (templated)
    :param artifact_last_modified: last-modified time, when ``aws_conn_id`` is not given. (templated)
    :param aws_conn_id: read size, ETag and last-modified from S3 ``HeadObject`` with this connection;
        a missing object fails the gate naming its ``s3://`` URL.
    :param region_name: AWS region for S3 (default: the connection's).
    :param parameters: suite parameters over the defaults (``change_reference_pattern``). (templated)
    :param suite_path: the suite (default ``release_inputs.json`` under include/expectations/).
    :return: the :class:`GateResult` as a dict, plus ``inputs`` (the row checked).
    """

    template_fields: Sequence[str] = (
        "service",
        "environment",
        "version",
        "commit",
        "change_reference",
        "artifact_bucket",
        "artifact_key",
        "artifact_size",
        "artifact_etag",
        "artifact_last_modified",
        "parameters",
    )
    template_fields_renderers = {"parameters": "json"}
    ui_color = "#e8f4d9"

    #: Suite parameters unless ``parameters`` says otherwise.
    DEFAULT_PARAMETERS: Mapping[str, Any] = {
        "change_reference_pattern": r"^(?:[A-Z][A-Z0-9_]*-[0-9]+|https?://\S+)$",
    }
    ARTIFACT_FIELDS = ("artifact_size", "artifact_etag", "artifact_last_modified")

    def __init__(
        self,
        *,
        service: str,
        environment: str,
        version: str,
        commit: str,
        change_reference: str,
        artifact_bucket: str,
        artifact_key: str,
        artifact_size: int | str | None = None,
        artifact_etag: str | None = None,
        artifact_last_modified: datetime | str | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        suite_path: str | Path = RELEASE_INPUTS_SUITE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.environment = environment
        self.version = version
        self.commit = commit
        self.change_reference = change_reference
        self.artifact_bucket = artifact_bucket
        self.artifact_key = artifact_key
        self.artifact_size = artifact_size
        self.artifact_etag = artifact_etag
        self.artifact_last_modified = artifact_last_modified
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.parameters = dict(parameters or {})
        self.suite_path = suite_path
        _check_suite_exists(self.task_id, suite_path)
        given = [name for name in self.ARTIFACT_FIELDS if getattr(self, name) is not None]
        if aws_conn_id and given:
            raise ValueError(
                f"{self.task_id}: {', '.join(given)} given with aws_conn_id={aws_conn_id!r}; the artifact is read "
                "from S3 when aws_conn_id is set: give one or the other"
            )

    @property
    def artifact_url(self) -> str:
        return f"s3://{self.artifact_bucket}/{self.artifact_key}"

    def read_artifact(self) -> dict[str, Any]:
        """Size, ETag and last-modified from S3 ``HeadObject`` (all None when there is no such object)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        head = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).head_object(
            key=self.artifact_key, bucket_name=self.artifact_bucket
        )
        if head is None:
            self.log.warning("No artifact at %s (S3 HeadObject answered 404)", self.artifact_url)
            return dict.fromkeys(self.ARTIFACT_FIELDS)
        return {
            "artifact_size": head.get("ContentLength"),
            "artifact_etag": (head.get("ETag") or "").strip('"') or None,
            "artifact_last_modified": head.get("LastModified"),
        }

    def inputs(self) -> dict[str, Any]:
        """The row the suite checks: rendered fields, blanks as None, size as a number, times as ISO 8601."""
        row = {name: getattr(self, name) for name in self.template_fields if name != "parameters"}
        if self.aws_conn_id and not _blank(self.artifact_bucket) and not _blank(self.artifact_key):
            row.update(self.read_artifact())
        row = {k: None if _blank(v) else v for k, v in row.items()}
        size = row["artifact_size"]
        if isinstance(size, str) and size.strip().isdigit():
            row["artifact_size"] = int(size)
        if isinstance(row["artifact_last_modified"], datetime):
            row["artifact_last_modified"] = iso(row["artifact_last_modified"])
        return row

    def execute(self, context: Any) -> dict[str, Any]:
        row = self.inputs()
        names = read_suite(self.suite_path).parameter_names()
        defaults = {k: v for k, v in self.DEFAULT_PARAMETERS.items() if k in names}
        result = validate_rows(
            [row], self.suite_path, {**defaults, **self.parameters}, fields={"artifact": self.artifact_url}
        )
        evidence = {**result.as_dict(), "inputs": json_safe(row)}
        what = f"{row['service'] or '?'} {row['version'] or '?'} to {row['environment'] or '?'}"
        if not result.success:
            raise GateFailed(result, evidence, what)
        for line in result.failure_lines("warning"):
            self.log.warning("Release inputs warning: %s", line)
        self.log.info("Release inputs of %s pass %d checks (%s)", what, result.counts["passed"], result.suite)
        return evidence


@dataclass(frozen=True)
class MetricCheck:
    """One metric a service gate reads, and the range its values must stay in."""

    metric: str
    statistic: str
    min: float | None
    max: float | None
    #: Dimensions of this metric when not the gate's own (``{name: value}``, in order).
    dimensions: dict[str, str] | None = None

    @classmethod
    def from_spec(cls, spec: Any, where: str) -> MetricCheck:
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where} must be a dict with metric, statistic, min and/or max; got {spec!r}")
        allowed = ("metric", "statistic", "min", "max", "dimensions")
        unknown = sorted(set(spec) - set(allowed))
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
        metric, statistic = spec.get("metric"), spec.get("statistic", DEFAULT_METRIC_STATISTIC)
        if not isinstance(metric, str) or not metric.strip():
            raise ValueError(f"{where}.metric must be a metric name, got {metric!r}")
        if statistic not in BASIC_STATISTICS and not PERCENTILE_STATISTIC.match(str(statistic)):
            raise ValueError(
                f"{where}.statistic={statistic!r}: use {', '.join(BASIC_STATISTICS)} or a percentile (p99)"
            )
        bounds = {}
        for key in ("min", "max"):
            value = spec.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                raise ValueError(f"{where}.{key} must be a number, got {value!r}")
            bounds[key] = None if value is None else float(value)
        if bounds["min"] is None and bounds["max"] is None:
            raise ValueError(f"{where} ({metric}) needs min and/or max: the range its values must stay in")
        if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
            raise ValueError(f"{where} ({metric}): min {bounds['min']:g} is above max {bounds['max']:g}")
        dimensions = spec.get("dimensions")
        if dimensions is not None and (
            not isinstance(dimensions, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in dimensions.items())
        ):
            raise ValueError(f"{where}.dimensions must map dimension names to string values, got {dimensions!r}")
        return cls(metric, statistic, bounds["min"], bounds["max"], dict(dimensions) if dimensions else None)

    @property
    def label(self) -> str:
        return f"{self.metric} {self.statistic}"

    def key(self) -> str:
        """A suite parameter name for this check (letters, digits and _)."""
        name = re.sub(r"[^A-Za-z0-9_]", "_", f"{self.metric}_{self.statistic}")
        return name if name[:1].isalpha() else f"m_{name}"


def metric_checks(checks: Any, task_id: str) -> list[MetricCheck]:
    if not isinstance(checks, (list, tuple)) or not checks:
        raise ValueError(f"{task_id}: checks must be a non-empty list of {{metric, statistic, min?, max?}}")
    parsed = [MetricCheck.from_spec(spec, f"{task_id}: checks[{i}]") for i, spec in enumerate(checks)]
    labels = [c.label for c in parsed]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        # Rows are told apart by metric and statistic, so one pair is one check (even on other dimensions).
        raise ValueError(f"{task_id}: checks repeat {', '.join(repeated)}; merge their min/max into one check")
    return parsed


def _moment(value: Any, name: str, task_id: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise AirflowFailException(
                f"{task_id}: {name}={value!r} is not an ISO 8601 time (e.g. 2026-11-26T12:00:00Z)"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class ServiceMetricsGateOperator(BaseOperator):
    """Check a service's CloudWatch metrics over a window after a change: each in range, none silent.

    Reads each check's metric with ``GetMetricData`` (namespace and dimensions in the order given),
    one row per datapoint ``{timestamp, metric, statistic, value}``, and validates the
    ``service_metrics`` suite: per check at least one datapoint in the window (no data fails:
    ``no datapoints for ErrorRate in <window>``), and every value between ``min`` and ``max``.

    .. seealso::
        - :external+boto3:py:meth:`CloudWatch.Client.get_metric_data`

    :param namespace: the metrics' namespace, e.g. ``Shipflow/Service``. (templated)
    :param dimensions: ``{name: value}``, in the order the metrics were put with. (templated)
    :param checks: ``[{metric, statistic (default Average), min?, max?, dimensions?}]``; at least one
        bound each; ``dimensions`` replaces the gate's for that metric. Checked when the DAG is parsed
        (when not a template). (templated)
    :param start: window start, a datetime or ISO 8601 string. (templated)
    :param end: window end (exclusive, as GetMetricData's EndTime). (templated)
    :param window_seconds: instead of ``start``/``end``: the window ending now.
    :param period: seconds per datapoint (1, 5, 10, 30 or a multiple of 60; default 60).
    :param aws_conn_id, region_name, verify, botocore_config: as in the Amazon provider.
    :param suite_path: the suite (default ``service_metrics.json`` under include/expectations/).
    :return: the :class:`GateResult` as a dict, plus ``window``, ``namespace``, ``dimensions`` and
        ``metrics`` (per check: datapoints, min, max, last and when).
    """

    template_fields: Sequence[str] = ("namespace", "dimensions", "checks", "start", "end")
    template_fields_renderers = {"dimensions": "json", "checks": "json"}
    ui_color = "#e8f4d9"

    COLUMNS = ("timestamp", "metric", "statistic", "value")

    def __init__(
        self,
        *,
        namespace: str,
        dimensions: Mapping[str, str],
        checks: Sequence[Mapping[str, Any]],
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        window_seconds: float | None = None,
        period: int = DEFAULT_METRIC_PERIOD,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        suite_path: str | Path = SERVICE_METRICS_SUITE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.dimensions = dict(dimensions)
        self.checks = list(checks)
        self.start, self.end, self.window_seconds = start, end, window_seconds
        self.period = period
        self.aws_conn_id, self.region_name = aws_conn_id, region_name
        self.verify, self.botocore_config = verify, botocore_config
        self.suite_path = suite_path
        _check_suite_exists(self.task_id, suite_path)
        if not any("{{" in str(c) for c in self.checks):
            metric_checks(self.checks, self.task_id)  # a mistake fails when the DAG is parsed
        if (start is None) != (end is None) or (start is None) == (window_seconds is None):
            raise ValueError(f"{self.task_id}: give start and end, or window_seconds (the window ending now)")
        if window_seconds is not None and (
            isinstance(window_seconds, bool) or not isinstance(window_seconds, (int, float)) or window_seconds <= 0
        ):
            raise ValueError(f"{self.task_id}: window_seconds must be a positive number, got {window_seconds!r}")
        if (
            isinstance(period, bool)
            or not isinstance(period, int)
            or period <= 0
            or (period not in HIGH_RESOLUTION_PERIODS and period % 60)
        ):
            raise ValueError(f"{self.task_id}: period={period!r}: use 1, 5, 10, 30 or a multiple of 60 seconds")

    def window(self) -> tuple[datetime, datetime]:
        if self.window_seconds is not None:
            end = datetime.now(UTC).replace(microsecond=0)
            return end - timedelta(seconds=self.window_seconds), end
        start = _moment(self.start, "start", self.task_id)
        end = _moment(self.end, "end", self.task_id)
        if end <= start:
            raise AirflowFailException(f"{self.task_id}: end {iso(end)} is not after start {iso(start)}")
        return start, end

    def dimensions_of(self, check: MetricCheck) -> dict[str, str]:
        return check.dimensions if check.dimensions is not None else self.dimensions

    def source(self, check: MetricCheck) -> str:
        """Where a check's metric is read, for messages: ``Shipflow/Service, Application=a, DeploymentGroup=g``."""
        return ", ".join([self.namespace, *(f"{k}={v}" for k, v in self.dimensions_of(check).items())])

    def query(self, check: MetricCheck, query_id: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.namespace,
                    "MetricName": check.metric,
                    "Dimensions": [{"Name": k, "Value": str(v)} for k, v in self.dimensions_of(check).items()],
                },
                "Period": self.period,
                "Stat": check.statistic,
            },
            "ReturnData": True,
        }

    def read_metrics(self, checks: list[MetricCheck], start: datetime, end: datetime) -> list[dict[str, Any]]:
        """One row per datapoint of each check, oldest first."""
        from shipflow.aws.hooks.cloudwatch import CloudWatchAlarmsHook

        hook = CloudWatchAlarmsHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
        # A window ending now reads a little past it (EndTime is exclusive); a fixed window is read as given.
        query_end = end + timedelta(seconds=METRIC_QUERY_LOOKAHEAD_SECONDS) if self.window_seconds else end
        series = hook.get_metric_data([self.query(c, f"m{i}") for i, c in enumerate(checks)], start, query_end)
        return [
            {"timestamp": iso(at), "metric": check.metric, "statistic": check.statistic, "value": float(value)}
            for i, check in enumerate(checks)
            for at, value in series.get(f"m{i}", [])
        ]

    def summary(self, checks: list[MetricCheck], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        summaries = []
        for check in checks:
            points = [r for r in rows if (r["metric"], r["statistic"]) == (check.metric, check.statistic)]
            values = [p["value"] for p in points]
            summaries.append(
                {
                    "metric": check.metric,
                    "statistic": check.statistic,
                    "dimensions": self.dimensions_of(check),
                    "min_allowed": check.min,
                    "max_allowed": check.max,
                    "datapoints": len(points),
                    "min": min(values) if values else None,
                    "max": max(values) if values else None,
                    "last": values[-1] if values else None,
                    "last_at": points[-1]["timestamp"] if points else None,
                }
            )
        return summaries

    def suite_parameters(self, checks: list[MetricCheck]) -> dict[str, Any]:
        """The suite's parameters: the checks to repeat over and each one's bounds (``ErrorRate_Average_max``)."""
        keys: dict[str, MetricCheck] = {}
        for check in checks:
            key = check.key()
            while key in keys:  # two names that differ only in punctuation
                key += "_"
            keys[key] = check
        parameters: dict[str, Any] = {
            "checks": [
                {"key": key, "metric": c.metric, "statistic": c.statistic, "source": self.source(c)}
                for key, c in keys.items()
            ]
        }
        for key, check in keys.items():
            parameters[f"{key}_min"], parameters[f"{key}_max"] = check.min, check.max
        return parameters

    def execute(self, context: Any) -> dict[str, Any]:
        checks = metric_checks(self.checks, self.task_id)
        start, end = self.window()
        rows = self.read_metrics(checks, start, end)
        result = validate_rows(
            rows,
            self.suite_path,
            self.suite_parameters(checks),
            columns=self.COLUMNS,
            fields={"window": f"{iso(start)} to {iso(end)}"},
        )
        evidence = {
            **result.as_dict(),
            "window": {"start": iso(start), "end": iso(end), "period_s": self.period},
            "namespace": self.namespace,
            "dimensions": dict(self.dimensions),
            "metrics": self.summary(checks, rows),
        }
        if not result.success:
            raise GateFailed(result, evidence, f"{self.namespace} {iso(start)} to {iso(end)}")
        for line in result.failure_lines("warning"):
            self.log.warning("Service metrics warning: %s", line)
        for metric in evidence["metrics"]:
            self.log.info(
                "%s %s: %d datapoint(s), min %s, max %s",
                metric["metric"],
                metric["statistic"],
                metric["datapoints"],
                words(metric["min"]),
                words(metric["max"]),
            )
        return evidence
