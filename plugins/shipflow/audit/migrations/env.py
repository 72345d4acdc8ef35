"""Alembic environment of the audit store.

``AuditStore.migrate()`` runs it with ``config.attributes["connection"]`` (an open connection inside
a transaction). From a checkout, ``alembic -c <config with script_location here> -x url=URL upgrade head``
works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import shipflow.metrics.models  # noqa: F401 - release_metric lives in the audit store's database too
from shipflow.audit.models import VERSION_TABLE, Base


def _configure(**kwargs) -> None:
    context.configure(target_metadata=Base.metadata, version_table=VERSION_TABLE, compare_type=True, **kwargs)


def run_migrations() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        _configure(url=url, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    if connection is not None:
        _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url)
    try:
        with engine.begin() as own:
            _configure(connection=own, render_as_batch=own.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations()
