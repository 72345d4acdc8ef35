"""The service spec as frozen pydantic models: what one service's release is made of.

A spec (``include/services/<service>.yaml``) is read by :mod:`shipflow.spec.loader`, which merges
``include/defaults.yaml`` into it *before* these models validate it; so a field that has a default
there is required here, and the models hold no default values of their own (an empty list or ``None``
for an optional part is not a default, it is the absence of that part).

Every rule that involves more than one field lives in a model validator that reports *all* the
problems it finds, each on the field a user has to change (see :func:`_reject`). DAG files import
this module while they are parsed: it needs pydantic, the standard library and Shipflow's constants
modules only.
"""

from __future__ import annotations

import difflib
import re
import string
import zoneinfo
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from shipflow.aws.constants.cloudformation import CAPABILITIES, TEMPLATES_DIR
from shipflow.aws.constants.cloudwatch import BASIC_STATISTICS, PERCENTILE_STATISTIC
from shipflow.aws.constants.codedeploy import S3_BUNDLE_TYPES

# -- names and vocabularies --------------------------------------------------------------------------
INCLUDE_DIR = TEMPLATES_DIR.parent
DAG_ID_PREFIX = "release__"
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
ENVIRONMENT_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
ROLE_PREFIX = "role:"  # an approver or owner written "role:<name>" is an Airflow role, else a user name
PLACEHOLDERS = ("version", "commit", "environment", "service")
EXECUTION_MODES = ("queued", "superseded")
NOTIFICATION_EVENTS = (
    "failure",
    "rollback",
    "approval_pending",
    "approval_timeout",
    "manual_fallback",
    "window_override",
)
CHANGE_KINDS = ("add", "modify", "removal", "replacement", "iam")
COMPUTE_PLATFORMS = ("Server", "Lambda", "ECS")
ON_TIMEOUT = ("reject",)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_APPROVAL_TIMEOUT = 7 * 86400
# AWS's predefined CodeDeploy configs and the compute platform each is for. Custom configs carry their
# platform in AWS, so only these names can be checked against compute_platform here.
PREDEFINED_DEPLOYMENT_CONFIGS = {
    f"CodeDeployDefault.{name}": platform
    for platform, names in {
        "Server": ("AllAtOnce", "HalfAtATime", "OneAtATime"),
        "Lambda": (
            "LambdaAllAtOnce",
            "LambdaCanary10Percent5Minutes",
            "LambdaCanary10Percent10Minutes",
            "LambdaCanary10Percent15Minutes",
            "LambdaCanary10Percent30Minutes",
            "LambdaLinear10PercentEvery1Minute",
            "LambdaLinear10PercentEvery2Minutes",
            "LambdaLinear10PercentEvery3Minutes",
            "LambdaLinear10PercentEvery10Minutes",
        ),
        "ECS": (
            "ECSAllAtOnce",
            "ECSCanary10Percent5Minutes",
            "ECSCanary10Percent15Minutes",
            "ECSLinear10PercentEvery1Minutes",
            "ECSLinear10PercentEvery3Minutes",
        ),
    }.items()
    for name in names
}
PREDEFINED_CONFIG_PREFIX = "CodeDeployDefault."


# -- errors --------------------------------------------------------------------------------------------
def _error(message: str) -> PydanticCustomError:
    # The message travels in the context so that braces in it ("{version}") are not read as a template.
    return PydanticCustomError("shipflow", "{message}", {"message": message})


Problem = tuple[tuple[str | int, ...], str, Any]
"""Where (a location relative to the model), what is wrong and how to fix it, and the value found."""


def _reject(title: str, problems: list[Problem]) -> None:
    """Raise every cross-field problem at once, each located on the field to change."""
    if problems:
        raise ValidationError.from_exception_data(
            title, [InitErrorDetails(type=_error(message), loc=loc, input=value) for loc, message, value in problems]
        )


