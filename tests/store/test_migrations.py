"""The Alembic migrations are the schema: they run on SQLite and PostgreSQL and match the tables."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from store.migrate import alembic_config, upgrade


def check_migrations(url: str) -> None:
    upgrade(url)
    command.check(alembic_config(url))  # raises when the tables and the migrations disagree
    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"jobs", "runs", "curve_points", "checkpoints", "ensembles"} <= tables


def test_migrations_on_sqlite(tmp_path):
    check_migrations(f"sqlite:///{tmp_path / 'trainyard.db'}")


def test_migrations_on_postgresql(postgres_url):
    check_migrations(postgres_url)
