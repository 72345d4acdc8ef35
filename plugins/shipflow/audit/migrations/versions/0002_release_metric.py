"""release_metric, and an index on audit_event (kind, time) for the metrics that read it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release_metric",
        sa.Column("window", sa.String(8), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(250), nullable=False),
        sa.Column("environment", sa.String(250), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("dimension", sa.String(250), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "window", "window_end", "service", "environment", "metric", "dimension", name="pk_release_metric"
        ),
    )
    op.create_index("ix_audit_event_kind_time", "audit_event", ["kind", "time"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_kind_time", table_name="audit_event")
    op.drop_table("release_metric")
