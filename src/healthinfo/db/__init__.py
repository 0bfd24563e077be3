"""The schema in one place (for Alembic) and the migration runner."""
