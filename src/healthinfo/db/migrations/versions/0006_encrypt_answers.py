"""Encrypt the answers already stored (current state and revisions); downgrade decrypts them.

Uses the answer codec that ``healthinfo migrate`` (or start-up) hands to Alembic, so the keys
come from the configured master keys and key store.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.util import await_only

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PREFIX = "enc1:"
TABLES = {"health_information": ("kit_id",), "revisions": ("kit_id", "version")}


def _codec() -> Any:
    codec = context.config.attributes.get("codec")
    if codec is None:
        raise RuntimeError(
            "encrypting stored answers needs the answer codec: run `healthinfo migrate`"
        )
    return codec


def _rewrite(encrypt: bool) -> None:
    bind = op.get_bind()
    codec = None
    for name, key_columns in TABLES.items():
        table = sa.table(name, *(sa.column(c) for c in (*key_columns, "answers")))
        rows = bind.execute(sa.select(table)).fetchall()
        for row in rows:
            is_encrypted = row.answers.startswith(PREFIX)
            if is_encrypted == encrypt:
                continue
            codec = codec or _codec()
            if encrypt:
                plain = await_only(_json_codec().decode(row.kit_id, row.answers))
                stored = await_only(codec.encode(row.kit_id, plain))
            else:
                plain = await_only(codec.decode(row.kit_id, row.answers))
                stored = await_only(_json_codec().encode(row.kit_id, plain))
            condition = sa.and_(*(table.c[c] == getattr(row, c) for c in key_columns))
            bind.execute(table.update().where(condition).values(answers=stored))


def _json_codec() -> Any:
    from healthinfo.health_information.codec import JsonAnswerCodec

    return JsonAnswerCodec()


def upgrade() -> None:
    _rewrite(encrypt=True)


def downgrade() -> None:
    _rewrite(encrypt=False)
