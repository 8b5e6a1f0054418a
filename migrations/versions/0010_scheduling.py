"""jobs.priority and jobs.dispatched_at: fair-share dispatch of waiting jobs (store/dispatch.py)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 18:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    # Every job that exists already was sent to the broker when it was submitted: none of them waits.
    op.execute("UPDATE jobs SET dispatched_at = created_at")
    op.create_index("ix_jobs_tenant_dispatched_at", "jobs", ["tenant", "dispatched_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_dispatched_at", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("dispatched_at")
        batch.drop_column("priority")