def did_you_mean(word: str, choices: Any) -> str:
    """``"; did you mean 'x'?"`` when a choice is close to ``word`` (case ignored), else ``""``."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean '{by_lower[close[0]]}'?" if close else ""


# -- value types ---------------------------------------------------------------------------------------
def _text(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise _error("must not be empty")
    return value


Text = Annotated[str, AfterValidator(_text)]


def _placeholders(text: str) -> Iterator[tuple[str, str | None, str | None]]:
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is not None:
            yield name, spec, conversion


def _template(value: str) -> str:
    try:
        found = list(_placeholders(value))
    except ValueError:
        raise _error("has an unmatched brace; write {{ or }} for a literal brace") from None
    allowed = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
    for name, spec, conversion in found:
        if name not in PLACEHOLDERS:
            raise _error(f"unknown placeholder {{{name}}}; use {allowed} (write {{{{ and }}}} for a literal brace)")
        if spec or conversion:
            raise _error(f"placeholders take no format or conversion: write {{{name}}}")
    return value


Template = Annotated[str, AfterValidator(_text), AfterValidator(_template)]
"""A string in which ``{version}``, ``{commit}``, ``{environment}`` and ``{service}`` are substituted."""


def render(template: str, **values: str) -> str:
    """Substitute placeholders in a :data:`Template` field, e.g. ``render(key, version="1.4.0")``."""
    return template.format_map(values)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise _error("must be a plain value (a string, number or true/false)")


PlainValue = Annotated[
    str,
    BeforeValidator(_plain),
    AfterValidator(_template),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]
"""A string, number or boolean, kept as text (CodeBuild and CloudFormation take text)."""

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_UNITS = (86400, 3600, 60, 1)
DURATION_HELP = "a duration: whole seconds, or a text like 30s, 15m, 4h, 2d or 1h30m"


def parse_duration(value: Any) -> int:
    """Seconds from ``90``, ``"30s"``, ``"15m"``, ``"4h"``, ``"2d"`` or a combination like ``"1h30m"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _error("must not be negative")
        return value
    if isinstance(value, str) and value.strip() and (match := _DURATION.match(value.strip())):
        return sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if part)
    raise _error(f"must be {DURATION_HELP}")


def format_duration(seconds: int) -> str:
    """The shortest text :func:`parse_duration` reads back as ``seconds`` (``14400`` -> ``"4h"``)."""
    if seconds == 0:
        return "0s"
    parts = []
    for suffix, unit in zip("dhms", _DURATION_UNITS, strict=True):
        count, seconds = divmod(seconds, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)


def _positive(seconds: int) -> int:
    if seconds <= 0:
        raise _error("must be longer than 0")
    return seconds


def _at_most_a_week(seconds: int) -> int:
    if seconds > MAX_APPROVAL_TIMEOUT:
        raise _error(f"must be at most {format_duration(MAX_APPROVAL_TIMEOUT)}")
    return seconds


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": _DURATION.pattern, "examples": ["30s", "15m", "4h", "2d", "1h30m"]},
    ]
}
Duration = Annotated[int, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
"""Seconds; written as an integer or ``"30s"``/``"15m"``/``"4h"``/``"2d"`` in a spec."""
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
ApprovalTimeout = Annotated[PositiveDuration, AfterValidator(_at_most_a_week)]

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_END_TIME = re.compile(r"^(([01]\d|2[0-3]):([0-5]\d)|24:00)$")


def _clock_text(value: Any, pattern: re.Pattern[str], allowed: str) -> str:
    if isinstance(value, time):
        value = f"{value:%H:%M}"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 * 60:
        # YAML 1.1 reads an unquoted 16:00 as the base-60 number 960.
        hint = f'"{value // 60:02d}:{value % 60:02d}"'
        raise _error(f"write times in quotes, like {hint} (YAML reads an unquoted {hint[1:-1]} as a number)")
    if isinstance(value, str) and len(value) == 8 and value.endswith(":00"):
        value = value[:5]  # "09:00:00", as a dumped model gives it
    if isinstance(value, str) and pattern.match(value):
        return value
    raise _error(f'must be a time of day "HH:MM" ({allowed}, in quotes)')


# Times are kept as "HH:MM" text: comparable as strings, and "24:00" (the end of a day) has no
# datetime.time; the deployment window gate reads both forms.
ClockTime = Annotated[
    str,
    BeforeValidator(lambda v: _clock_text(v, _TIME, "00:00-23:59")),
    WithJsonSchema({"type": "string", "pattern": _TIME.pattern}),
]
EndClockTime = Annotated[
    str,
    BeforeValidator(lambda v: _clock_text(v, _END_TIME, "00:00-24:00")),
    WithJsonSchema({"type": "string", "pattern": _END_TIME.pattern}),
]


def _moment(value: Any) -> date | datetime:
    if isinstance(value, date):  # a datetime is a date too
        return value
    if isinstance(value, str):
        for parse in (date.fromisoformat, datetime.fromisoformat):
            try:
                return parse(value)
            except ValueError:
                continue
    raise _error("must be a date (2026-12-20) or a date and time (2026-12-20T18:00:00)")


Moment = Annotated[
    date | datetime,
    BeforeValidator(_moment),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}),
]


