"""``shipflow validate`` and ``shipflow schema``: the spec checks a developer or CI runs before a DAG parses.

Each command is a function that prints and returns the exit code, so the CLI only wires arguments.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from shipflow.spec.loader import SERVICES_DIR, InvalidSpecError, SpecError, check_spec, load_defaults, spec_files


def _shown(path: Path) -> Path:
    """A path as short as it can be said from the working directory."""
    try:
        relative = Path(os.path.relpath(path))
    except ValueError:  # another drive
        return path
    return path if relative.parts[:1] == ("..",) else relative


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def validate_command(paths: Sequence[str | Path] | None = None) -> int:
    """Validate spec files and directories of specs (default: include/services).

    Prints every problem, one per line (``file:line: field.path: message (got value)``), then
    ``N specs valid, M invalid``. Returns 0 if all are valid, 1 if any is not, 2 if a path does not exist.
    """
    targets = [Path(p) for p in paths] if paths else [_shown(SERVICES_DIR)]
    missing = [p for p in targets if not p.exists()]
    if missing:
        for path in missing:
            print(f"shipflow validate: {path}: no such file or directory", file=sys.stderr)
        return 2
    try:
        defaults = load_defaults()
    except InvalidSpecError as exc:
        for error in exc.errors:
            print(error)
        print("the defaults every spec is merged with are invalid: fix them first")
        return 1
    files = [f for target in targets for f in (spec_files(target) if target.is_dir() else [target])]
    valid = invalid = 0
    defined: dict[str, Path] = {}
    for path in files:
        spec, errors = check_spec(path, defaults=defaults)
        if spec is not None and spec.service in defined:
            errors = [SpecError(str(path), 1, "service", f"is also defined in {defined[spec.service]}", spec.service)]
        for error in errors:
            print(error)
        if errors:
            invalid += 1
        else:
            valid += 1
            defined[spec.service] = path  # type: ignore[union-attr]
    if not files:
        print(f"no service specs (*.yaml) in {', '.join(str(t) for t in targets)}")
    print(f"{_plural(valid, 'spec')} valid, {invalid} invalid")
    return 1 if invalid else 0


def schema_command(out: str | Path | None = None) -> int:
    """Print the spec's JSON schema (for editors), or write it to ``out``."""
    from shipflow.spec.loader import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return 0
    target = Path(out)
    if not target.parent.is_dir():
        print(f"shipflow schema: {target.parent}: no such directory", file=sys.stderr)
        return 2
    target.write_text(text, encoding="utf-8")
    print(f"wrote the service spec JSON schema to {target}")
    return 0
