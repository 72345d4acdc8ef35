"""Service specs: one YAML file per service (``include/services/<service>.yaml``) describes its release.

:mod:`shipflow.spec.model` holds the frozen pydantic models, :mod:`shipflow.spec.loader` reads files
(line numbers, ``include/defaults.yaml`` merged in, every problem as a :class:`SpecError`), and
:mod:`shipflow.spec.commands` backs ``shipflow validate`` and ``shipflow schema``. DAG files import this
package while they are parsed: it needs pydantic and PyYAML only. See docs/service-spec.md.
"""

from shipflow.spec.loader import (
    DEFAULTS_FILE,
    SERVICES_DIR,
    InvalidSpecError,
    SpecError,
    check_spec,
    load_defaults,
    load_spec,
    load_specs,
)
from shipflow.spec.model import PLACEHOLDERS, Environment, ServiceSpec, render

__all__ = [
    "DEFAULTS_FILE",
    "PLACEHOLDERS",
    "SERVICES_DIR",
    "Environment",
    "InvalidSpecError",
    "ServiceSpec",
    "SpecError",
    "check_spec",
    "load_defaults",
    "load_spec",
    "load_specs",
    "render",
]
