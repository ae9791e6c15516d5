"""Alembic environment: the engine comes from db.migrate (never from an ini file).

Two processes may open a brand-new store at once (two ingests, or ingest and dashboard): migrations are
serialised before alembic reads the current revision — a transaction-scoped advisory lock on PostgreSQL,
the write lock taken up front (BEGIN IMMEDIATE) on SQLite — so the second one finds the schema at head.
On SQLite, foreign keys are off while migrating: a batch operation recreates a table, and dropping the old one
would otherwise cascade into every table that refers to it.
"""

from alembic import context
from sqlalchemy import text

from db.schema import compared, metadata

MIGRATION_LOCK = 0x656E7472  # any constant shared by every entropy-dash process

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:  # a batch migration recreates a table: its ON DELETE CASCADE must not empty the tables below it
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    connection = connection.execution_options(writer=True)
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                          include_name=compared)
        with context.begin_transaction():  # inside ours: alembic does not open another
            context.run_migrations()
    if sqlite:
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