def _principal(value: str) -> str:
    if value.startswith(ROLE_PREFIX) and not value[len(ROLE_PREFIX) :].strip():
        raise _error('must name a role after "role:", like role:release-managers')
    if not value.strip():
        raise _error("must not be empty")
    return value


Principal = Annotated[str, AfterValidator(_principal)]
"""A user name, or ``role:<name>`` for an Airflow role."""


def _non_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    # Not Field(min_length=1): pydantic would also report a list whose items have mistakes as empty.
    if not value:
        raise _error("must list at least one")
    return value


NonEmpty = AfterValidator(_non_empty)
AT_LEAST_ONE: dict[str, Any] = {"minItems": 1}  # NonEmpty, said in the JSON schema


def users_of(principals: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for p in principals if not p.startswith(ROLE_PREFIX))


def roles_of(principals: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p[len(ROLE_PREFIX) :] for p in principals if p.startswith(ROLE_PREFIX))


ROLES_FILE = "roles.yaml"
_ROLES_CACHE: dict[Path, tuple[float, dict[str, tuple[str, ...]]]] = {}


class RolesFileError(ValueError):
    """include/roles.yaml cannot be read; the message names the file, the field and the fix."""


def load_roles(include_dir: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Who holds each role named in specs (``role:<name>``), from ``include/roles.yaml``.

    ``roles: {<name>: [user, ...]}``. Read once per change of the file (DAG parsing reads it per spec).
    A missing file means no roles are defined.
    """
    path = (include_dir or INCLUDE_DIR) / ROLES_FILE
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return {}
    cached = _ROLES_CACHE.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RolesFileError(f"{path}: is not valid YAML: {str(exc).splitlines()[0]}") from None
    roles = data.get("roles") if isinstance(data, dict) else None
    if not isinstance(roles, dict):
        raise RolesFileError(f"{path}: roles: must be a mapping of role name -> list of user names")
    result: dict[str, tuple[str, ...]] = {}
    for name, members in roles.items():
        if not isinstance(members, list) or not members or not all(isinstance(m, str) and m.strip() for m in members):
            raise RolesFileError(f"{path}: roles.{name}: must be a non-empty list of user names (got {members!r})")
        result[str(name)] = tuple(dict.fromkeys(members))
    _ROLES_CACHE[path] = (mtime, result)
    return result


def people_of(principals: tuple[str, ...], roles: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The distinct people behind users and ``role:<name>`` principals."""
    people: dict[str, None] = {}
    for principal in principals:
        members = roles.get(principal[len(ROLE_PREFIX) :], ()) if principal.startswith(ROLE_PREFIX) else (principal,)
        people.update(dict.fromkeys(members))
    return tuple(people)


def _role_problems(field_name: str, principals: tuple[str, ...], info: ValidationInfo) -> list[Problem]:
    """Every ``role:<name>`` must be defined in include/roles.yaml."""
    try:
        roles = load_roles(_include_dir(info))
    except RolesFileError as exc:
        return [((field_name,), str(exc), None)]
    problems: list[Problem] = []
    for i, principal in enumerate(principals):
        role = principal[len(ROLE_PREFIX) :] if principal.startswith(ROLE_PREFIX) else None
        if role is not None and role not in roles:
            defined = (", ".join(sorted(roles)) or "none") + ")" + did_you_mean(role, roles)
            problems.append(
                (
                    (field_name, i),
                    f"role {role} is not defined in include/{ROLES_FILE} (defined: {defined}; "
                    "add it there with its members, or name users",
                    principal,
                )
            )
    return problems


def _duplicates(field: str, values: tuple[Any, ...], what: str) -> list[Problem]:
    seen: dict[Any, int] = {}
    problems = []
    for i, value in enumerate(values):
        if value in seen:
            problems.append(((field, i), f"{what} {value} is listed twice (also {field}[{seen[value]}])", value))
        seen.setdefault(value, i)
    return problems


def _include_dir(info: ValidationInfo) -> Path:
    return Path((info.context or {}).get("include_dir") or INCLUDE_DIR)


def _relative_file(value: str, base: Path, shown: str) -> Path:
    """``value`` as a file under ``base``: relative, not leaving it, and existing."""
    path = Path(value)
    if path.is_absolute() or ".." in path.parts:
        raise _error(f"must be a path relative to {shown}/ (no leading / and no ..)")
    full = base / path
    if not full.is_file():
        there = sorted(p.name for p in base.glob("*") if p.is_file()) if base.is_dir() else []
        listed = f"; files there: {', '.join(there)}" if there else f"; {shown}/ has no files"
        raise _error(f"file {shown}/{value} does not exist{did_you_mean(value, there) or listed}")
    return full


# -- the spec ------------------------------------------------------------------------------------------
class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Build(_Part):
    """A CodeBuild build of the release's commit. Leave ``build`` out to deploy an artifact built elsewhere."""

    codebuild_project: Text
    buildspec_override: str | None = Field(
        None,
        description="A buildspec file under include/ (one line ending .yml/.yaml), or an inline buildspec (YAML text)",
    )
    environment_variables: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], PlainValue] = Field(
        default_factory=dict,
        description="Plain values only (placeholders allowed); secrets stay in the CodeBuild project",
    )

    @field_validator("buildspec_override")
    @classmethod
    def _buildspec(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if "\n" not in value.strip():
            if not value.strip().endswith((".yml", ".yaml")):
                raise _error("must be a buildspec file under include/ ending in .yml or .yaml, or an inline buildspec")
            _relative_file(value.strip(), _include_dir(info), "include")
            return value.strip()
        try:
            inline = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise _error(f"is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(inline, dict):
            raise _error("must be a buildspec (a YAML mapping with version and phases)")
        return value


class Artifact(_Part):
    """Where the deployable bundle of a version lives in S3."""

    bucket: Template
    key: Template = Field(description='The S3 key; "{version}" is substituted, e.g. "svc/svc-{version}.zip"')
    bundle_type: Literal[S3_BUNDLE_TYPES]  # type: ignore[valid-type]


class ReleaseTrain(_Part):
    """Scheduled releases: a run leaves at each opening of an environment's deployment window and ships the
    newest version whose artifact is in S3 (its ``commit`` object metadata names the commit)."""

    environment: Text = Field(description="The environment whose deployment_window schedules the train")


class Notifications(_Part):
    sns_topic_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
    slack_connection_id: Text | None = None
    on: Annotated[tuple[Literal[NOTIFICATION_EVENTS], ...], NonEmpty] = Field(  # type: ignore[valid-type]
        json_schema_extra=AT_LEAST_ONE
    )

    @model_validator(mode="after")
    def _rules(self) -> Notifications:
        problems: list[Problem] = []
        if not (self.sns_topic_arn or self.slack_connection_id):
            problems.append(((), "give sns_topic_arn and/or slack_connection_id (or leave notifications out)", None))
        problems += _duplicates("on", self.on, "event")
        _reject("Notifications", problems)
        return self


class Window(_Part):
    """Times on some weekdays when deployments may start (start < end: a window does not cross midnight)."""

    days: Annotated[tuple[Literal[WEEKDAYS], ...], NonEmpty] = Field(  # type: ignore[valid-type]
        json_schema_extra=AT_LEAST_ONE
    )
    start: ClockTime
    end: EndClockTime

    @model_validator(mode="after")
    def _rules(self) -> Window:
        problems = _duplicates("days", self.days, "day")
        if self.start >= self.end:
            problems.append(
                (
                    ("end",),
                    f"must be after start ({self.start}); a window cannot cross midnight, split it in two",
                    self.end,
                )
            )
        _reject("Window", problems)
        return self


class Freeze(_Part):
    """A period without deployments. Dates are whole days (``end`` included); times without an offset are
    in the window's timezone."""

    start: Moment
    end: Moment
    reason: Text

    def interval(self, zone: zoneinfo.ZoneInfo) -> tuple[datetime, datetime]:
        """``[start, end)`` as aware datetimes; a date ``end`` lasts until the end of that day."""

        def aware(moment: date | datetime, end: bool) -> datetime:
            if not isinstance(moment, datetime):
                moment = datetime.combine(moment + timedelta(days=1) if end else moment, time.min)
            return moment if moment.tzinfo else moment.replace(tzinfo=zone)

        return aware(self.start, False), aware(self.end, True)


CALENDARS_DIR = "calendars"


class DeploymentWindow(_Part):
    timezone: str = Field(description="An IANA timezone name, like Europe/Berlin")
    windows: tuple[Window, ...] = Field(default=(), description="When deployments may start; none = at any time")
    freezes: tuple[Freeze, ...] = ()
    freeze_calendar: str | None = Field(
        None,
        description="A file under include/calendars/ with more freezes (freezes: [{start, end, reason}]), "
        "shared by services",
    )
    _calendar_freezes: tuple[Freeze, ...] = PrivateAttr(default=())

    @field_validator("freeze_calendar")
    @classmethod
    def _calendar_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _relative_file(value, _include_dir(info) / CALENDARS_DIR, f"include/{CALENDARS_DIR}")
        return value

    @model_validator(mode="after")
    def _read_calendar(self, info: ValidationInfo) -> DeploymentWindow:
        if self.freeze_calendar is None:
            return self
        path = _include_dir(info) / CALENDARS_DIR / self.freeze_calendar
        shown = f"include/{CALENDARS_DIR}/{self.freeze_calendar}"
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            _reject(
                "DeploymentWindow", [(("freeze_calendar",), f"{shown} is not valid YAML: {exc}", self.freeze_calendar)]
            )
        entries = data.get("freezes") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            _reject(
                "DeploymentWindow",
                [
                    (
                        ("freeze_calendar",),
                        f"{shown} must hold freezes: [{{start, end, reason}}, ...]",
                        self.freeze_calendar,
                    )
                ],
            )
        freezes = []
        for i, entry in enumerate(entries):
            try:
                freezes.append(Freeze.model_validate(entry))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                _reject(
                    "DeploymentWindow",
                    [(("freeze_calendar",), f"{shown}: freezes[{i}].{where}: {first['msg']}", entry)],
                )
        self._calendar_freezes = tuple(freezes)
        return self

    def gate_spec(self) -> dict[str, Any]:
        """What the window gate reads: timezone, windows, and the inline and calendar freezes together."""
        data = self.model_dump(mode="json", include={"timezone", "windows", "freezes"})
        data["freezes"] = data["freezes"] + [f.model_dump(mode="json") for f in self._calendar_freezes]
        return data

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            hint = did_you_mean(value, zoneinfo.available_timezones())
            raise _error(f"is not an IANA timezone name (like Europe/Berlin or UTC){hint}") from None
        return value

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _rules(self) -> DeploymentWindow:
        problems: list[Problem] = []
        if not (self.windows or self.freezes):
            problems.append(((), "give windows and/or freezes (or leave deployment_window out)", None))
        for i, freeze in enumerate(self.freezes):
            start, end = freeze.interval(self.zone)
            if end <= start:
                problems.append(
                    (("freezes", i, "end"), f"must not be before start ({freeze.start.isoformat()})", freeze.end)
                )
        _reject("DeploymentWindow", problems)
        return self


def _alarm_problems(alarms: tuple[str, ...], prefix: str | None) -> list[Problem]:
    if alarms and prefix:
        return [(("alarm_prefix",), "give alarms or alarm_prefix, not both", prefix)]
    return []


class PreChecks(_Part):
    alarms: tuple[Text, ...] = Field(default=(), description="CloudWatch alarms that must be OK before deploying")
    alarm_prefix: Text | None = Field(None, description="Every alarm whose name starts with this must be OK")
    stack_stable: Annotated[bool, WithJsonSchema({"type": ["boolean", "null"]})] = Field(
        description="The stack is in a stable state; null (the default) = check it when infrastructure is set"
    )
    artifact_present: bool = Field(description="The artifact of the version exists in S3")
    release_inputs: bool = Field(description="The GX gate over version, commit, change reference and artifact metadata")

    @model_validator(mode="after")
    def _rules(self) -> PreChecks:
        _reject("PreChecks", _alarm_problems(self.alarms, self.alarm_prefix))
        return self


class Infrastructure(_Part):
    """A CloudFormation stack updated through a change set before the deployment."""

    stack: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    template: str = Field(description="A file under include/templates/")
    parameters: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9]+$")], PlainValue] = Field(
        default_factory=dict, description="Stack parameters; values may use {version} {commit} {environment} {service}"
    )
    capabilities: tuple[Literal[CAPABILITIES], ...] = ()  # type: ignore[valid-type]
    approval_for: tuple[Literal[CHANGE_KINDS], ...] = Field(  # type: ignore[valid-type]
        description="Change kinds that make the change set wait for the environment's approvers"
    )

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str, info: ValidationInfo) -> str:
        _relative_file(value, _include_dir(info) / "templates", "include/templates")
        return value

    @model_validator(mode="after")
    def _rules(self) -> Infrastructure:
        _reject(
            "Infrastructure",
            _duplicates("capabilities", self.capabilities, "capability")
            + _duplicates("approval_for", self.approval_for, "change kind"),
        )
        return self


