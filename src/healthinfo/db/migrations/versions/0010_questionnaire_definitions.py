"""Questionnaire definitions become data: each published ``(id, version)`` is a row.

The shipped definitions are published by the service at start-up when absent (not here), so
that a new shipped version needs no migration. Kits record their ``(id, version)`` in
``health_information`` once saved, and in ``kits`` when a claim bound them before that.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "questionnaire_definitions",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("questionnaire_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(length=255), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_questionnaire_definitions")),
        sa.UniqueConstraint(
            "questionnaire_id", "version", name="uq_questionnaire_definitions_id_version"
        ),
    )
    # Plain ALTER TABLE, never a batch (copy-and-rename) on SQLite: dropping ``kits`` there
    # would cascade to every table that references it.
    op.add_column("kits", sa.Column("questionnaire_id", sa.String(length=64), nullable=True))
    op.add_column("kits", sa.Column("questionnaire_version", sa.String(length=16), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN: PostgreSQL, and SQLite since 3.35, without rebuilding ``kits``.
    op.execute("ALTER TABLE kits DROP COLUMN questionnaire_version")
    op.execute("ALTER TABLE kits DROP COLUMN questionnaire_id")
    op.drop_table("questionnaire_definitions")
