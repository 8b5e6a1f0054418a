"""job_tags (a job's tags, filterable) and webhook_secrets (each tenant signs its own webhooks)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 11:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
    )
    op.create_index("ix_job_tags_tag", "job_tags", ["tag"])
    op.create_table(
        "webhook_secrets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_webhook_secrets_tenant", "webhook_secrets", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_webhook_secrets_tenant", table_name="webhook_secrets")
    op.drop_table("webhook_secrets")
    op.drop_index("ix_job_tags_tag", table_name="job_tags")
    op.drop_table("job_tags")
