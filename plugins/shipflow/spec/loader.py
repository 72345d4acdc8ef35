"""Reading service specs: YAML with line numbers, ``include/defaults.yaml`` merged in, every problem reported.

``load_spec`` returns one :class:`~shipflow.spec.model.ServiceSpec` or raises :class:`InvalidSpecError`;
``load_specs`` reads a directory and returns the good specs *and* the problems of the bad ones, so one
broken file never takes the other services' DAGs down. Each problem is a :class:`SpecError` that reads
``file:line: field.path: message (got value)``.

YAML is read with ``yaml.safe_load``'s loader and two changes that only make it stricter or plainer:
mapping keys are kept as written (YAML 1.1 would read the key ``on:`` as ``True``), and tags
(``!Ref``, ``!!python/...``, ``!!binary``), duplicate keys and non-text keys are reported as mistakes.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from shipflow.spec.model import INCLUDE_DIR, SERVICE_NAME, ServiceSpec, did_you_mean

DEFAULTS_FILE = INCLUDE_DIR / "defaults.yaml"
SERVICES_DIR = INCLUDE_DIR / "services"
SPEC_SUFFIX = ".yaml"
SPEC_SUFFIXES = (".yaml", ".yml")  # a .yml file is read and told to rename itself, not silently skipped
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Loc = tuple[str | int, ...]


class _NoValue:
    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Any = _NoValue()
"""The ``value`` of a :class:`SpecError` about something absent (a missing field, a syntax error)."""


def show(value: Any) -> str:
    """A value as a spec writer would write it: YAML/JSON scalars, shortened when long."""
    if isinstance(value, time):
        text = value.strftime("%H:%M")
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class SpecError:
    """One problem in one spec file, located by line and field path (``environments[1].approval.required``)."""

    file: str
    line: int
    field_path: str
    message: str
    value: Any = NO_VALUE

    def __str__(self) -> str:
        path = f"{self.field_path}: " if self.field_path else ""
        got = "" if self.value is NO_VALUE else f" (got {show(self.value)})"
        return f"{self.file}:{self.line}: {path}{self.message}{got}"


class InvalidSpecError(ValueError):
    """A spec (or the defaults file) that does not validate; ``errors`` holds every problem found."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def field_path(loc: Loc) -> str:
    """``("environments", 1, "approval", "required")`` -> ``environments[1].approval.required``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for a problem with a mapping's key rather than its value
            path += f".{part}" if path else str(part)
    return path


# -- YAML --------------------------------------------------------------------------------------------------
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq", "merge")
)
_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """``yaml.safe_load``'s loader, keeping mapping keys as the text written."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, f"expected a mapping, found {node.id}", node.start_mark)
        self.flatten_mapping(node)  # merge keys (<<: *anchor)
        mapping = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    "found a key that is not plain text",
                    key_node.start_mark,
                )
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping


def _key(node: yaml.Node) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) else "?"


def _inspect(node: yaml.Node, loc: Loc, shown: str, ancestors: frozenset[int] = frozenset()) -> Iterator[SpecError]:
    """Tags and duplicate keys, found on the document as written (before merge keys are applied)."""
    if id(node) in ancestors:
        return
    ancestors = ancestors | {id(node)}
    if node.tag not in _PLAIN_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        yield SpecError(
            shown,
            node.start_mark.line + 1,
            field_path(loc),
            f"YAML tags are not allowed ({tag}): a spec is plain YAML, read like yaml.safe_load with no tags",
        )
        return
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _key(key_node)
            line = key_node.start_mark.line + 1
            if key_node.tag != "tag:yaml.org,2002:merge":
                if key in first:
                    yield SpecError(
                        shown,
                        line,
                        field_path((*loc, key)),
                        f"duplicate key (first at line {first[key]}); YAML would keep only the last one",
                    )
                first.setdefault(key, line)
            yield from _inspect(value_node, (*loc, key), shown, ancestors)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _inspect(item, (*loc, i), shown, ancestors)


def _lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], ancestors: frozenset[int] = frozenset()) -> None:
    """Map each field path to the line of its key (or of its list item)."""
    if id(node) in ancestors:
        return
    ancestors = ancestors | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*loc, _key(key_node))
            lines[child] = key_node.start_mark.line + 1
            _lines(value_node, child, lines, ancestors)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _lines(item, (*loc, i), lines, ancestors)


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "cannot be read"
    if not exc.context:
        return problem
    where = exc.context_mark
    if where and exc.problem_mark and where.line != exc.problem_mark.line:
        return f"{problem} ({exc.context} at line {where.line + 1})"
    return f"{problem} ({exc.context})"


