"""Versioned store schemas, brought forward at start.

A store lists its schema as steps: version -> the statements that bring its tables
from the previous version to it. The version a database is at is kept in the one
row of the store's version table (``id = 1``); `apply_migrations` runs the steps past
it, each in one transaction with its new version, so a start interrupted mid-step
leaves the step undone and the next start runs it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reference_services.common.database import Database

Migrations = Mapping[int, Sequence[str]]
"""version -> the statements that bring the schema from the previous version to it."""


async def apply_migrations(
    db: Database,
    version_table: str,
    migrations: Migrations,
    tables: Mapping[str, str],
    schema: str,
    *,
    newest: int | None = None,
) -> int:
    """Bring the tables of ``db`` to version ``newest`` of ``migrations`` (the store's
    ``SCHEMA_VERSION``; None: the last of them); the version they were at before (0:
    none of them yet).

    ``{key}`` in a statement stands for the table name ``tables[key]``. RuntimeError,
    running nothing, when the database holds a version newer than ``newest``
    (``schema`` names the schema in the message: ``payment``)."""
    if newest is None:
        newest = max(migrations)
    await db.execute(
        f"CREATE TABLE IF NOT EXISTS {version_table} (id INTEGER PRIMARY KEY,"
        " version INTEGER NOT NULL)"
    )
    rows = await db.execute(f"SELECT version FROM {version_table} WHERE id = 1")
    before = int(rows[0][0]) if rows else 0
    if before > newest:
        raise RuntimeError(
            f"{db.where} holds {schema} schema {before}, newer than this service's {newest}"
        )
    for version in range(before + 1, newest + 1):
        async with db.transaction() as tx:  # a step and its version, or neither
            for statement in migrations[version]:
                await tx.execute(statement.format_map(tables))
            await tx.execute(
                f"INSERT INTO {version_table} (id, version) VALUES (1, %s)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                (version,),
            )
    return before
