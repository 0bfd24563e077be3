"""FHIR Bulk Data export jobs and their output pages (``fhir/bulk``).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("requester", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("request_url", sa.Text(), nullable=False),
        sa.Column("types", sa.JSON(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("statuses", sa.JSON(), nullable=False),
        sa.Column("transaction_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.String(length=64), nullable=True),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("exported", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_export_jobs")),
        sa.UniqueConstraint("requester", "active", name="uq_export_jobs_requester_active"),
    )
    op.create_index("ix_export_jobs_state_leased_until", "export_jobs", ["state", "leased_until"])
    op.create_index("ix_export_jobs_expires_at", "export_jobs", ["expires_at"])
    op.create_table(
        "export_parts",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["export_jobs.job_id"],
            name=op.f("fk_export_parts_job_id_export_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "seq", name=op.f("pk_export_parts")),
    )


def downgrade() -> None:
    op.drop_table("export_parts")
    op.drop_index("ix_export_jobs_expires_at", table_name="export_jobs")
    op.drop_index("ix_export_jobs_state_leased_until", table_name="export_jobs")
    op.drop_table("export_jobs")
