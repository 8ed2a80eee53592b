"""The runner every versioned store migrates through, on real SQLite and PostgreSQL: a
step and its version commit together, so a failed step leaves nothing half done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reference_services.common.database import Database, Postgres, SQLite
from reference_services.common.migrations import apply_migrations
from tests.boutique.conftest import unique

STEPS = {
    1: ("CREATE TABLE IF NOT EXISTS {a} (id TEXT PRIMARY KEY)",),
    2: (
        "CREATE TABLE IF NOT EXISTS {b} (id TEXT PRIMARY KEY)",
        "INSERT INTO {a} (id) VALUES ('kept')",
    ),
}


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    made: Database
    if request.param == "sqlite":
        made = SQLite(tmp_path / "migrations.db")
    else:
        made = Postgres(request.getfixturevalue("postgres_url"))
    yield made
    await made.close()


async def test_steps_run_once_in_order_and_a_failed_step_leaves_nothing(db: Database) -> None:
    prefix = unique("m") + "_"
    tables = {"a": f"{prefix}a", "b": f"{prefix}b"}
    version = f"{prefix}schema"
    broken = {1: STEPS[1], 2: (STEPS[2][0], "INSERT INTO {a} (no_such_column) VALUES (1)")}
    try:
        with pytest.raises(Exception, match="no_such_column"):
            await apply_migrations(db, version, broken, tables, "test", newest=2)
        # step 1 is in, step 2 not at all: its table was rolled back with it
        assert await db.execute(f"SELECT version FROM {version}") == [(1,)]
        assert await db.execute(f"SELECT id FROM {tables['a']}") == []
        with pytest.raises(Exception, match=tables["b"]):
            await db.execute(f"SELECT id FROM {tables['b']}")

        assert await apply_migrations(db, version, STEPS, tables, "test", newest=2) == 1
        again = await apply_migrations(db, version, STEPS, tables, "test", newest=2)
        assert again == 2  # at the newest already: nothing run
        assert await db.execute(f"SELECT id FROM {tables['a']}") == [("kept",)]

        with pytest.raises(RuntimeError, match="holds test schema 2, newer than this service's 1"):
            await apply_migrations(db, version, STEPS, tables, "test", newest=1)
    finally:
        for table in (*tables.values(), version):
            await db.execute(f"DROP TABLE IF EXISTS {table}")
