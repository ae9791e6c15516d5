"""Alembic environment: the engine comes from db.migrate (never from an ini file)."""

from alembic import context

from db.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
