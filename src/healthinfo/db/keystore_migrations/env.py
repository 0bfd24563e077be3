"""Alembic environment of the key store (a database of its own; see crypto/keystore.py)."""

from __future__ import annotations

from alembic import context

from healthinfo.crypto.keystore import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run key store migrations through `healthinfo migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="alembic_version_keystore",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