class Approval(_Part):
    """A human approval before the deployment (N of M approvers)."""

    approvers: Annotated[tuple[Principal, ...], NonEmpty] = Field(
        description='User names, or "role:<Airflow role>"', json_schema_extra=AT_LEAST_ONE
    )
    required: int = Field(ge=1, description="How many approvers must approve")
    timeout: ApprovalTimeout
    on_timeout: Literal[ON_TIMEOUT]  # type: ignore[valid-type]

    @property
    def users(self) -> tuple[str, ...]:
        return users_of(self.approvers)

    @property
    def roles(self) -> tuple[str, ...]:
        return roles_of(self.approvers)

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Approval:
        problems = _duplicates("approvers", self.approvers, "approver")
        role_problems = _role_problems("approvers", self.approvers, info)
        problems += role_problems
        people = people_of(self.approvers, load_roles(_include_dir(info))) if not role_problems else ()
        if not role_problems and self.required > len(people):
            problems.append(
                (
                    ("required",),
                    f"asks for {self.required} approvals but only {len(people)} people may approve "
                    f"({', '.join(people)}); lower required, add approvers, or list a role (role:<name>)",
                    self.required,
                )
            )
        _reject("Approval", problems)
        return self


class Deployment(_Part):
    application: Text
    deployment_group: Text
    config: Text | None = Field(
        None, description="A CodeDeployDefault.* config or a custom config name; null = the group's own config"
    )
    compute_platform: Literal[COMPUTE_PLATFORMS]  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _rules(self) -> Deployment:
        problems: list[Problem] = []
        config = self.config
        if config and config.startswith(PREDEFINED_CONFIG_PREFIX):
            platform = PREDEFINED_DEPLOYMENT_CONFIGS.get(config)
            if platform is None:
                hint = did_you_mean(config, PREDEFINED_DEPLOYMENT_CONFIGS)
                problems.append(
                    (
                        ("config",),
                        f"is not one of AWS's predefined configs (a custom config's name must not start with "
                        f"{PREDEFINED_CONFIG_PREFIX}){hint}",
                        config,
                    )
                )
            elif platform != self.compute_platform:
                same = [c for c, p in PREDEFINED_DEPLOYMENT_CONFIGS.items() if p == self.compute_platform]
                problems.append(
                    (
                        ("config",),
                        f"is a {platform} config but compute_platform is {self.compute_platform}: use a "
                        f"{self.compute_platform} config ({', '.join(c.split('.', 1)[1] for c in same)}) "
                        f"or set compute_platform: {platform}",
                        config,
                    )
                )
        _reject("Deployment", problems)
        return self


