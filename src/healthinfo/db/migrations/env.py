"""Alembic environment: always handed an open connection by ``healthinfo.db.migrate``."""

from __future__ import annotations

from alembic import context

from healthinfo.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `healthinfo migrate`, which opens the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