def parse_yaml(path: Path, shown: str | None = None) -> tuple[Any, dict[Loc, int], list[SpecError]]:
    """The document, the line of each field path, and the problems that keep it from being read."""
    shown = str(path) if shown is None else shown
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, {}, [SpecError(shown, 1, "", "is not UTF-8 text")]
    except OSError as exc:
        return None, {}, [SpecError(shown, 1, "", f"cannot be read: {exc.strerror or exc}")]
    loader = _SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, [SpecError(shown, 1, "", "is empty; a spec starts with service: <name>")]
        errors = list(_inspect(node, (), shown))
        if errors:
            return None, {}, errors
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return None, {}, [SpecError(shown, mark.line + 1 if mark else 1, "", f"invalid YAML: {_yaml_problem(exc)}")]
    except yaml.YAMLError as exc:
        return None, {}, [SpecError(shown, 1, "", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    lines = {(): node.start_mark.line + 1}
    _lines(node, (), lines)
    return data, lines, []


def line_of(loc: Loc, lines: Mapping[Loc, int]) -> int:
    """The line of ``loc``, or of its nearest parent in the file (a missing field, a default)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


# -- models and defaults -----------------------------------------------------------------------------------
def section_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (``Approval | None`` -> Approval, ``tuple[Environment, ...]`` -> Environment)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (found := section_model(arg)) is not None:
            return found
    return None


def model_at(loc: Loc, root: type[BaseModel] = ServiceSpec) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = section_model(field.annotation)
    return model


def _complete(model: type[BaseModel], values: Mapping[str, Any]) -> bool:
    return all(name in values for name, field in model.model_fields.items() if field.is_required())


def _added_by_defaults(field: FieldInfo, model: type[BaseModel] | None, default: Any) -> bool:
    """Whether a section the spec leaves out is made from the defaults alone.

    Only a required section that the defaults complete (pre_checks, post_checks, rollback): an optional
    one (approval, infrastructure...) stays out, and one the spec must write (artifact, deployment) is
    reported missing as a whole instead of field by field.
    """
    return model is not None and field.is_required() and _complete(model, default)


def merge_defaults(defaults: Mapping[str, Any], data: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``data`` with ``defaults`` deep-merged under it (an explicit value wins); neither is changed.

    A defaults mapping under a key whose value in ``data`` is a list applies to each item of the list
    (``environments``, ``metrics``).
    """
    merged = dict(data)
    for key, default in defaults.items():
        field = model.model_fields.get(key)
        sub = section_model(field.annotation) if field else None
        if key not in data:
            if not isinstance(default, Mapping):
                merged[key] = _copy(default)
            elif field is not None and _added_by_defaults(field, sub, default):
                merged[key] = merge_defaults(default, {}, sub)  # type: ignore[arg-type]
        elif isinstance(default, Mapping) and sub is not None:
            value = data[key]
            if isinstance(value, Mapping):
                merged[key] = merge_defaults(default, value, sub)
            elif isinstance(value, list):
                merged[key] = [merge_defaults(default, v, sub) if isinstance(v, Mapping) else v for v in value]
    return merged


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _unknown_defaults(defaults: Mapping[str, Any], model: type[BaseModel], loc: Loc) -> Iterator[tuple[Loc, str]]:
    for key, value in defaults.items():
        field = model.model_fields.get(key)
        if field is None:
            yield (*loc, key), _unknown_field_message(key, model)
        elif isinstance(value, Mapping) and (sub := section_model(field.annotation)) is not None:
            yield from _unknown_defaults(value, sub, (*loc, key))


def load_defaults(path: Path | str = DEFAULTS_FILE) -> dict[str, Any]:
    """The defaults every spec is merged with; raises :class:`InvalidSpecError` naming a mistake in them."""
    path = Path(path)
    data, lines, errors = parse_yaml(path)
    if not errors and not isinstance(data, dict):
        errors = [SpecError(str(path), 1, "", "must be a mapping of spec fields to default values")]
    if not errors:
        errors = [
            SpecError(str(path), line_of(loc, lines), field_path(loc), message)
            for loc, message in _unknown_defaults(data, ServiceSpec, ())
        ]
    if errors:
        raise InvalidSpecError(errors)
    return data


def json_schema(defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The spec's JSON schema for editors, with the defaults shown and their fields not required."""
    defaults = load_defaults() if defaults is None else defaults
    schema = ServiceSpec.model_json_schema()
    definitions = schema.get("$defs", {})

    def mark(model: type[BaseModel], node: dict[str, Any], values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            field = model.model_fields[key]
            sub = section_model(field.annotation)
            if sub is not None and isinstance(value, Mapping):
                mark(sub, definitions[sub.__name__], value)
                if not _added_by_defaults(field, sub, value):
                    continue
            else:
                node["properties"][key]["default"] = value
            if key in node.get("required", ()):
                node["required"].remove(key)

    mark(ServiceSpec, schema, defaults)
    schema["title"] = "Shipflow service spec"
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


# -- validation errors as SpecErrors -----------------------------------------------------------------------
def _unknown_field_message(key: Any, model: type[BaseModel] | None) -> str:
    known = list(model.model_fields) if model else []
    return f"unknown field{did_you_mean(key, known) or ('; known fields: ' + ', '.join(known) if known else '')}"


_TYPE_MESSAGES = {
    "missing": "is required",
    "string_type": "must be text (a string)",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping of fields",
    "model_attributes_type": "must be a mapping of fields",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
}
# Patterns explained in words, by the field (or mapping) they constrain.
_PATTERN_MESSAGES = {
    "name": "must be lower-case letters, digits and '-', starting with a letter",
    "region": "must be an AWS region name like us-east-1",
    "stack": "must be a CloudFormation stack name: letters, digits and '-', starting with a letter (at most 128)",
    "sns_topic_arn": "must be an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:shipflow-alerts",
    "parameters": "parameter names are letters and digits only",
    "environment_variables": "variable names are letters, digits and '_', not starting with a digit",
}


def _message(error: Mapping[str, Any]) -> tuple[str, Any]:
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx") or {}
    value = error.get("input", NO_VALUE)
    if kind == "shipflow":
        return ctx["message"], NO_VALUE if value is None else value
    if kind == "missing":
        return _TYPE_MESSAGES[kind], NO_VALUE
    if kind == "extra_forbidden":
        return _unknown_field_message(loc[-1], model_at(loc[:-1])), NO_VALUE
    if kind == "literal_error":
        choices = [c.strip("'") for c in _split_expected(ctx.get("expected", ""))]
        return f"must be one of: {', '.join(choices)}{did_you_mean(value, choices)}", value
    if kind == "string_pattern_mismatch":
        field = loc[-3] if loc[-1] == "[key]" else loc[-1]  # a key's loc: (..., mapping, key, "[key]")
        return _PATTERN_MESSAGES.get(str(field), f"must match {ctx.get('pattern')}"), value
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}", value
    return _TYPE_MESSAGES.get(kind, error["msg"]), value


def _split_expected(expected: str) -> list[str]:
    # pydantic writes the choices as "'a', 'b' or 'c'".
    head, _, last = expected.rpartition(" or ")
    return [*(part.strip() for part in head.split(",") if part.strip()), last.strip()] if head else [expected]


def _spec_errors(exc: ValidationError, lines: Mapping[Loc, int], shown: str) -> list[SpecError]:
    errors = []
    for error in exc.errors():
        message, value = _message(error)
        loc = tuple(error["loc"])
        errors.append(SpecError(shown, line_of(loc, lines), field_path(loc), message, value))
    return errors


def _file_name_errors(path: Path, data: Mapping[str, Any], lines: Mapping[Loc, int], shown: str) -> list[SpecError]:
    service = data.get("service")
    if not isinstance(service, str) or not SERVICE_NAME.match(service):
        return []  # the model reports a missing or malformed name
    if path.stem != service:
        return [
            SpecError(
                shown,
                line_of(("service",), lines),
                "service",
                f"must match the file name: rename the file to {service}{SPEC_SUFFIX} or set service: {path.stem}",
                service,
            )
        ]
    if path.suffix != SPEC_SUFFIX:
        return [SpecError(shown, 1, "", f"spec files end in {SPEC_SUFFIX}: rename it to {service}{SPEC_SUFFIX}")]
    return []


# -- entry points ------------------------------------------------------------------------------------------
def check_spec(
    path: Path | str, *, defaults: Mapping[str, Any] | None = None, include_dir: Path | str | None = None
) -> tuple[ServiceSpec | None, list[SpecError]]:
    """Read and validate one spec: the spec (``None`` if any problem) and every problem, by line."""
    path = Path(path)
    shown = str(path)
    defaults = load_defaults() if defaults is None else defaults
    data, lines, errors = parse_yaml(path, shown)
    if errors:
        return None, errors
    if not isinstance(data, dict):
        return None, [SpecError(shown, 1, "", "must be a mapping of fields, starting with service: <name>", data)]
    errors = _file_name_errors(path, data, lines, shown)
    spec = None
    try:
        spec = ServiceSpec.model_validate(
            merge_defaults(defaults, data, ServiceSpec), context={"include_dir": Path(include_dir or INCLUDE_DIR)}
        )
    except ValidationError as exc:
        errors += _spec_errors(exc, lines, shown)
    if errors:
        return None, sorted(errors, key=lambda e: e.line)
    return spec, []


def load_spec(
    path: Path | str, *, defaults: Mapping[str, Any] | None = None, include_dir: Path | str | None = None
) -> ServiceSpec:
    """One valid spec, or :class:`InvalidSpecError` listing every problem in it."""
    spec, errors = check_spec(path, defaults=defaults, include_dir=include_dir)
    if errors or spec is None:
        raise InvalidSpecError(errors)
    return spec


def spec_files(directory: Path | str) -> list[Path]:
    """The spec files of a directory, sorted by name (hidden and editor files skipped)."""
    return sorted(
        p for p in Path(directory).iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )


def load_specs(
    directory: Path | str = SERVICES_DIR,
    *,
    defaults: Mapping[str, Any] | None = None,
    include_dir: Path | str | None = None,
) -> tuple[list[ServiceSpec], list[SpecError]]:
    """Every valid spec of ``directory`` (by file name) and the problems of the others."""
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"service spec directory {directory} does not exist")
    defaults = load_defaults() if defaults is None else defaults
    specs: list[ServiceSpec] = []
    errors: list[SpecError] = []
    for path in spec_files(directory):
        spec, problems = check_spec(path, defaults=defaults, include_dir=include_dir)
        errors += problems
        if spec is not None:
            specs.append(spec)
    return specs, errors