def _statistic(value: str) -> str:
    if value in BASIC_STATISTICS or PERCENTILE_STATISTIC.match(value):
        return value
    hint = did_you_mean(value, BASIC_STATISTICS)
    raise _error(f"must be {', '.join(BASIC_STATISTICS)} or a percentile like p99{hint}")


class Metric(_Part):
    """A CloudWatch metric that must stay within [min, max] during the bake."""

    metric: Text
    statistic: Annotated[str, AfterValidator(_statistic)]
    max: float | None = None
    min: float | None = None
    dimensions: dict[str, str] | None = Field(
        None, description="null = Application and DeploymentGroup of the environment's deployment"
    )

    @model_validator(mode="after")
    def _rules(self) -> Metric:
        problems: list[Problem] = []
        if self.max is None and self.min is None:
            problems.append(((), "give max and/or min: a metric gate without a threshold checks nothing", None))
        elif self.max is not None and self.min is not None and self.min > self.max:
            problems.append((("min",), f"must not be above max ({self.max:g})", self.min))
        _reject("Metric", problems)
        return self


class PostChecks(_Part):
    bake_time: Duration = Field(description="How long alarms and metrics are watched after deploying; 0 = no bake")
    alarms: tuple[Text, ...] = ()
    alarm_prefix: Text | None = None
    metrics: tuple[Metric, ...] = Field(default=(), description="The GX gate over the bake window's metrics")
    namespace: Text = Field(description="CloudWatch namespace of the metrics")

    @property
    def watches(self) -> bool:
        return bool(self.alarms or self.alarm_prefix or self.metrics)

    @model_validator(mode="after")
    def _rules(self) -> PostChecks:
        problems = _alarm_problems(self.alarms, self.alarm_prefix)
        if self.bake_time == 0 and self.watches:
            problems.append(
                (
                    ("bake_time",),
                    "is 0, so the alarms and metrics listed would never be watched: set a bake time or remove them",
                    self.bake_time,
                )
            )
        elif self.bake_time > 0 and not self.watches:
            problems.append(
                (
                    ("bake_time",),
                    "a bake that watches nothing always passes: list alarms, an alarm_prefix or metrics, "
                    "or set bake_time: 0 to skip the bake",
                    format_duration(self.bake_time),
                )
            )
        _reject("PostChecks", problems)
        return self


def _url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+\S*$", value):
        raise _error("must be an http:// or https:// URL")
    return value


class Rollback(_Part):
    automatic: bool = Field(description="Roll back automatically when a post-check fails")
    runbook_url: Annotated[Template, AfterValidator(_url)] | None = Field(
        None, description="An http(s) URL; required when automatic (the manual fallback links it)"
    )
    manual_fallback_timeout: PositiveDuration = Field(description="How long a manual fallback waits for a human")

    @model_validator(mode="after")
    def _rules(self) -> Rollback:
        if self.automatic and not self.runbook_url:
            _reject(
                "Rollback",
                [(("runbook_url",), "is required when automatic is true: the manual fallback links it", None)],
            )
        return self


class Environment(_Part):
    """One stage of the release, in order: window, pre-checks, infrastructure, approval, deploy, bake."""

    name: str = Field(pattern=ENVIRONMENT_NAME.pattern)
    aws_conn_id: Text
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    deployment_window: DeploymentWindow | None = None
    pre_checks: PreChecks
    infrastructure: Infrastructure | None = None
    approval: Approval | None = None
    deployment: Deployment
    post_checks: PostChecks
    rollback: Rollback

    @model_validator(mode="before")
    @classmethod
    def _stack_stable_follows_infrastructure(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(pre := data.get("pre_checks"), dict):
            if pre.get("stack_stable") is None:
                return {**data, "pre_checks": {**pre, "stack_stable": data.get("infrastructure") is not None}}
        return data

    @model_validator(mode="after")
    def _rules(self) -> Environment:
        problems: list[Problem] = []
        if self.pre_checks.stack_stable and self.infrastructure is None:
            problems.append(
                (
                    ("pre_checks", "stack_stable"),
                    "needs infrastructure: this environment has no stack to check (set infrastructure or remove it)",
                    True,
                )
            )
        if self.infrastructure and self.infrastructure.approval_for and self.approval is None:
            problems.append(
                (
                    ("infrastructure", "approval_for"),
                    "needs an approval section naming who approves these changes (or set approval_for: [])",
                    list(self.infrastructure.approval_for),
                )
            )
        _reject("Environment", problems)
        return self


def _service_name(value: str) -> str:
    if not SERVICE_NAME.match(value):
        raise _error(
            "must be 3-40 characters of lower-case letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )
    return value


# Strings that are read as written: free text, and an inline buildspec (whose shell may use ${VAR}).
FREE_TEXT_FIELDS = frozenset({"description", "reason", "buildspec_override"})
# Fields whose strings Shipflow substitutes placeholders in (typed Template or PlainValue above).
TEMPLATED_FIELDS = (
    "artifact.bucket",
    "artifact.key",
    "build.environment_variables",
    "infrastructure.parameters",
    "rollback.runbook_url",
)
_TEMPLATED_NAMES = {
    (Artifact, "bucket"),
    (Artifact, "key"),
    (Build, "environment_variables"),
    (Infrastructure, "parameters"),
    (Rollback, "runbook_url"),
}
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _literal_braces(model: BaseModel, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Placeholders written where nothing substitutes them (alarm names, stack names...)."""
    for name in type(model).model_fields:
        if name in FREE_TEXT_FIELDS or (type(model), name) in _TEMPLATED_NAMES:
            continue
        yield from _walk_strings(getattr(model, name), (*loc, name))


def _walk_strings(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, BaseModel):
        yield from _literal_braces(value, loc)
    elif isinstance(value, str):
        if _PLACEHOLDER.search(value):
            yield loc, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _walk_strings(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_strings(item, (*loc, key))


class ServiceSpec(_Part):
    """One service's release: how it is built, where its artifact is, and its environments in order."""

    service: Annotated[str, AfterValidator(_service_name)] = Field(
        description="The service name; the DAG is release__<service> and the file <service>.yaml"
    )
    description: str | None = None
    owners: Annotated[tuple[Principal, ...], NonEmpty] = Field(
        description='User names, or "role:<Airflow role>"', json_schema_extra=AT_LEAST_ONE
    )
    tags: tuple[Text, ...] = Field(default=(), description="Added to the DAG's tags")
    execution_mode: Literal[EXECUTION_MODES]  # type: ignore[valid-type]
    release_train: ReleaseTrain | None = None
    build: Build | None = None
    artifact: Artifact
    notifications: Notifications | None = None
    environments: Annotated[tuple[Environment, ...], NonEmpty] = Field(
        description="In release order", json_schema_extra=AT_LEAST_ONE
    )

    @property
    def dag_id(self) -> str:
        return f"{DAG_ID_PREFIX}{self.service}"

    def environment(self, name: str) -> Environment:
        for environment in self.environments:
            if environment.name == name:
                return environment
        raise KeyError(f"{self.service} has no environment {name!r}")

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> ServiceSpec:
        problems = _duplicates("owners", self.owners, "owner") + _role_problems("owners", self.owners, info)
        first: dict[str, int] = {}
        for i, environment in enumerate(self.environments):
            if environment.name in first:
                problems.append(
                    (
                        ("environments", i, "name"),
                        f"environment {environment.name} is defined twice (also environments"
                        f"[{first[environment.name]}]); environment names must be unique",
                        environment.name,
                    )
                )
            first.setdefault(environment.name, i)
        if self.release_train is not None:
            names = [e.name for e in self.environments]
            train = self.release_train.environment
            if train not in names:
                problems.append(
                    (
                        ("release_train", "environment"),
                        f"is not one of this service's environments ({', '.join(names)})",
                        train,
                    )
                )
            elif (window := self.environment(train).deployment_window) is None or not window.windows:
                problems.append(
                    (
                        ("release_train", "environment"),
                        f"environment {train} has no deployment_window.windows; a train leaves when a window opens",
                        train,
                    )
                )
        for loc, value in _literal_braces(self, ()):
            problems.append(
                (
                    loc,
                    f"placeholders are substituted only in {', '.join(TEMPLATED_FIELDS)}; write a literal name here",
                    value,
                )
            )
        _reject("ServiceSpec", problems)
        return self
